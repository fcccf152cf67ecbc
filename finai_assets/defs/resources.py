"""Binds the data directory and the parquet warehouse IO manager (`FINAI_DATA_DIR`, default ./data)."""

import dagster as dg

from finai_assets.resources import DataPaths, WarehouseIOManager, default_data_dir


@dg.definitions
def resources() -> dg.Definitions:
    data_dir = default_data_dir()
    return dg.Definitions(
        resources={
            "paths": DataPaths(data_dir=data_dir),
            "io_manager": WarehouseIOManager(data_dir=data_dir),
        },
        executor=dg.multiprocess_executor.configured({"max_concurrent": 2}),
    )
