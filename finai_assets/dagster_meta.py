"""Small helpers that turn library results into Dagster metadata (Dagster-side, not in lib)."""

from __future__ import annotations

import dagster as dg
import polars as pl

from finai_assets.lib.storage import Warehouse


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
