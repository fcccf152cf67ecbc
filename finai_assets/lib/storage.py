"""The parquet warehouse: atomic writes, content hashes, and read-only DuckDB views.

Layout: `<root>/<asset>/[dataset=<version>/ | month=<YYYY-MM-DD>/]<table>.parquet` plus a `_manifest.json` beside
the tables (content hash, row counts). A write goes to temporary files first and is renamed
into place only when every table is complete, so a crash or a rejected input never destroys
the last good materialization. `data/warehouse.duckdb` holds only views over these files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import duckdb
import polars as pl

MANIFEST = "_manifest.json"
DEFAULT_TABLE = "data"
MONTH_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # a monthly partition key; anything else is a dataset version
PARTITION_DIRS = ("dataset=", "month=")


def content_hash(tables: dict[str, pl.DataFrame] | pl.DataFrame) -> str:
    """sha256 over the Arrow IPC stream of each table (name-sorted): equal data, equal hash.
    Written through pyarrow, so polars' in-memory hints (sortedness flags) do not count."""
    import pyarrow as pa

    if isinstance(tables, pl.DataFrame):
        tables = {DEFAULT_TABLE: tables}
    sink = _HashSink()
    for name in sorted(tables):
        sink.write(name.encode())
        table = tables[name].rechunk().to_arrow()
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
            writer.write_table(table)
    return sink.sha256.hexdigest()


class _HashSink(io.RawIOBase):
    """A write-only stream that only hashes: a table is hashed without a copy of its bytes."""

    def __init__(self):
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha256.update(data)
        return len(data)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float = 120.0):
    """An exclusive OS lock on `path` (created if missing), retried until `timeout_s`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not lock {path} within {timeout_s:.0f}s; another writer holds it")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Warehouse:
    def __init__(self, root: Path):
        self.root = Path(root)

    def location(self, asset: str, partition: str | None) -> Path:
        base = self.root / asset
        if not partition:
            return base
        return base / (f"month={partition}" if MONTH_KEY.match(partition) else f"dataset={partition}")

    def write(self, asset: str, partition: str | None, tables: dict[str, pl.DataFrame] | pl.DataFrame) -> dict:
        """Write every table atomically; return the manifest (content hash, rows, files)."""
        if isinstance(tables, pl.DataFrame):
            tables = {DEFAULT_TABLE: tables}
        where = self.location(asset, partition)
        where.mkdir(parents=True, exist_ok=True)
        staged = []
        for name, frame in tables.items():
            tmp = where / f".{name}.parquet.tmp-{os.getpid()}"
            frame.write_parquet(tmp, compression="zstd", statistics=True)
            staged.append((tmp, where / f"{name}.parquet"))
        manifest = {
            "content_hash": content_hash(tables),
            "tables": {n: {"rows": f.height, "columns": len(f.columns)} for n, f in tables.items()},
        }
        for tmp, final in staged:
            os.replace(tmp, final)
        for stale in set(where.glob("*.parquet")) - {final for _, final in staged}:
            stale.unlink()  # a table the asset no longer produces
        atomic_write_bytes(where / MANIFEST, json.dumps(manifest, indent=1).encode())
        return manifest

    def read(self, asset: str, partition: str | None) -> dict[str, pl.DataFrame] | pl.DataFrame:
        where = self.location(asset, partition)
        manifest = self.manifest(asset, partition)
        tables = {n: pl.read_parquet(where / f"{n}.parquet") for n in manifest["tables"]}
        return tables[DEFAULT_TABLE] if list(tables) == [DEFAULT_TABLE] else tables

    def scan(self, asset: str, partition: str | None, table: str = DEFAULT_TABLE) -> pl.LazyFrame:
        """One stored table, lazily (read only the columns and rows a reader needs)."""
        tables = self.manifest(asset, partition)["tables"]
        if table not in tables:
            raise KeyError(f"{asset}[{partition}] has no table {table!r}; it has {sorted(tables)}")
        return pl.scan_parquet(self.location(asset, partition) / f"{table}.parquet")

    def manifest(self, asset: str, partition: str | None) -> dict:
        path = self.location(asset, partition) / MANIFEST
        if not path.exists():
            raise FileNotFoundError(
                f"{asset}{f'[{partition}]' if partition else ''} has not been materialized under {self.root}; "
                "materialize it first"
            )
        return json.loads(path.read_text())

    def refresh_views(self, db_path: Path) -> list[str]:
        """(Re)create one view per stored table; the database holds nothing but views."""
        views = []
        with file_lock(db_path.with_suffix(".lock")):
            con = duckdb.connect(str(db_path))
            try:
                for asset_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
                    names = sorted({f.stem for f in asset_dir.rglob("*.parquet")})
                    partitioned = any(p.name.startswith(PARTITION_DIRS) for p in asset_dir.iterdir())
                    for name in names:
                        view = asset_dir.name if name == DEFAULT_TABLE else f"{asset_dir.name}__{name}"
                        pattern = str(asset_dir / ("*" if partitioned else "") / f"{name}.parquet").replace("'", "''")
                        con.execute(
                            f"CREATE OR REPLACE VIEW \"{view}\" AS SELECT * FROM read_parquet('{pattern}', "
                            f"hive_partitioning={'true' if partitioned else 'false'}, union_by_name=true)"
                        )
                        views.append(view)
            finally:
                con.close()
        return views
