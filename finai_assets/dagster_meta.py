"""Helpers shared by the `defs/` modules (Dagster-side, not in lib): library results as Dagster
metadata, the inputs several assets read the same way, and code versions derived from source."""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

import dagster as dg
import polars as pl

from finai_assets.lib.storage import Warehouse

PACKAGE_ROOT = Path(__file__).parent


def column_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])


def markdown_table(frame: pl.DataFrame, max_rows: int = 30) -> dg.MetadataValue:
    head = frame.head(max_rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows} more rows_")
    return dg.MetadataValue.md("\n".join(lines))


def table_metadata(frame: pl.DataFrame, prefix: str = "") -> dict:
    """`dagster/row_count` and `dagster/column_schema` for the main table, `<name>/...` for others."""
    if prefix:
        return {f"{prefix}/row_count": frame.height, f"{prefix}/columns": len(frame.columns)}
    return {"dagster/row_count": frame.height, "dagster/column_schema": column_schema(frame)}


def input_hashes(warehouse: Warehouse, inputs: dict[str, str | None]) -> dg.MetadataValue:
    """The stored content hash of every input (asset -> partition or None)."""
    return dg.MetadataValue.json(hashes(warehouse, inputs))


def outcome_check(name: str, asset: str, outcome, thresholds: dict | None = None) -> dg.AssetCheckResult:
    """A blocking (ERROR) check result from a library CheckOutcome."""
    meta = {"summary": outcome.summary, **(thresholds or {})}
    for k, v in outcome.metadata.items():
        meta[k] = markdown_table(v) if isinstance(v, pl.DataFrame) else v
    return dg.AssetCheckResult(
        check_name=name, asset_key=asset, passed=bool(outcome.passed),
        severity=dg.AssetCheckSeverity.ERROR, metadata=meta,
    )


def hashes(warehouse: Warehouse, inputs: dict[str, str | None]) -> dict[str, str]:
    """The stored content hash of every input, as a plain dict (for the audit log)."""
    return {f"{a}[{p}]" if p else a: warehouse.manifest(a, p)["content_hash"] for a, p in inputs.items()}


def audited(audit_log, event: str, asset: str, partition: str | None, run_id: str, inputs: dict[str, str],
            output_hash: str | None, details: dict | None = None) -> dict:
    """Append one governed event to the audit log (fail closed: an error propagates and fails the
    step) and return the metadata that mirrors it: the seq and head hash it wrote."""
    entry = audit_log.log().append(event, asset, partition, run_id, inputs, output_hash, details or {})
    return {"audit_seq": entry.seq, "audit_head": entry.entry_hash, "audit_event": event}


def labels_with_split(task_labels: dict, split_assignments: pl.DataFrame) -> pl.DataFrame:
    """The task labels with each customer's split from `split_assignments`."""
    return task_labels["labels"].drop("split").join(split_assignments.select("ncodpers", "split"), on="ncodpers")


def artifact_dir(paths, asset: str, partition: str) -> Path:
    """Where an asset's files for one dataset partition live under the data root."""
    return paths.artifacts / asset / f"dataset={partition}"


def _module_file(module: str, root: Path) -> Path | None:
    """The source file of `package.a.b` under `root` (the package folder), or None."""
    parts = module.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in ((base.with_suffix(".py"),) if parts else ()) + (base / "__init__.py",):
        if candidate.is_file():
            return candidate
    return None


def _imports(source: bytes, package: str) -> set[str]:
    """Every module of `package` a source names in an import statement, anywhere in the file
    (lazy imports inside functions included), with their parent packages."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == package:
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return found


def source_closure(module: str, root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """`module` and every module of its package it imports, transitively, read by parsing the
    sources (nothing is imported): module name -> file."""
    package = module.split(".")[0]
    files, pending = {}, [module]
    while pending:
        name = pending.pop()
        path = _module_file(name, root)
        if name in files or path is None:
            continue
        files[name] = path
        source = path.read_bytes()
        pending += sorted(_imports(source, package) - set(files))
        if path.name == "__init__.py" and b"import_module(" in source:  # loads its modules by name at run time
            pending += sorted(f"{name}.{child.stem}" for child in path.parent.glob("*.py") if child.stem != "__init__")
    if module not in files:
        raise ValueError(f"no source file for module {module!r} under {root}")
    return files


def source_version(module: str, root: Path = PACKAGE_ROOT) -> str:
    """A short digest of the source bytes of `module` and of every package module it imports:
    it changes when the asset code or any library code it runs changes."""
    digest = hashlib.sha256()
    for name, path in sorted(source_closure(module, root).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.cache
def code_version(module: str) -> str:
    """The code version of every asset defined in `module` (pass `__name__`)."""
    return source_version(module)
