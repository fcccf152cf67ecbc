"""Binds the data directory, the parquet warehouse IO manager, the model registry and the audit
log (all under `FINAI_DATA_DIR`, default ./data)."""

import dagster as dg

from finai_assets.resources import AuditLogResource, DataPaths, ModelRegistryResource, WarehouseIOManager, default_data_dir


@dg.definitions
def resources() -> dg.Definitions:
    data_dir = default_data_dir()
    return dg.Definitions(
        resources={
            "paths": DataPaths(data_dir=data_dir),
            "io_manager": WarehouseIOManager(data_dir=data_dir),
            "model_registry": ModelRegistryResource(data_dir=data_dir),
            "audit_log": AuditLogResource(data_dir=data_dir),
        },
        # one process per step, at most one per core; runs are capped by the instance (dagster.yaml)
        executor=dg.multiprocess_executor,
    )
