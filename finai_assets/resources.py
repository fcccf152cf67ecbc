"""Resource and IO-manager classes (bound in `defs/resources.py`)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl

from finai_assets.lib.inbox import Folders
from finai_assets.lib.registry import ModelRegistry
from finai_assets.lib.storage import Warehouse

RAW_SNAPSHOT_STEM = "train_ver2"
RAW_TRANSACTION_STEM = "card_transactions"
RAW_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def default_data_dir() -> str:
    return os.environ.get("FINAI_DATA_DIR", "data")


class DataPaths(dg.ConfigurableResource):
    """Where the platform reads real files and keeps its outputs.

    Real files go in `<data_dir>/raw/`: `train_ver2.csv` (or `.csv.gz`, `.parquet`) and
    `card_transactions.csv` (same suffixes). `snapshot_file` / `transaction_file` point elsewhere.
    """

    data_dir: str = "data"
    snapshot_file: str | None = None
    transaction_file: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.root / "warehouse")

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def production(self) -> Folders:
        """`production/incoming/` (the drop folder), `accepted/`, `quarantine/`, `ledger.jsonl`."""
        return Folders(self.root / "production")

    def _find(self, explicit: str | None, stem: str) -> Path | None:
        if explicit:
            return Path(explicit)
        found = [self.root / "raw" / f"{stem}{s}" for s in RAW_SUFFIXES if (self.root / "raw" / f"{stem}{s}").exists()]
        if len(found) > 1:
            raise ValueError(f"several raw files for {stem}: {[p.name for p in found]}; keep exactly one in {self.root / 'raw'}")
        return found[0] if found else None

    def snapshot_path(self) -> Path | None:
        return self._find(self.snapshot_file, RAW_SNAPSHOT_STEM)

    def transaction_path(self) -> Path | None:
        return self._find(self.transaction_file, RAW_TRANSACTION_STEM)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores a polars frame (or a dict of named frames) as parquet under `data/warehouse/`,
    atomically, then refreshes the read-only views in `data/warehouse.duckdb`."""

    data_dir: str = "data"

    def _warehouse(self) -> Warehouse:
        return Warehouse(Path(self.data_dir) / "warehouse")

    @staticmethod
    def _where(context) -> tuple[str, str | None]:
        asset = context.asset_key.path[-1]
        return asset, (context.partition_key if context.has_partition_key else None)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | dict[str, pl.DataFrame]) -> None:
        if obj is None:
            return
        asset, partition = self._where(context)
        wh = self._warehouse()
        manifest = wh.write(asset, partition, obj)
        views = wh.refresh_views(Path(self.data_dir) / "warehouse.duckdb")
        context.add_output_metadata(
            {
                "warehouse_path": dg.MetadataValue.path(str(wh.location(asset, partition).resolve())),
                "stored_content_hash": manifest["content_hash"],
                "duckdb_views": ", ".join(v for v in views if v.split("__")[0] == asset),
            }
        )

    def load_input(self, context: dg.InputContext):
        """The stored tables; an input declared with metadata `{"by_partition": True}` (a window
        of monthly partitions) gets {partition key: tables} for every partition the mapping names."""
        asset = context.asset_key.path[-1]
        if (context.definition_metadata or {}).get("by_partition"):
            return {key: self._warehouse().read(asset, key) for key in context.asset_partition_keys}
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return self._warehouse().read(asset, partition)


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registry (champion pointer, candidates, content-addressed artifacts) under
    `<data_dir>/governance/registry/`, append-only under a file lock."""

    data_dir: str = "data"

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(Path(self.data_dir) / "governance" / "registry")


class AuditLogResource(dg.ConfigurableResource):
    """The audit log: its own DuckDB file `<data_dir>/governance/audit_log.duckdb`, HMAC chained.
    The key comes from FINAI_AUDIT_KEY; with FINAI_PROFILE=production a missing or default key is
    refused when the log is opened."""

    data_dir: str = "data"

    @property
    def path(self) -> Path:
        return Path(self.data_dir) / "governance" / "audit_log.duckdb"

    def log(self):
        from finai_assets.lib.audit import AuditLog, audit_key

        return AuditLog(self.path, audit_key())
