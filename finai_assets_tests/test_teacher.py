"""The teacher stage end to end on v4 (20,000 customers, fixed seed, capped epochs): quality
against chance and the oracle, evaluation beside the baselines, routing, sanity, metadata,
checkpoint refusals, and the leakage gate under automation."""

import math
import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest

from finai_assets.defs import teacher as teacher_defs
from finai_assets.lib import leakage
from finai_assets.lib.ple.experts import EXPERTS
from finai_assets_tests.conftest import ALL_DATASET_ASSETS, TEST_TEACHER_CONFIG, declared_checks, materialization_metadata, resources_for


@pytest.fixture(scope="module")
def v4(teacher_build):
    wh = teacher_build.warehouse
    return {"result": teacher_build.results["teacher_v4"], "evaluation": wh.read("teacher_evaluation", "v4"),
            "teacher": wh.read("ple_teacher", "v4"), "oracle": wh.read("oracle_report", "v4"), "data_dir": teacher_build.data_dir}


def test_the_teacher_beats_chance_by_3_se_and_reaches_60_percent_of_the_oracle_lift(v4):
    assert v4["result"].success
    test = v4["evaluation"]["test_metrics"]
    auc = test.filter((pl.col("model") == "teacher") & (pl.col("metric") == "auc")).sort("task")
    se = test.filter((pl.col("model") == "teacher") & (pl.col("metric") == "auc_se")).sort("task")
    assert auc.height == 7  # the seven binary tasks
    mean_auc = auc["value"].mean()
    se_of_mean = math.sqrt((se["value"] ** 2).sum()) / auc.height
    assert mean_auc >= 0.5 + 3 * se_of_mean
    oracle = v4["oracle"].filter(pl.col("metric") == "AUC")
    assert set(oracle["task"]) == set(auc["task"])
    oracle_lift = oracle["ceiling"].mean() - 0.5
    assert mean_auc - 0.5 >= 0.6 * oracle_lift, (mean_auc, oracle["ceiling"].mean())


def test_the_evaluation_sets_every_task_beside_both_baselines_and_the_oracle(v4):
    comparison = v4["evaluation"]["comparison"]
    assert {"teacher", "lightgbm", "shared_bottom", "oracle"} <= set(comparison.columns)
    assert comparison["task"].n_unique() == 13
    for metric, kind in (("auc", "binary"), ("f1_macro", "multiclass"), ("ndcg@3", "multiclass"), ("mae", "regression"), ("r2", "regression")):
        rows = comparison.filter((pl.col("metric") == metric) & (pl.col("type") == kind))
        assert rows.height > 0 and rows.select(pl.col("teacher", "lightgbm", "shared_bottom").is_not_nan().all()).row(0) == (True, True, True)
    routing = v4["evaluation"]["routing"]
    assert routing.height == 13 and set(routing["route"]) <= {"distil", "hard_label", "rule"}
    # every route follows the routing thresholds from the validation metrics it shows
    for r in routing.iter_rows(named=True):
        expected = "distil" if r["teacher_val"] > r["distil_above"] else ("rule" if r["lightgbm_val"] <= r["rule_at_or_below"] else "hard_label")
        assert r["route"] == expected, r
    sanity = v4["evaluation"]["sanity"]
    assert sanity["passed"].all()
    assert sanity.filter(pl.col("weak"))["route"].is_in(["hard_label", "rule"]).all()
    checks = {e.check_name: e.passed for e in v4["result"].get_asset_check_evaluations()}
    assert checks["teacher_sanity"] and checks["teacher_weak_tasks"] == (not sanity["weak"].any())
    multiclass = sanity.filter(pl.col("metric") == "f1_macro")
    assert multiclass.height == 3 and multiclass.select(pl.col("log_loss", "prior_log_loss", "f1_macro_prior_corrected").is_not_nan().all()).row(0) == (True,) * 3


def test_teacher_metadata_holds_the_card_the_gate_heatmap_and_the_checkpoint_hash(v4):
    meta = materialization_metadata(v4["result"], "ple_teacher")
    sha = v4["teacher"]["manifest"]["sha256"][0]
    assert meta["checkpoint_sha256"].value == sha and len(sha) == 64
    assert "data:image/png;base64," in meta["gate_weights"].value and "data:image/png;base64," in meta["training_curves"].value
    assert sha in meta["model_card"].value and "Limits" in meta["model_card"].value
    assert set(EXPERTS) <= set(meta["parameters_per_expert"].value)
    gates = v4["teacher"]["gates"]
    assert gates.height == 13 and np.allclose(gates.drop("task").to_numpy().sum(1), 1.0, atol=1e-4)
    history = v4["teacher"]["history"]
    assert 1 <= history.height <= TEST_TEACHER_CONFIG["epochs"] and history["val_composite"].is_not_nan().all()


def _copy(v4, tmp_path):
    shutil.copytree(v4["data_dir"], tmp_path / "data")
    return tmp_path / "data"


def _predict(data_dir):
    return dg.materialize(ALL_DATASET_ASSETS, selection=[teacher_defs.teacher_predictions], partition_key="v4",
                          instance=dg.DagsterInstance.ephemeral(), resources=resources_for(data_dir), raise_on_error=False)


def test_a_tampered_checkpoint_is_refused(v4, tmp_path):
    data = _copy(v4, tmp_path)
    checkpoint = data / v4["teacher"]["manifest"]["checkpoint"][0]
    raw = bytearray(checkpoint.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(raw))
    result = _predict(data)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.event_specific_data.error)
    assert "sha256" in message and "ple_teacher" in message


def test_a_feature_schema_mismatch_is_refused(v4, tmp_path):
    from finai_assets.resources import DataPaths

    data = _copy(v4, tmp_path)
    wh = DataPaths(data_dir=str(data)).warehouse
    tables = wh.read("feature_table", "v4")
    tables["features"] = tables["features"].drop("log_renta")
    wh.write("feature_table", "v4", tables)
    result = _predict(data)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "log_renta" in str(failure.event_specific_data.error)


def test_under_automation_a_failed_leakage_check_holds_the_teacher_back(v4, tmp_path, monkeypatch):
    """eager() & all_deps_blocking_checks_passed(): a new leakage_report whose blocking check
    failed does not request ple_teacher; a passing one does."""
    from finai_assets.definitions import defs
    from finai_assets.defs import leakage as leakage_defs

    data, d = _copy(v4, tmp_path), defs()
    instance = dg.DagsterInstance.ephemeral()
    # the instance learns that the upstream exists (its data is in the copied folder)
    for asset in ("santander_raw", "card_transactions_raw", "customer_profiles", "synthetic_calibration"):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset))
    for asset in ("synthetic_customers", "synthetic_ground_truth", "candidate_labels", "split_assignments", "task_labels",
                  "feature_pipeline", "feature_table", "oracle_report"):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition="v4"))
    for asset, checks in declared_checks().items():  # ...with its blocking checks passed
        if asset not in ("leakage_report", "ple_teacher", "baseline_models", "teacher_predictions", "teacher_evaluation"):
            for name, blocking in checks.items():
                if blocking:
                    instance.report_runless_asset_event(dg.AssetCheckEvaluation(asset_key=dg.AssetKey(asset), check_name=name, passed=True))
    selection = dg.AssetSelection.assets("ple_teacher", "baseline_models")
    first = dg.evaluate_automation_conditions(defs=d, instance=instance, asset_selection=selection)

    def requested(tick) -> dict[str, int]:
        return {r.key.to_user_string(): r.true_subset.size for r in tick.results}

    monkeypatch.setattr(leakage, "label_reproduction", lambda *a, **k: pl.DataFrame({"feature": ["x"], "task": ["churn_signal"], "rho": [1.0]}))
    failing = dg.materialize(ALL_DATASET_ASSETS, selection=[leakage_defs.leakage_report], partition_key="v4",
                             instance=instance, resources=resources_for(data), raise_on_error=False)
    assert not {e.check_name: e.passed for e in failing.get_asset_check_evaluations()}["label_reproduction"]
    held = dg.evaluate_automation_conditions(defs=d, instance=instance, asset_selection=selection, cursor=first.cursor)
    assert requested(held).get("ple_teacher", 0) == 0 and requested(held).get("baseline_models", 0) == 0
    teacher = next(r for r in held.results if r.key.to_user_string() == "ple_teacher")
    eager, gate = teacher.child_results
    assert eager.true_subset.size == 1 and gate.true_subset.size == 0  # eager wanted it; the failed check held it
    monkeypatch.undo()
    passing = dg.materialize(ALL_DATASET_ASSETS, selection=[leakage_defs.leakage_report], partition_key="v4",
                             instance=instance, resources=resources_for(data), raise_on_error=False)
    assert passing.success
    released = dg.evaluate_automation_conditions(defs=d, instance=instance, asset_selection=selection, cursor=held.cursor)
    assert requested(released)["ple_teacher"] == 1 and requested(released)["baseline_models"] == 1
