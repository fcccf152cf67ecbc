"""The feature pipeline and table: train-only fitting, time isolation, schema and policy."""

import dataclasses

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import features as feat
from finai_assets.lib.labels import cutoff_instant
from finai_assets.lib.schema import DEFAULT_CUTOFF, PRODUCT_COLUMNS
from finai_assets.lib.storage import content_hash

CUT = cutoff_instant(DEFAULT_CUTOFF)


@pytest.fixture(scope="module")
def v3(build):
    wh = build.warehouse
    raw = wh.read("synthetic_customers", "v3")
    return {
        "snapshots": raw["snapshots"], "transactions": raw["transactions"],
        "splits": wh.read("split_assignments", "v3"),
        "pipeline": wh.read("feature_pipeline", "v3"),
        "table": wh.read("feature_table", "v3"),
    }


def test_feature_table_materialized_for_every_customer_at_the_cutoff(build, v3):
    features = v3["table"]["features"]
    at_c = v3["snapshots"].filter(pl.col("fecha_dato") == DEFAULT_CUTOFF)
    assert features.height == at_c.height and features["ncodpers"].is_unique().all()
    assert features.null_count().sum_horizontal()[0] == 0
    assert all(build.results[v].success for v in ("v2", "v3", "v4"))


def test_post_cutoff_perturbation_leaves_the_feature_table_byte_identical(v3):
    snaps, txn = v3["snapshots"], v3["transactions"]
    after = pl.col("fecha_dato") > DEFAULT_CUTOFF
    perturbed_snaps = snaps.with_columns(
        pl.when(after).then(1 - pl.col(c).fill_null(0)).otherwise(pl.col(c)).cast(pl.Int8).alias(c) for c in PRODUCT_COLUMNS
    ).with_columns(pl.when(after).then(pl.col("renta") * 3).otherwise(pl.col("renta")).alias("renta"))
    later = pl.col("ts") >= CUT
    perturbed_txn = pl.concat([
        txn.with_columns(
            pl.when(later).then(pl.col("amount") * 10).otherwise(pl.col("amount")).alias("amount"),
            pl.when(later).then(pl.lit(5999, pl.Int16)).otherwise(pl.col("mcc")).alias("mcc"),
        ),
        txn.filter(later).with_columns(pl.col("ts") + pl.duration(hours=1)),  # extra post-cutoff rows
    ])
    assert content_hash(perturbed_txn) != content_hash(txn)
    original = feat.transform(snaps, txn, v3["pipeline"])
    assert content_hash(original) == content_hash(v3["table"]["features"])
    assert content_hash(feat.transform(perturbed_snaps, perturbed_txn, v3["pipeline"])) == content_hash(original)


def test_val_and_test_perturbation_leaves_the_pipeline_identical(v3):
    held_out = v3["splits"].filter(pl.col("split").is_in(["val", "test"]))["ncodpers"].implode()
    mine = pl.col("ncodpers").is_in(held_out)
    snaps = v3["snapshots"].with_columns(pl.when(mine).then(pl.col("renta") * 5 + 1).otherwise(pl.col("renta")).alias("renta"))
    txn = v3["transactions"].with_columns(pl.when(mine).then(pl.col("amount") * 7).otherwise(pl.col("amount")).alias("amount"))
    refit = feat.fit_pipeline(snaps, txn, v3["splits"], feat.pipeline_config(v3["pipeline"]))
    assert content_hash(refit) == content_hash(v3["pipeline"])
    # ...while touching train customers changes it: the comparison can fail.
    train = pl.col("ncodpers").is_in(v3["splits"].filter(pl.col("split") == "train")["ncodpers"].implode())
    moved = v3["transactions"].with_columns(pl.when(train).then(pl.col("amount") * 7).otherwise(pl.col("amount")).alias("amount"))
    assert content_hash(feat.fit_pipeline(v3["snapshots"], moved, v3["splits"], feat.pipeline_config(v3["pipeline"]))) != content_hash(v3["pipeline"])


def test_schema_routes_every_column_and_excludes_protected_attributes(v3):
    schema = v3["table"]["schema"]
    features = v3["table"]["features"]
    assert schema["column"].to_list() == features.columns[1:]
    assert set(schema["group"]) == set(feat.FEATURE_GROUPS)
    assert not {"gender_male", "foreign", "sexo", "indext", "pais_residencia"} & set(features.columns)
    forbidden = ("label", "will_acquire", "churn", "persona_", "wealth", "p_acquire")
    leaked = [c for c in features.columns if c.startswith(forbidden) and not c.startswith("persona_p")]
    assert not leaked


def test_the_policy_switch_adds_the_protected_columns(v3):
    config = dataclasses.replace(feat.pipeline_config(v3["pipeline"]), excluded_protected=())
    pipeline = feat.fit_pipeline(v3["snapshots"], v3["transactions"], v3["splits"], config)
    table = feat.transform(v3["snapshots"], v3["transactions"], pipeline)
    assert {"gender_male", "foreign"} <= set(table.columns)


def test_persistence_pairs_match_a_hand_computation():
    births, deaths = feat.persistence_pairs(np.array([[3.0, 1.0, 4.0, 0.0, 5.0, 2.0, 6.0]]))
    pairs = sorted((b, d) for b, d in zip(births[0], deaths[0]) if not np.isnan(b))
    assert pairs == [(0.0, 6.0), (1.0, 4.0), (2.0, 5.0)]
    flat_births, _ = feat.persistence_pairs(np.zeros((2, 5)))
    assert np.isfinite(flat_births).sum() == 2  # one basin per constant series


def test_sequence_holds_the_last_k_transactions_newest_first(v3):
    k = feat.pipeline_config(v3["pipeline"]).sequence_length
    features = v3["table"]["features"]
    before = v3["transactions"].filter(pl.col("ts") < CUT)
    customer = before.group_by("ncodpers").len().filter(pl.col("len") > k)["ncodpers"][0]
    row = features.filter(pl.col("ncodpers") == customer).row(0, named=True)
    newest = before.filter(pl.col("ncodpers") == customer).sort("ts", descending=True).head(k)
    assert [row[f"seq_{s:02d}_amount"] for s in range(k)] == pytest.approx(np.log1p(newest["amount"].to_numpy()))
    assert all(row[f"seq_{s:02d}_mask"] == 1.0 for s in range(k))
