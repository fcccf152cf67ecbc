"""The retrain path on a small build (4,000 customers, v4 only, 20 teacher epochs): a champion,
a drifted production month, the drift breach, the retrain sensor's request of santander_raw
with the accepted month appended, automation asking for the chain, the rebuilt candidate, and
promotion_decision judging it against the archived champion on the candidate's test split."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from finai_assets.definitions import defs
from finai_assets.defs.sensors import production_drop_sensor, retrain_on_drift_sensor
from finai_assets.lib import inbox
from finai_assets.lib.sample import demo_production_month
from finai_assets_tests.conftest import ALL_ASSETS, resources_for

pytestmark = pytest.mark.slow  # its own build and a 20-epoch teacher
N = 4_000
RAW = {"sample_customers": N}
CHAIN = ["santander_raw", "card_transactions_raw", "customer_profiles", "synthetic_calibration", "synthetic_customers", "synthetic_ground_truth",
         "candidate_labels", "split_assignments", "task_labels", "feature_pipeline", "feature_table", "oracle_report",
         "leakage_report", "ple_teacher", "baseline_models", "teacher_predictions", "teacher_evaluation", "distilled_students",
         "fidelity_report", "fairness_report"]
CONFIG = {"ops": {
    "santander_raw": {"config": RAW}, "card_transactions_raw": {"config": RAW},
    "synthetic_version": {"config": {"n_customers": N, "min_protected_group_customers": 60}},
    "ple_teacher": {"config": {"epochs": 20, "patience": 5, "seed": 0}}, "baseline_models": {"config": {"epochs": 2, "patience": 1, "seed": 0}},
    "split_assignments": {"config": {"max_share_deviation": 0.03}},  # 400-customer val/calib splits
    "fairness_report": {"config": {"min_group_size": 20}},
}}


def _run(world, selection, partition=None, config=None):
    result = dg.materialize(ALL_ASSETS, selection=selection, partition_key=partition, instance=world["instance"],
                            resources=resources_for(world["data"]), run_config=config or {}, raise_on_error=False)
    return result


def _chain(world, with_raw: bool):
    ops = {k: v for k, v in CONFIG["ops"].items() if with_raw or k not in ("santander_raw", "card_transactions_raw")}
    unpartitioned = [a for a in CHAIN[:4] if with_raw or a not in ("santander_raw", "card_transactions_raw")]
    assert _run(world, unpartitioned, None, {"ops": {k: v for k, v in ops.items() if k in unpartitioned}}).success
    result = _run(world, CHAIN[4:], "v4", {"ops": {k: v for k, v in ops.items() if k not in CHAIN[:4]}})
    failed = {e.check_name: e.metadata.get("failed") for e in result.get_asset_check_evaluations()
              if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR}
    # a blocking fidelity check may fail on 4,000 customers: the chain then ends at fidelity_report, which the decision rejects on
    assert result.success or set(failed) <= {"fidelity_tier1", "constant_student_guard"}, \
        f"the chain failed: checks {failed}\n{_failures(result)[:3000]}"
    assert result.asset_materializations_for_node("fidelity_report")
    decision = _run(world, ["promotion_decision"], "v4")
    assert decision.success, _failures(decision)
    return decision


def _failures(result) -> str:
    return "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = {"data": tmp_path_factory.mktemp("retrain") / "data", "instance": dg.DagsterInstance.ephemeral()}
    world["bootstrap"] = _chain(world, with_raw=True)
    assert _run(world, ["champion_model"]).success
    # a drifted production month (amounts x 3) for the same customers
    date, snapshots, transactions = demo_production_month(1, N, amount_scale=3.0)
    folders = inbox.Folders(world["data"] / "production")
    inbox.write_drop(folders, date.replace(day=1), snapshots, transactions)
    context = dg.build_sensor_context(instance=world["instance"], resources={"paths": resources_for(world["data"])["paths"]})
    (request,) = production_drop_sensor(context).run_requests
    assert _run(world, ["production_snapshots"], request.partition_key, request.run_config).success
    world["drift"] = _run(world, ["production_scores", "drift_report"], request.partition_key)
    assert world["drift"].success
    world["retrain"] = retrain_on_drift_sensor(dg.build_sensor_context(instance=world["instance"]))
    automation = dg.evaluate_automation_conditions(defs=defs(), instance=world["instance"])
    (raw_request,) = world["retrain"].run_requests
    world["raw"] = _run(world, ["santander_raw"], None, {"ops": {"santander_raw": {"config": RAW}}})
    assert world["raw"].success
    world["automation"] = dg.evaluate_automation_conditions(defs=defs(), instance=world["instance"], cursor=automation.cursor)
    world["candidate"] = _chain(world, with_raw=False)
    return world


def test_the_first_build_becomes_the_bootstrap_champion(world):
    meta = world["bootstrap"].asset_materializations_for_node("promotion_decision")[0].metadata
    assert meta["decision"].value == "bootstrap" and meta["promoted"].value


def test_a_drifted_month_breaches_and_the_retrain_sensor_requests_santander_raw(world):
    meta = world["drift"].asset_materializations_for_node("drift_report")[0].metadata
    assert meta["drift_breached"].value and meta["max_psi"].value >= 0.25
    (request,) = world["retrain"].run_requests
    assert request.tags["finai/trigger"] == "drift_breach" and request.tags["finai/breached_months"] == "2016-06-01"
    assert [k.to_user_string() for k in request.asset_selection] == ["santander_raw"]
    again = retrain_on_drift_sensor(dg.build_sensor_context(instance=world["instance"], cursor=world["retrain"].cursor))
    assert not again.run_requests  # one request per breach


def test_santander_raw_appends_the_accepted_month_and_automation_asks_for_the_chain(world):
    meta = world["raw"].asset_materializations_for_node("santander_raw")[0].metadata
    assert list(meta["appended_production_months"].value) == ["2016-06-01"]
    months = world["raw"].asset_value(dg.AssetKey("santander_raw"))["snapshots"]["fecha_dato"].unique().sort()
    assert months.len() == 18 and str(months[-1]) == "2016-06-28"
    requested = {r.key.to_user_string(): r.true_subset.size for r in world["automation"].results}
    assert requested.get("customer_profiles", 0) == 1  # the chain starts from the new history
    assert not requested.get("champion_model", 0)  # the champion moves only after a promotion decision


def test_promotion_judges_the_rebuilt_candidate_against_the_archived_champion(world):
    meta = world["candidate"].asset_materializations_for_node("promotion_decision")[0].metadata
    assert meta["champion_before"].value != "none" and meta["candidate"].value != meta["champion_before"].value
    assert meta["decision"].value in ("reject", "eligible") and not meta["promoted"].value  # auto-promote is off
    if meta["rung"].value == "competition":
        significance = meta["significance"].value
        assert significance["rows"] > 300 and 0 <= significance["p_value"] <= 1  # the paired bootstrap ran on per-sample predictions
    else:
        assert meta["rung"].value == "fidelity_fairness" and meta["fidelity_failures"].value > 0
    decision = world["candidate"].asset_value(dg.AssetKey("promotion_decision"))["decision"].row(0, named=True)
    assert decision["champion_after"] == decision["champion_before"]  # the champion did not move


def test_every_governed_step_left_a_verifiable_audit_trail(world):
    from finai_assets.lib.audit import AuditLog, audit_key

    log = AuditLog(world["data"] / "governance" / "audit_log.duckdb", audit_key())
    events = [e.event for e in log.entries()]
    assert events[0] == "promotion:bootstrap" and "drop_accepted" in events and events[-1].startswith("promotion:")
    assert log.verify().ok
    candidates = pl.read_ndjson(world["data"] / "governance" / "registry" / "events.jsonl").filter(pl.col("event") == "candidate")
    assert candidates.height == 2
