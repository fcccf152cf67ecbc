"""Evidence that the feature pipeline is isolated in time and by split: perturb what it must not
see (rows after the cutoff; the val/test customers) and compare content hashes before and after."""

from __future__ import annotations

import datetime as dt

import polars as pl

from finai_assets.lib.features import fit_pipeline, pipeline_config, transform
from finai_assets.lib.schema import PRODUCT_COLUMNS
from finai_assets.lib.storage import content_hash
from finai_assets.lib.timeline import cutoff_instant


def perturb_after_cutoff(snapshots: pl.DataFrame, transactions: pl.DataFrame, cutoff: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every row after the cutoff changed: holdings flipped, incomes tripled, amounts x10, MCCs
    rewritten, and extra post-cutoff transactions added."""
    after = pl.col("fecha_dato") > cutoff
    snaps = snapshots.with_columns(
        *[pl.when(after).then(1 - pl.col(c).fill_null(0)).otherwise(pl.col(c)).cast(pl.Int8).alias(c) for c in PRODUCT_COLUMNS],
        pl.when(after).then(pl.col("renta") * 3).otherwise(pl.col("renta")).alias("renta"),
    )
    later = pl.col("ts") >= cutoff_instant(cutoff)
    txn = pl.concat([
        transactions.with_columns(
            pl.when(later).then(pl.col("amount") * 10).otherwise(pl.col("amount")).alias("amount"),
            pl.when(later).then(pl.lit(5999, pl.Int16)).otherwise(pl.col("mcc")).alias("mcc"),
        ),
        transactions.filter(later).with_columns(pl.col("ts") + pl.duration(hours=1)),
    ])
    return snaps, txn


def perturb_customers(snapshots: pl.DataFrame, transactions: pl.DataFrame, ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every row of the given customers changed (incomes and amounts scaled)."""
    mine = pl.col("ncodpers").is_in(ids.implode())
    return (
        snapshots.with_columns(pl.when(mine).then(pl.col("renta") * 5 + 1).otherwise(pl.col("renta")).alias("renta")),
        transactions.with_columns(pl.when(mine).then(pl.col("amount") * 7).otherwise(pl.col("amount")).alias("amount")),
    )


def pipeline_isolation(snapshots: pl.DataFrame, transactions: pl.DataFrame, splits: pl.DataFrame,
                       pipeline: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Refit on data whose val/test customers are perturbed: the pipeline must not change."""
    held_out = splits.filter(pl.col("split").is_in(["val", "test"]))["ncodpers"]
    refit = fit_pipeline(*perturb_customers(snapshots, transactions, held_out), splits, pipeline_config(pipeline))
    return _isolation_row("val/test rows perturbed -> feature_pipeline", content_hash(pipeline), content_hash(refit))


def table_isolation(snapshots: pl.DataFrame, transactions: pl.DataFrame, pipeline: dict[str, pl.DataFrame],
                    table: pl.DataFrame) -> pl.DataFrame:
    """Recompute on data perturbed after the cutoff: the feature table must not change."""
    again = transform(*perturb_after_cutoff(snapshots, transactions, pipeline_config(pipeline).cutoff), pipeline)
    return _isolation_row("post-cutoff rows perturbed -> feature_table", content_hash(table), content_hash(again))


def _isolation_row(test: str, original: str, perturbed: str) -> pl.DataFrame:
    return pl.DataFrame({"test": [test], "original_hash": [original], "perturbed_hash": [perturbed],
                         "identical": [original == perturbed]})
