"""Which assets' stored data an asset reads, two ways, against the upstream keys it declares.

`ReadTracer` watches a materialization: every file it opens for reading under `<data>/warehouse/<asset>/`,
`<data>/artifacts/<asset>/` or `<data>/production/` (the drops `production_snapshots` keeps) is
charged to the asset being materialized. Python-level opens are seen through an audit hook (one
per process, idle unless a tracer is active); polars' parquet readers, which open files natively,
through a wrapper while tracing.

`static_reads` reads the code: every string naming an asset passed to a storage access
(`.read`, `.scan`, `.manifest`, `.location`, `input_hashes`, `hashes`, `artifact_dir`,
`<paths>.artifacts / "<asset>"`) in an asset's body or in any function of the package it calls,
directly or not, so reads on paths a test run does not take are caught too.

Reads of the model registry and the audit log go through resources; they are not edges.
"""

from __future__ import annotations

import ast
import contextlib
import os
import sys
from collections import defaultdict
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
STORAGE_CALLS = {"read", "scan", "manifest", "location", "input_hashes", "hashes", "artifact_dir"}
PRODUCTION_OWNER = "production_snapshots"  # it moves accepted drops into <data>/production/ and keeps the ledger


def declared_upstream(definitions=None) -> dict[str, set[str]]:
    """asset -> the upstream assets `definitions` (default: the code location's) declare, inputs and deps."""
    if definitions is None:
        from finai_assets.definitions import defs

        definitions = defs()
    graph = definitions.resolve_asset_graph()
    return {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.materializable_asset_keys}


def hidden_reads(reads: dict[frozenset[str], set[str]], declared: dict[str, set[str]]) -> dict[str, list[str]]:
    """For each materialized op (its asset keys), the assets it read that none of its keys
    declares upstream and that are not its own."""
    out = {}
    for keys, read in reads.items():
        allowed = set(keys).union(*(declared.get(k, set()) for k in keys))
        if read - allowed:
            out["+".join(sorted(keys))] = sorted(read - allowed)
    return out


# ------------------------------------------------------------------------------------ at run time

_ACTIVE: list[ReadTracer] = []
_HOOKED = False


def _on_audit(event: str, args: tuple) -> None:
    if event != "open" or not _ACTIVE:
        return
    path, mode, flags = args
    if isinstance(path, int):
        return
    reading = (not any(c in mode for c in "wax+")) if isinstance(mode, str) else not (flags & (os.O_WRONLY | os.O_RDWR))
    if reading:
        _ACTIVE[-1].note(path)


class ReadTracer:
    """Charges every read of stored data under `data_dir` to the op named by `charging`."""

    def __init__(self, data_dir: Path):
        self.root = os.path.abspath(data_dir)
        self.reads: dict[frozenset[str], set[str]] = defaultdict(set)
        self._current: frozenset[str] | None = None

    def owner(self, path) -> str | None:
        """The asset whose stored data `path` is, or None outside the traced folders."""
        try:
            rel = os.path.relpath(os.path.abspath(os.fspath(path)), self.root)
        except (TypeError, ValueError):
            return None
        parts = rel.split(os.sep)
        if parts[0] in ("warehouse", "artifacts") and len(parts) > 2:
            return parts[1]
        return PRODUCTION_OWNER if parts[0] == "production" else None

    def note(self, path) -> None:
        asset = self.owner(path)
        if asset is not None and self._current is not None:
            self.reads[self._current].add(asset)

    @contextlib.contextmanager
    def charging(self, keys):
        """Reads inside the block are the reads of the op that materializes `keys`."""
        self._current = frozenset(keys)
        self.reads[self._current]  # an op that read nothing is still listed
        try:
            yield
        finally:
            self._current = None

    def __enter__(self) -> ReadTracer:
        global _HOOKED
        if not _HOOKED:
            sys.addaudithook(_on_audit)
            _HOOKED = True
        self._originals = {name: getattr(pl, name) for name in ("read_parquet", "scan_parquet")}
        for name, original in self._originals.items():
            setattr(pl, name, self._wrap(original))
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.remove(self)
        for name, original in self._originals.items():
            setattr(pl, name, original)

    def _wrap(self, reader):
        def traced(source, *args, **kwargs):
            for one in source if isinstance(source, (list, tuple)) else [source]:
                if isinstance(one, (str, os.PathLike)):
                    self.note(one)
            return reader(source, *args, **kwargs)

        return traced


# ------------------------------------------------------------------------------------ in the code


class _Module:
    def __init__(self, path: Path, name: str):
        self.path, self.name = path, name
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.functions = {n.name: n for n in self.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.modules: dict[str, str] = {}  # local name -> module
        self.imported: dict[str, tuple[str, str]] = {}  # local name -> (module, function)
        for node in ast.walk(self.tree):  # imports inside functions count too
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.modules[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if _module_file(full) is not None:
                        self.modules[a.asname or a.name] = full
                    else:
                        self.imported[a.asname or a.name] = (node.module, a.name)


def _module_file(module: str) -> Path | None:
    if module.split(".")[0] != "finai_assets":
        return None
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _decorated_assets(fn: ast.FunctionDef) -> list[str]:
    """The asset keys an `@asset` / `@multi_asset` function materializes ([] for any other)."""
    for deco in fn.decorator_list:
        call = deco if isinstance(deco, ast.Call) else None
        target = call.func if call else deco
        kind = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        kwargs = {k.arg: k.value for k in call.keywords} if call else {}
        if kind == "asset":
            name = kwargs.get("name")
            return [name.value if isinstance(name, ast.Constant) else fn.name]
        if kind == "multi_asset" and isinstance(kwargs.get("outs"), ast.Dict):
            return [k.value for k in kwargs["outs"].keys if isinstance(k, ast.Constant)]
    return []


def _callee_name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def static_reads(files, assets: set[str]) -> dict[frozenset[str], dict[str, set[str]]]:
    """For each asset function in `files`: {asset read: {"file:line", ...}} over its body and every
    package function it reaches."""
    cache: dict[str, _Module] = {}

    def module(name: str, path: Path | None = None) -> _Module | None:
        path = path or _module_file(name)
        if path is None:
            return None
        if name not in cache:
            cache[name] = _Module(path, name)
        return cache[name]

    out = {}
    for file in files:
        file = Path(file)
        home = module(f"scan:{file}", file)
        for fn in home.functions.values():
            keys = _decorated_assets(fn)
            if not keys:
                continue
            found: dict[str, set[str]] = defaultdict(set)
            todo, seen = [(home, fn)], set()
            while todo:
                mod, func = todo.pop()
                if (mod.name, func.name) in seen:
                    continue
                seen.add((mod.name, func.name))
                for node in ast.walk(func):
                    named = []
                    if isinstance(node, ast.Call):
                        if _callee_name(node.func) in STORAGE_CALLS:
                            named = [c for a in [*node.args, *(k.value for k in node.keywords)] for c in ast.walk(a)]
                        target = None
                        if isinstance(node.func, ast.Name):
                            if node.func.id in mod.functions:
                                target = (mod, node.func.id)
                            elif node.func.id in mod.imported:
                                target = (module(mod.imported[node.func.id][0]), mod.imported[node.func.id][1])
                        elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                                and node.func.value.id in mod.modules:
                            target = (module(mod.modules[node.func.value.id]), node.func.attr)
                        if target and target[0] is not None and target[1] in target[0].functions:
                            todo.append((target[0], target[0].functions[target[1]]))
                    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                            and isinstance(node.left, ast.Attribute) and node.left.attr == "artifacts":
                        named = [node.right]
                    for c in named:
                        if isinstance(c, ast.Constant) and c.value in assets:
                            found[c.value].add(f"{os.path.relpath(mod.path, REPO)}:{c.lineno}")
            out[frozenset(keys)] = dict(found)
    return out
