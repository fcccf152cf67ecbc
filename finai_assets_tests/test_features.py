"""The feature pipeline and table: train-only fitting, time isolation, schema and policy."""

import dataclasses

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import features as feat
from finai_assets.lib.labels import cutoff_instant
from finai_assets.lib.schema import DEFAULT_CUTOFF
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
    perturbed_snaps, perturbed_txn = feat.perturb_after_cutoff(snaps, txn, DEFAULT_CUTOFF)
    assert content_hash(perturbed_txn) != content_hash(txn) and content_hash(perturbed_snaps) != content_hash(snaps)
    original = feat.transform(snaps, txn, v3["pipeline"])
    assert content_hash(original) == content_hash(v3["table"]["features"])
    assert content_hash(feat.transform(perturbed_snaps, perturbed_txn, v3["pipeline"])) == content_hash(original)
    assert v3["table"]["isolation"]["identical"].all() and v3["table"]["isolation"].height == 2


def test_val_and_test_perturbation_leaves_the_pipeline_identical(v3):
    splits = v3["splits"]
    fitted = {k: v for k, v in v3["pipeline"].items() if k != "isolation"}
    config = feat.pipeline_config(fitted)
    held_out = splits.filter(pl.col("split").is_in(["val", "test"]))["ncodpers"]
    refit = feat.fit_pipeline(*feat.perturb_customers(v3["snapshots"], v3["transactions"], held_out), splits, config)
    assert content_hash(refit) == content_hash(fitted)
    # ...while touching train customers changes it: the comparison can fail.
    train = splits.filter(pl.col("split") == "train")["ncodpers"]
    moved = feat.fit_pipeline(*feat.perturb_customers(v3["snapshots"], v3["transactions"], train), splits, config)
    assert content_hash(moved) != content_hash(fitted)


def test_chunking_by_customer_changes_neither_the_pipeline_nor_the_table(v3, monkeypatch):
    snaps, txn, splits = v3["snapshots"], v3["transactions"], v3["splits"]
    fitted = {k: v for k, v in v3["pipeline"].items() if k != "isolation"}
    monkeypatch.setattr(feat, "CHUNK_TRANSACTIONS", txn.height // 7)  # 7+ customer chunks
    chunked = feat.fit_pipeline(snaps, txn, splits, feat.pipeline_config(fitted))
    assert content_hash(chunked) == content_hash(fitted)
    assert content_hash(feat.transform(snaps, txn, chunked)) == content_hash(v3["table"]["features"])


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
    present = features.select("ncodpers")
    customer = before.join(present, on="ncodpers").group_by("ncodpers").len().filter(pl.col("len") > k).sort("ncodpers")["ncodpers"][0]
    row = features.filter(pl.col("ncodpers") == customer).row(0, named=True)
    newest = before.filter(pl.col("ncodpers") == customer).sort("ts", descending=True).head(k)
    assert [row[f"seq_{s:02d}_amount"] for s in range(k)] == pytest.approx(np.log1p(newest["amount"].to_numpy()))
    assert all(row[f"seq_{s:02d}_mask"] == 1.0 for s in range(k))
