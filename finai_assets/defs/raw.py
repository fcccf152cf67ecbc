"""Raw stage: the Santander snapshots, card transactions and one profile row per customer."""

import contextlib
import dataclasses

import dagster as dg
import polars as pl

from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.dagster_meta import code_version, input_hashes, markdown_table, table_metadata
from finai_assets.lib import raw as rawlib
from finai_assets.lib.profiles import customer_profiles as build_profiles
from finai_assets.lib.sample import SAMPLE_DESCRIPTION, embedded_sample
from finai_assets.lib.schema import SNAPSHOT_COLUMNS, TRANSACTION_COLUMNS, TRANSACTION_OPTIONAL_COLUMNS
from finai_assets.lib.storage import content_hash, file_sha256
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports


class RawConfig(dg.Config):
    """Launchpad config of the raw assets."""

    max_quarantine_share: float = 0.05
    sample_customers: int = 20_000
    sample_seed: int = 2016


@contextlib.contextmanager
def _source(paths: DataPaths, config: RawConfig, which: str):
    """(raw strings, source metadata): the real file scanned lazily if one is present, else the
    embedded sample; (None, ...) for transactions beside a real snapshot file without one."""
    path = paths.snapshot_path() if which == "snapshots" else paths.transaction_path()
    if path is not None:
        expected, optional = (
            (SNAPSHOT_COLUMNS, ()) if which == "snapshots" else (TRANSACTION_COLUMNS, TRANSACTION_OPTIONAL_COLUMNS)
        )
        meta = {"source": "file", "source_path": dg.MetadataValue.path(str(path.resolve())), "source_sha256": file_sha256(path)}
        with rawlib.scan_raw_strings(path, expected, optional, f"{which} file") as strings:
            yield strings, meta
    elif which == "transactions" and paths.snapshot_path() is not None:
        yield None, {"source": "unavailable", "availability": "unavailable: a real snapshot file without a transaction file"}
    else:
        snapshots, transactions = embedded_sample(config.sample_customers, config.sample_seed)
        description = SAMPLE_DESCRIPTION.format(n=config.sample_customers, seed=config.sample_seed)
        yield (snapshots if which == "snapshots" else transactions), {"source": "embedded_sample", "source_description": description}


def _result(load: rawlib.RawLoad, name: str, source: dict, config: RawConfig) -> dg.MaterializeResult:
    tables = {name: load.table, "quarantine": load.quarantine}
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            **source,
            **table_metadata(load.table),
            "input_rows": load.n_input_rows,
            "quarantined_rows": load.quarantine.height,
            "quarantine_share": round(load.quarantine_share, 5),
            "max_quarantine_share": config.max_quarantine_share,
            "quarantine_reasons": dg.MetadataValue.json(load.quarantine_reasons),
            "normalisations": dg.MetadataValue.json(load.normalisations),
            "config": dg.MetadataValue.json(config.model_dump()),
        },
    )


@dg.asset(group_name="raw", kinds={"polars", "pandera"}, code_version=CODE_VERSION,
          deps=[dg.AssetDep("production_snapshots", partition_mapping=dg.AllPartitionMapping())])
def santander_raw(config: RawConfig, paths: DataPaths) -> dg.MaterializeResult:
    """Monthly Santander Product Recommendation snapshots (train_ver2 schema, 48 columns),
    normalised (padded numbers, NA tokens, sentinels -> null + flag), with quarantined rows and
    their reasons kept beside them. Reads `data/raw/train_ver2.{csv,csv.gz,parquet}` when present,
    else the deterministic embedded sample; then appends every production month accepted so far
    (the newest accepted drop of each month, as `production_snapshots` stored it), replacing any
    rows the file holds for that month. A wrong, truncated or too dirty file fails the run and
    leaves the previous materialization untouched."""
    with _source(paths, config, "snapshots") as (strings, source):
        load = rawlib.normalise_snapshots(strings, config.max_quarantine_share)
    accepted = paths.production.ledger.accepted()
    appended = {m: paths.warehouse.read("production_snapshots", m)["snapshots"] for m in sorted(accepted)}
    dates = [frame["fecha_dato"][0] for frame in appended.values()]
    table = pl.concat([load.table.filter(~pl.col("fecha_dato").is_in(dates)), *[f.select(load.table.columns) for f in appended.values()]],
                      how="vertical_relaxed") if appended else load.table
    load = dataclasses.replace(load, table=table)
    result = _result(load, "snapshots", source, config)
    months = load.table.group_by("fecha_dato").len().sort("fecha_dato")
    return dg.MaterializeResult(
        value=result.value,
        data_version=result.data_version,
        metadata={**result.metadata, "customers": load.table["ncodpers"].n_unique(), "rows_per_month": markdown_table(months, 20),
                  "appended_production_months": dg.MetadataValue.json({m: accepted[m]["key"][:16] for m in sorted(accepted)})},
    )


@dg.asset(group_name="raw", kinds={"polars", "pandera"}, code_version=CODE_VERSION)
def card_transactions_raw(config: RawConfig, paths: DataPaths) -> dg.MaterializeResult:
    """Card transactions (`ncodpers, ts, amount, mcc, merchant_id`, `hour` derived from ts).
    Reads `data/raw/card_transactions.{csv,csv.gz,parquet}`, else the embedded sample; beside a real
    snapshot file with no transaction file it is *unavailable* (empty, flagged in metadata) and
    never falls back to the sample."""
    with _source(paths, config, "transactions") as (strings, source):
        if strings is None:
            load = rawlib.unavailable_transactions()
        else:
            load = rawlib.normalise_transactions(strings, config.max_quarantine_share)
    return _result(load, "transactions", {"availability": "available", **source}, config)


@dg.asset(group_name="raw", kinds={"duckdb", "polars"}, code_version=CODE_VERSION, automation_condition=CHAIN_AUTOMATION)
def customer_profiles(santander_raw: dict, card_transactions_raw: dict, paths: DataPaths) -> dg.MaterializeResult:
    """One row per customer: demographics at first observation, panel span, product count, and
    transaction rate / amount level / MCC breadth (null when transactions are unavailable)."""
    profiles = build_profiles(santander_raw["snapshots"], card_transactions_raw["transactions"])
    return dg.MaterializeResult(
        value=profiles,
        data_version=dg.DataVersion(content_hash(profiles)),
        metadata={
            **table_metadata(profiles),
            "input_hashes": input_hashes(paths.warehouse, {"santander_raw": None, "card_transactions_raw": None}),
            "preview": markdown_table(profiles.head(10)),
        },
    )
