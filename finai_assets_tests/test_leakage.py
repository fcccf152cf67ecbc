"""The oracle and the leakage report: green on clean data, and each injected leak fails the
check that guards against it."""

import numpy as np
import polars as pl
import pytest

from finai_assets.defs.leakage import LEAKAGE_CHECKS
from finai_assets.lib import feature_isolation as iso
from finai_assets.lib import features as feat
from finai_assets.lib import leakage
from finai_assets.lib.schema import DEFAULT_CUTOFF
from finai_assets.lib.timeline import cutoff_instant


@pytest.fixture(scope="module")
def v4(build):
    wh = build.warehouse
    raw = wh.read("synthetic_customers", "v4")
    splits = wh.read("split_assignments", "v4")
    tasks = wh.read("task_labels", "v4")["labels"]
    return {
        "snapshots": raw["snapshots"], "transactions": raw["transactions"], "splits": splits,
        "tasks": tasks, "table": wh.read("feature_table", "v4"), "pipeline": wh.read("feature_pipeline", "v4"),
        "oracle": wh.read("oracle_report", "v4"), "truth": wh.read("synthetic_ground_truth", "v4"),
    }


@pytest.mark.parametrize("version", ["v2", "v3", "v4"])
def test_every_leakage_check_passes_on_each_version(build, version):
    evaluations = {e.check_name: e for e in build.results[version].get_asset_check_evaluations()
                   if e.asset_key.to_user_string() == "leakage_report"}
    assert set(evaluations) == set(LEAKAGE_CHECKS)
    assert all(e.passed for e in evaluations.values()), {n: e.metadata for n, e in evaluations.items() if not e.passed}


def test_oracle_ceilings_are_the_ground_truth_auc_with_se(v4):
    oracle = v4["oracle"].filter(pl.col("metric") == "AUC")
    assert set(oracle["task"]) == set(leakage.ORACLE_SCORES)
    assert ((oracle["ceiling"] > 0.5) & (oracle["ceiling"] < 1.0) & (oracle["se"] > 0)).all()


def test_auc_matches_sklearn_and_a_hand_case():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    score = y + rng.normal(0, 1, 500)
    assert leakage.auc_with_se(y, score)[0] == pytest.approx(roc_auc_score(y, score))
    assert leakage.auc_with_se(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))[0] == pytest.approx(0.75)


def test_a_feature_equal_to_a_kept_label_fails_label_reproduction(v4):
    features = v4["table"]["features"].join(
        v4["tasks"].select("ncodpers", pl.col("will_acquire_payments").fill_null(0).cast(pl.Float64).alias("hold_extra")), on="ncodpers"
    )
    copies = leakage.label_reproduction(features, v4["tasks"], leakage.LeakageThresholds().reproduction)
    assert copies.filter(pl.col("feature") == "hold_extra")["task"].to_list() == ["will_acquire_payments"]
    clean = leakage.label_reproduction(v4["table"]["features"], v4["tasks"], leakage.LeakageThresholds().reproduction)
    assert clean.is_empty()
    dependency = leakage.single_feature_dependency(features, v4["tasks"])
    row = dependency.filter((pl.col("feature") == "hold_extra") & (pl.col("task") == "will_acquire_payments"))
    assert row["u"][0] >= 0.99


def test_a_feature_from_post_cutoff_data_fails_time_isolation(v4, monkeypatch):
    original = feat._raw_features

    def leaky(snapshots, transactions, pipeline, config, population=None):
        later = transactions.filter(pl.col("ts") >= cutoff_instant(config.cutoff))
        spend = later.group_by("ncodpers").agg(txn_next_month=pl.col("amount").sum())
        return original(snapshots, transactions, pipeline, config, population).join(spend, on="ncodpers", how="left")

    monkeypatch.setattr(feat, "_raw_features", leaky)
    pipeline = {k: v for k, v in v4["pipeline"].items() if k != "isolation"}
    table = feat.transform(v4["snapshots"], v4["transactions"], pipeline)
    assert "txn_next_month" in table.columns
    isolation = iso.table_isolation(v4["snapshots"], v4["transactions"], pipeline, table)
    assert not isolation["identical"][0]


def test_a_group_fitted_on_all_rows_fails_the_pipeline_isolation(v4, monkeypatch):
    original = feat.fit_pipeline

    def fitted_on_everyone(snapshots, transactions, splits, config=feat.FeatureConfig()):
        return original(snapshots, transactions, splits.with_columns(split=pl.lit("train")), config)

    monkeypatch.setattr(feat, "fit_pipeline", fitted_on_everyone)
    pipeline = feat.fit_pipeline(v4["snapshots"], v4["transactions"], v4["splits"])
    assert not iso.pipeline_isolation(v4["snapshots"], v4["transactions"], v4["splits"], pipeline)["identical"][0]


def test_a_ground_truth_column_wired_into_features_fails_lineage(v4):
    truth = v4["truth"]
    by_name = v4["table"]["features"].join(truth.select("ncodpers", "wealth"), on="ncodpers")
    assert any(p.startswith("wealth:") for p in leakage.lineage(by_name))
    renamed = v4["table"]["features"].join(truth.select("ncodpers", pl.col("p_churn").alias("demo_score")), on="ncodpers")
    problems = leakage.lineage(renamed, truth)
    assert any(p.startswith("demo_score: reproduces ground truth p_churn") for p in problems)
    assert leakage.lineage(v4["table"]["features"], truth) == []


def test_a_probe_above_the_oracle_ceiling_is_flagged(v4):
    rng = np.random.default_rng(1)
    tasks, features = v4["tasks"], v4["table"]["features"]
    noisy = tasks.select(
        "ncodpers", (pl.col("will_acquire_payments").fill_null(0).cast(pl.Float64) + pl.Series(rng.normal(0, 0.3, tasks.height))).alias("pers_leak")
    )
    leaky = features.join(noisy, on="ncodpers")
    schema = feat.feature_schema(leaky.columns)
    probes = leakage.group_probes(leaky, schema, tasks, v4["oracle"])
    flagged = probes.filter("flagged")
    assert flagged.select("group", "task").rows() == [("persistence", "will_acquire_payments")]
    oracle = v4["oracle"].filter(pl.col("task") == "will_acquire_payments").row(0, named=True)
    assert oracle["is_ceiling"] and flagged["ceiling"][0] == pytest.approx(min(oracle["ceiling"] + 2 * oracle["se"], 0.95))
    # an oracle that is only the event's probability bounds nothing: those probes face AUC 0.95
    approximate = probes.filter(pl.col("task").is_in(list(leakage.APPROXIMATE_ORACLES)))
    assert approximate.height > 0 and (approximate["ceiling"] == 0.95).all()


def test_the_proxy_probe_reports_the_excluded_attributes(v4):
    proxies = v4["table"]["proxy_probe"]
    assert proxies["attribute"].to_list() == ["gender", "residency"]
    assert ((proxies["auc"] > 0.4) & (proxies["auc"] < 1.0) & (proxies["rows"] > 1000)).all()
    # A feature that is the attribute itself makes the probe see it.
    attributes = leakage.excluded_attributes(v4["snapshots"], DEFAULT_CUTOFF, ("sexo",))
    leaky = v4["table"]["features"].join(attributes.select("ncodpers", pl.col("gender").cast(pl.Float64).alias("g")), on="ncodpers")
    assert leakage.proxy_probe(leaky, attributes)["auc"][0] > 0.99


def test_a_leaky_feature_stops_the_teacher_in_the_same_run(build, tmp_path, monkeypatch):
    """A feature built from post-cutoff data fails time isolation, a blocking check of
    leakage_report, and ple_teacher (a dependent in the same run) is never executed."""
    import shutil

    import dagster as dg

    from finai_assets.defs import features as feature_defs
    from finai_assets.defs import leakage as leakage_defs
    from finai_assets.defs import teacher as teacher_defs
    from finai_assets_tests.conftest import ALL_DATASET_ASSETS, resources_for

    shutil.copytree(build.data_dir, tmp_path / "data")

    original = feat._raw_features

    def leaky(snapshots, transactions, pipeline, config, population=None):
        later = transactions.filter(pl.col("ts") >= cutoff_instant(config.cutoff))
        return original(snapshots, transactions, pipeline, config, population).join(
            later.group_by("ncodpers").agg(txn_next_month=pl.col("amount").sum()), on="ncodpers", how="left"
        )

    monkeypatch.setattr(feat, "_raw_features", leaky)
    result = dg.materialize(
        ALL_DATASET_ASSETS,
        selection=[feature_defs.feature_table, leakage_defs.leakage_report, teacher_defs.ple_teacher],
        partition_key="v2", instance=dg.DagsterInstance.ephemeral(),
        resources=resources_for(tmp_path / "data"), raise_on_error=False,
    )
    assert not result.success
    assert result.asset_materializations_for_node("leakage_report")  # the report itself is recorded...
    assert not result.asset_materializations_for_node("ple_teacher")  # ...the teacher never trained
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "leakage_report" in started and "ple_teacher" not in started
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"time_isolation"}
