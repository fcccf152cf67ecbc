"""The screen from 18 candidates to the task set, on the shared build (docs/labels.md)."""

import dataclasses

import polars as pl
import pytest

from finai_assets.lib import labels as lab
from finai_assets.lib import task_screen as screen

EXPECTED_DROPPED = {"has_nba", "income_tier", "tenure_stage", "spend_level", "engagement_score"}


@pytest.fixture(scope="module")
def v4(build):
    wh = build.warehouse
    raw = wh.read("synthetic_customers", "v4")
    return {
        "labels": wh.read("candidate_labels", "v4"),
        "splits": wh.read("split_assignments", "v4"),
        "sources": lab.pre_cutoff_sources(raw["snapshots"], raw["transactions"]),
        "task_labels": wh.read("task_labels", "v4"),
    }


@pytest.mark.parametrize("version", ["v2", "v3", "v4"])
def test_each_version_keeps_13_and_drops_the_expected_5(build, version):
    decisions = build.warehouse.read("task_labels", version)["decisions"]
    assert set(decisions.filter(pl.col("decision") == "dropped")["task"]) == EXPECTED_DROPPED
    assert decisions["agrees"].all()
    kept = decisions.filter(pl.col("decision") == "kept")
    assert dict(kept.group_by("type").len().iter_rows()) == {"binary": 7, "multiclass": 3, "regression": 3}
    assert {lab.CANDIDATES[t].group for t in kept["task"]} == {"lifecycle", "consumption", "engagement", "value"}
    deterministic = decisions.filter(pl.col("task").is_in(["income_tier", "tenure_stage", "spend_level", "engagement_score"]))
    assert (deterministic["value"] >= 0.99).all() and (deterministic["margin"] >= 0).all()
    redundant = decisions.filter(pl.col("task") == "has_nba").row(0, named=True)
    assert redundant["value"] <= 0.01 and "redundant" in redundant["reason"]
    assert (kept.filter(pl.col("metric") == "H(X|Y)/H(X)")["value"] > 0.03).all()  # clearly not redundant
    segment = decisions.filter(pl.col("task") == "segment_prediction").row(0, named=True)
    assert segment["metric"] == "carry-forward MCC" and segment["value"] < 0.97
    evaluations = {e.check_name: e for e in build.results[version].get_asset_check_evaluations()}
    assert evaluations["decisions_match_registry"].passed


@pytest.mark.parametrize("version", ["v2", "v3", "v4"])
def test_every_candidate_shows_its_determinism_dropped_at_or_above_099_kept_clearly_below(build, version):
    """The balanced determinism metric (MCC; min R^2 of OLS and a GBM) for every
    candidate: the ones dropped as deterministic at >= 0.99, every kept task at <= 0.90."""
    decisions = build.warehouse.read("task_labels", version)["decisions"]
    assert decisions["determinism_value"].null_count() == 0
    assert (decisions["determinism_margin"] - (decisions["determinism_value"] - 0.99)).abs().max() < 1e-5
    metrics = dict(decisions.select("task", "determinism_metric").iter_rows())
    assert {metrics[c.name] for c in lab.REGISTRY if c.type == "regression"} == {"min R2 (OLS, GBM)"}
    assert {metrics[c.name] for c in lab.REGISTRY if c.type != "regression"} == {"MCC"}
    deterministic = decisions.filter(pl.col("reason").str.starts_with("not a prediction task"))
    assert set(deterministic["task"]) == EXPECTED_DROPPED - {"has_nba"}
    assert (deterministic["determinism_value"] >= 0.99).all() and (deterministic["determinism_margin"] >= 0).all()
    assert (deterministic["determinism_value"] == deterministic["value"]).all()  # the very number the decision used
    kept = decisions.filter(pl.col("decision") == "kept")
    worst = kept.sort("determinism_value", descending=True).row(0, named=True)
    assert worst["determinism_value"] <= 0.90, (
        f"{version}: kept task {worst['task']} has determinism {worst['determinism_metric']} = {worst['determinism_value']:.4f} > 0.90"
    )
    (event,) = [e for e in build.results[version].get_asset_materialization_events()
                if e.asset_key.to_user_string() == "task_labels"]
    shown = event.materialization.metadata["max determinism of a kept task"].value
    assert shown == {"task": worst["task"], "metric": worst["determinism_metric"], "value": worst["determinism_value"], "ceiling": 0.90}
    assert "determinism_value" in event.materialization.metadata["decision_table"].value


def test_a_kept_task_that_is_a_function_of_a_pre_cutoff_column_shows_determinism_at_or_above_099(v4):
    """The determinism column can fail: a candidate that also reads a post-cutoff window is kept
    by the screen, yet a quartile of renta, and its determinism says so."""
    leaky = dataclasses.replace(
        lab.CANDIDATES["income_tier"], name="renta_quartile", sources=(("renta", "at_c"), ("segmento", "c+1")),
        expected="kept", reason="looks like a task",
    )
    labels = v4["labels"].with_columns(
        renta_quartile=pl.col("ncodpers").replace_strict(
            dict(zip(v4["sources"]["ncodpers"], v4["sources"]["renta"])), default=None
        ).qcut(4, labels=["0", "1", "2", "3"]).cast(pl.Utf8).cast(pl.Int8)
    )
    decisions = screen.screen(labels, v4["splits"], v4["sources"], registry=(*lab.REGISTRY, leaky))
    row = decisions.filter(pl.col("task") == "renta_quartile").row(0, named=True)
    assert row["decision"] == "kept" and row["agrees"]  # decisions unchanged: it reads c+1
    assert row["determinism_metric"] == "MCC" and row["determinism_value"] >= 0.99 and row["determinism_margin"] >= 0, row
    assert row["determinism_from"] == f"all {len(screen.DECLARED_AGGREGATES)} declared pre-cutoff aggregates"
    others = ["task", "decision", "determinism_value"]
    assert decisions.filter(pl.col("task") != "renta_quartile").select(others).equals(v4["task_labels"]["decisions"].select(others))


def test_task_labels_hold_the_kept_tasks_and_the_split(v4):
    tasks = v4["task_labels"]["labels"]
    kept = v4["task_labels"]["decisions"].filter(pl.col("decision") == "kept")["task"].to_list()
    assert tasks.columns == ["ncodpers", "split", *kept]
    assert tasks.height == v4["labels"].height
    assert tasks["next_mcc"].drop_nulls().is_between(0, screen.N_MCC_CLASSES - 1).all()


def test_next_mcc_vocabulary_is_fitted_on_train_only(v4):
    labels, splits = v4["labels"], v4["splits"]
    test_ids = splits.filter(pl.col("split") == "test")["ncodpers"]
    rare = 1234  # an MCC nobody uses, given to test customers only
    poisoned = labels.with_columns(
        pl.when(pl.col("ncodpers").is_in(test_ids.implode()) & pl.col("next_mcc").is_not_null())
        .then(rare).otherwise(pl.col("next_mcc")).cast(pl.Int16).alias("next_mcc")
    )
    vocabulary = screen.next_mcc_vocabulary(poisoned, splits)
    assert rare not in vocabulary["mcc"].to_list() and vocabulary.height == screen.N_MCC_CLASSES - 1
    decisions = v4["task_labels"]["decisions"]
    mapped = screen.task_labels(poisoned, splits, decisions, vocabulary)
    test_rows = mapped.filter((pl.col("split") == "test") & pl.col("next_mcc").is_not_null())
    assert (test_rows["next_mcc"] == screen.N_MCC_CLASSES - 1).all()


def test_a_new_bucketing_candidate_is_dropped_with_its_reason_and_reported(v4):
    """A naive candidate (expected kept) that buckets a feature: the screen drops it, the
    disagreement is in the table (a warning), nothing fails."""
    bucketed = dataclasses.replace(
        lab.CANDIDATES["income_tier"], name="wealth_band", expected="kept", reason="looks like a task"
    )
    labels = v4["labels"].with_columns(
        wealth_band=pl.col("ncodpers").replace_strict(
            dict(zip(v4["sources"]["ncodpers"], v4["sources"]["renta"])), default=None
        ).qcut(4, labels=["0", "1", "2", "3"]).cast(pl.Utf8).cast(pl.Int8)
    )
    decisions = screen.screen(labels, v4["splits"], v4["sources"], registry=(*lab.REGISTRY, bucketed))
    row = decisions.filter(pl.col("task") == "wealth_band").row(0, named=True)
    assert row["decision"] == "dropped" and row["reason"].startswith("not a prediction task")
    assert row["value"] >= 0.99 and not row["agrees"]
    assert decisions.filter(pl.col("task") != "wealth_band")["agrees"].all()


def test_an_expected_drop_that_is_a_real_task_is_reported_not_tuned(v4):
    stubborn = dataclasses.replace(lab.CANDIDATES["will_acquire_lending"], expected="dropped")
    registry = tuple(stubborn if c.name == stubborn.name else c for c in lab.REGISTRY)
    decisions = screen.screen(v4["labels"], v4["splits"], v4["sources"], registry=registry)
    row = decisions.filter(pl.col("task") == "will_acquire_lending").row(0, named=True)
    assert row["decision"] == "kept" and not row["agrees"]


def test_data_without_transactions_makes_the_mcc_tasks_unavailable(v4):
    labels = v4["labels"].with_columns(pl.lit(None, pl.Int8).alias(t) for t in ("top_mcc_shift", "next_mcc", "mcc_diversity_trend"))
    decisions = screen.screen(labels, v4["splits"], v4["sources"])
    unavailable = decisions.filter(pl.col("decision") == "unavailable")["task"].to_list()
    assert sorted(unavailable) == ["mcc_diversity_trend", "next_mcc", "top_mcc_shift"]
