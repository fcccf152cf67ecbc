"""End to end under `dagster dev` (daemon running): `make drop-demo` twice and, with no click,
the drop sensor and the automation sensor take both months through production_scores,
drift_report and production_fairness, and the first month through production_outcomes — never
more than 2 runs at once and never more than 1 heavy step. The drift-breach retrain is switched
off here (FINAI_RETRAIN_ON_DRIFT=off); `test_retrain.py` covers it on a small build.

The champion comes from the shared v4 build (copied): santander_raw, card_transactions_raw,
promotion_decision[v4] (the bootstrap promotion) and champion_model are materialized in-process
into this test's own DAGSTER_HOME before `dagster dev` starts on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import dagster as dg
import pytest

from finai_assets_tests.conftest import ALL_ASSETS, REPO, resources_for
from finai_assets_tests.servers import dagster_dev, dagster_home, tail

MONTHS = ("2016-06-01", "2016-07-01")
WANTED = {"production_snapshots": MONTHS, "production_scores": MONTHS, "drift_report": MONTHS,
          "production_fairness": MONTHS, "production_outcomes": MONTHS[:1]}
TIMEOUT_S = 600
ARTIFACTS = REPO / "test-artifacts" / "production_e2e"


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


@pytest.fixture(scope="module")
def e2e(students_build, tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e") / "data"
    shutil.copytree(students_build.data_dir, data)
    home = dagster_home(tmp_path_factory.mktemp("e2e_home"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for selection, partition in ((["santander_raw", "card_transactions_raw"], None), (["promotion_decision"], "v4"), (["champion_model"], None)):
            result = dg.materialize(ALL_ASSETS, selection=selection, partition_key=partition, instance=instance,
                                    resources=resources_for(data), raise_on_error=False)
            assert result.success, selection
        decision = result  # champion_model's run
    env = {"FINAI_RETRAIN_ON_DRIFT": "off"}
    log = ARTIFACTS / "dagster_dev.log"
    with dagster_dev(home, data, log, env) as server:
        server.wait_for_tick("finai_automation")
        started = time.time()
        for _ in range(2):
            out = subprocess.run(["make", "--no-print-directory", "drop-demo"], cwd=REPO, capture_output=True, text=True,
                                 env={**os.environ, "FINAI_DATA_DIR": str(data)}, timeout=300)
            assert out.returncode == 0, out.stdout + out.stderr
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                done = {a: set(instance.get_materialized_partitions(dg.AssetKey(a))) for a in WANTED}
                if all(set(months) <= done[a] for a, months in WANTED.items()):
                    break
                failed = [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))]
                if failed or time.monotonic() > deadline:
                    raise AssertionError(f"after {time.time() - started:.0f} s: materialized {done}; failed runs "
                                         f"{[(r.run_id[:8], sorted(r.asset_selection or [])) for r in failed]}\n{tail(log)}")
                time.sleep(3)
            time.sleep(20)  # let whatever automation still queues show up in the run records
            runs = instance.get_run_records()
            steps = []
            for record in runs:
                if not record.dagster_run.tags.get("dagster/sensor_name"):
                    continue  # the in-process set-up runs above
                starts = {}
                for event in instance.all_logs(record.dagster_run.run_id, of_type={dg.DagsterEventType.STEP_START,
                                                                                 dg.DagsterEventType.STEP_SUCCESS,
                                                                                 dg.DagsterEventType.STEP_FAILURE}):
                    if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                        starts[event.step_key] = event.timestamp
                    else:
                        steps.append((event.step_key, starts.get(event.step_key, event.timestamp), event.timestamp))
            yield {"runs": runs, "steps": steps, "instance_home": home, "data": data, "bootstrap": decision,
                   "materialized": done, "seconds": time.time() - started, "server": server}


def test_two_drops_reach_scores_drift_fairness_and_the_first_months_outcomes_without_a_click(e2e):
    for asset, months in WANTED.items():
        assert set(months) <= e2e["materialized"][asset], asset
    assert MONTHS[1] not in e2e["materialized"]["production_outcomes"]  # its outcomes need a third month
    launched = [r for r in e2e["runs"] if r.dagster_run.tags.get("dagster/sensor_name") or r.dagster_run.tags.get("dagster/from_automation_condition")]
    sensors = {r.dagster_run.tags.get("dagster/sensor_name") for r in launched}
    assert {"production_drop_sensor", "finai_automation"} <= sensors, sensors


def test_never_more_than_two_runs_and_one_heavy_step_at_once(e2e):
    intervals = [(r.start_time, r.end_time) for r in e2e["runs"] if r.start_time and r.end_time]
    assert len(intervals) >= 8 and _max_overlap(intervals) <= 2
    heavy = [(a, b) for step, a, b in e2e["steps"] if step in ("production_scores",)]
    assert len(heavy) >= 2 and _max_overlap(heavy) <= 1


def test_only_the_production_assets_ran(e2e):
    """Without a breach (the retrain is off here) nothing upstream of the champion rebuilds."""
    ran = {step for step, _, _ in e2e["steps"]}
    assert ran <= {"production_snapshots", "production_scores", "drift_report", "production_fairness", "production_outcomes"}, ran


def test_the_scores_use_the_champion_and_the_outcomes_are_real(e2e):
    from finai_assets.resources import DataPaths

    warehouse = DataPaths(data_dir=str(e2e["data"])).warehouse
    scores = warehouse.read("production_scores", MONTHS[0])["scores"]
    assert scores.height > 15_000 and scores["p_churn_signal"].is_between(0, 1).all()
    outcomes = warehouse.read("production_outcomes", MONTHS[0])
    quality = {r["task"]: r for r in outcomes["quality"].iter_rows(named=True)}
    assert quality["will_acquire_accounts"]["labelled"] > 15_000
    assert 0.5 < quality["will_acquire_accounts"]["auc"] < 1.0  # lagged realised AUC of real decisions
    drift = warehouse.read("drift_report", MONTHS[1])["psi"]
    assert drift.filter(drift["kind"] == "feature").height > 100 and drift["psi"].is_not_null().all()
