"""Smoke test of the real UI path: `dagster-webserver` on 127.0.0.1, driven over GraphQL.

The webserver runs with a temp DAGSTER_HOME (DefaultRunCoordinator, so runs launch without the
daemon) and a temp FINAI_DATA_DIR. The runs use the multiprocess executor, exactly as a
"Materialize" click in the UI does: each step is a fresh process that loads its inputs back from
the warehouse. The embedded sample is shrunk through launchpad config to keep the module fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from finai_assets.defs.synthetic import SYNTHETIC_CHECKS
from finai_assets_tests.conftest import REPO, declared_checks
from finai_assets_tests.edges import loaded_edges
from finai_assets_tests.servers import DagsterDev, free_port, tail

pytestmark = pytest.mark.server

LOCATION = "finai_assets"
REPOSITORY = "__repository__"
STARTUP_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300
PARTITION = "v4"
# Small enough to be quick on 2 cores, large enough for the synthetic checks to pass.
N_CUSTOMERS = 4_000
RAW_CONFIG = {"sample_customers": N_CUSTOMERS}  # santander_raw and card_transactions_raw must agree

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack } } } }
    ... on PythonError { message stack } } }
"""
ASSET_NODES_QUERY = """
{ assetNodes { assetKey { path } groupName isPartitioned dependencyKeys { path } jobNames
    assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } } } }
"""
LAUNCH_RUN = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message } } }
"""
RUN_QUERY = """
query($id: ID!) { runOrError(runId: $id) { __typename
    ... on Run { status stepStats { stepKey status } } } }
"""
RUN_LOGS_QUERY = """
query($id: ID!, $cursor: String) { logsForRun(runId: $id, afterCursor: $cursor) { __typename
    ... on EventConnection { cursor hasMore events { __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message stack cause { message stack } } }
        ... on AssetCheckEvaluationEvent { evaluation { checkName success
            metadataEntries { label ... on TextMetadataEntry { text } } } } } }
    ... on PythonError { message } } }
"""
ASSET_QUERY = """
query($key: [String!]!, $partitions: [String!]) { assetOrError(assetKey: {path: $key}) { __typename
    ... on Asset { assetMaterializations(partitions: $partitions, limit: 5) { runId partition
        metadataEntries { label ... on PathMetadataEntry { path } ... on IntMetadataEntry { intValue } } } } } }
"""
# No `partition:` filter: the checks are inline `AssetCheckSpec`s without a partitions_def, so
# Dagster 1.13 records their executions with partition = null (the evaluation's target
# materialization is still the partition's, scoped by the step's partition key).
CHECK_EXECUTIONS_QUERY = """
query($key: [String!]!, $check: String!) {
  assetCheckExecutions(assetKey: {path: $key}, checkName: $check, limit: 10) {
    runId status partition evaluation { success targetMaterialization { runId storageId }
      metadataEntries { label ... on TextMetadataEntry { text } } } } }
"""


# --------------------------------------------------------------------------- helpers


class Webserver(DagsterDev):
    def __init__(self, base: str, data_dir: Path, log: Path):
        super().__init__(base, log)
        self.data_dir = data_dir

    def launch(self, assets: list[str], run_config: dict, partition: str | None = None) -> str:
        params: dict = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": [a]} for a in assets],
            },
            "runConfigData": run_config,
        }
        if partition is not None:
            params["executionMetadata"] = {"tags": [{"key": "dagster/partition", "value": partition}]}
        result = self.gql(LAUNCH_RUN, {"p": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", json.dumps(result, indent=2)
        return result["run"]["runId"]

    def wait(self, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.gql(RUN_QUERY, {"id": run_id})["runOrError"]
            assert run["__typename"] == "Run", run
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return run
            if time.monotonic() > deadline:
                return {**run, "status": f"TIMEOUT after {timeout:.0f} s (last status {run['status']})"}
            time.sleep(1.0)

    def failure_report(self, run_id: str) -> str:
        """The run's error events and failed checks, readable in a pytest failure."""
        lines, cursor, seen = [], None, set()
        while True:
            conn = self.gql(RUN_LOGS_QUERY, {"id": run_id, "cursor": cursor})["logsForRun"]
            if conn["__typename"] != "EventConnection":
                return f"logsForRun: {conn}"
            for e in conn["events"]:
                if e.get("error"):
                    err = e["error"]
                    cause = err.get("cause") or {}
                    if (err["message"], cause.get("message")) in seen:  # the run failure repeats the step's error
                        lines.append(f"[{e['__typename']}] {e.get('message', '')} (same error as above)")
                        continue
                    seen.add((err["message"], cause.get("message")))
                    lines.append(f"[{e['__typename']} step={e.get('stepKey')}] {e.get('message', '')}\n{err['message']}")
                    lines.append("".join(err.get("stack") or []))
                    cause = err.get("cause")
                    while cause:
                        lines.append(f"caused by: {cause['message']}{''.join(cause.get('stack') or [])}")
                        cause = cause.get("cause")
                elif e["__typename"] == "AssetCheckEvaluationEvent" and not e["evaluation"]["success"]:
                    meta = {m["label"]: m.get("text") for m in e["evaluation"]["metadataEntries"]}
                    lines.append(f"[check FAILED] {e['evaluation']['checkName']}: {meta.get('summary')}")
                elif e.get("level") in ("ERROR", "CRITICAL"):
                    lines.append(f"[{e['__typename']} {e['level']} step={e.get('stepKey')}] {e.get('message')}")
            if not conn["hasMore"]:
                break
            cursor = conn["cursor"]
        return "\n".join(lines) or "(no error events)"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def webserver(tmp_path_factory) -> Webserver:
    home = tmp_path_factory.mktemp("dagster_home")
    data_dir = tmp_path_factory.mktemp("finai_data")
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n"
        "  module: dagster.core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = home / "webserver.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "FINAI_DATA_DIR": str(data_dir)}
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: the code server and run workers die with it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # SIGINT may be inherited as ignored
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver not ready after {STARTUP_TIMEOUT_S} s:\n{tail(log)}")
            time.sleep(0.5)
        yield Webserver(base, data_dir, log)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def runs(webserver) -> dict[str, dict]:
    """The three UI launches in lineage order; stops at the first run that does not succeed."""
    launches = [
        ("santander_raw", ["santander_raw"], {"ops": {"santander_raw": {"config": RAW_CONFIG}}}, None),
        (
            "raw_chain_to_calibration",
            ["card_transactions_raw", "customer_profiles", "synthetic_calibration"],
            {"ops": {"card_transactions_raw": {"config": RAW_CONFIG}, "synthetic_calibration": {"config": {}}}},
            None,
        ),
        (
            f"synthetic_{PARTITION}",
            ["synthetic_customers", "synthetic_ground_truth"],
            {"ops": {"synthetic_version": {"config": {"n_customers": N_CUSTOMERS, "min_protected_group_customers": 100}}}},
            PARTITION,
        ),
    ]
    outcomes: dict[str, dict] = {}
    for label, assets, config, partition in launches:
        started = time.monotonic()
        run_id = webserver.launch(assets, config, partition)
        run = webserver.wait(run_id)
        outcome = {"run_id": run_id, "status": run["status"], "steps": run["stepStats"], "seconds": time.monotonic() - started}
        print(f"\n[webserver] {label}: {run['status']} in {outcome['seconds']:.1f} s (run {run_id})")
        if run["status"] != "SUCCESS":
            outcome["report"] = webserver.failure_report(run_id) + f"\n--- webserver log tail ---\n{tail(webserver.log, 15)}"
            outcomes[label] = outcome
            break
        outcomes[label] = outcome
    return outcomes


def _assert_succeeded(runs: dict, label: str) -> dict:
    if label not in runs:
        pytest.fail(f"{label} was not launched: an earlier run failed ({[(k, v['status']) for k, v in runs.items()]})")
    outcome = runs[label]
    assert outcome["status"] == "SUCCESS", (
        f"{label} run {outcome['run_id']} ended {outcome['status']}; steps {outcome['steps']}\n{outcome['report']}"
    )
    assert outcome["steps"] and all(s["status"] == "SUCCESS" for s in outcome["steps"]), outcome["steps"]
    return outcome


# --------------------------------------------------------------------------- tests


def test_code_location_loads(webserver):
    ws = webserver.gql(WORKSPACE_QUERY)["workspaceOrError"]
    assert ws["__typename"] == "Workspace", ws
    entries = {e["name"]: e for e in ws["locationEntries"]}
    assert set(entries) == {LOCATION}
    loaded = entries[LOCATION]["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", f"{loaded.get('message')}\n{''.join(loaded.get('stack') or [])}"
    assert entries[LOCATION]["loadStatus"] == "LOADED"
    assert [r["name"] for r in loaded["repositories"]] == [REPOSITORY]


def test_asset_nodes_groups_partitions_and_dependencies(webserver):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in webserver.gql(ASSET_NODES_QUERY)["assetNodes"]}
    actual = {
        key: (n["groupName"], n["isPartitioned"], {"/".join(d["path"]) for d in n["dependencyKeys"]})
        for key, n in nodes.items()
    }
    assert actual == loaded_edges()  # what the server shows is the graph the definitions declare
    assert all("__ASSET_JOB" in n["jobNames"] for n in nodes.values())
    served = {
        key: {c["name"]: c["blocking"] for c in n["assetChecksOrError"].get("checks", [])} for key, n in nodes.items()
    }
    assert served == declared_checks()
    assert served["synthetic_customers"] == {name: True for name in SYNTHETIC_CHECKS}


def test_launch_santander_raw_alone(runs):
    _assert_succeeded(runs, "santander_raw")


def test_launch_raw_chain_up_to_calibration(runs):
    outcome = _assert_succeeded(runs, "raw_chain_to_calibration")
    assert {s["stepKey"] for s in outcome["steps"]} == {"card_transactions_raw", "customer_profiles", "synthetic_calibration"}


def test_launch_synthetic_partition(runs):
    outcome = _assert_succeeded(runs, f"synthetic_{PARTITION}")
    assert {s["stepKey"] for s in outcome["steps"]} == {"synthetic_version"}


def test_synthetic_partition_materialized_with_passing_checks(webserver, runs):
    run_id = _assert_succeeded(runs, f"synthetic_{PARTITION}")["run_id"]
    for asset in ("synthetic_customers", "synthetic_ground_truth"):
        found = webserver.gql(ASSET_QUERY, {"key": [asset], "partitions": [PARTITION]})["assetOrError"]
        assert found["__typename"] == "Asset", found
        mats = [m for m in found["assetMaterializations"] if m["runId"] == run_id]
        assert len(mats) == 1 and mats[0]["partition"] == PARTITION, found["assetMaterializations"]
        meta = {m["label"]: m for m in mats[0]["metadataEntries"]}
        # The run worker wrote into the webserver's FINAI_DATA_DIR, not the repository's data/.
        assert Path(meta["warehouse_path"]["path"]).resolve().is_relative_to(webserver.data_dir.resolve())
        assert (Path(meta["warehouse_path"]["path"]) / "_manifest.json").exists()
        if asset == "synthetic_customers":
            assert meta["customers"]["intValue"] == N_CUSTOMERS
    for check in SYNTHETIC_CHECKS:
        execs = webserver.gql(CHECK_EXECUTIONS_QUERY, {"key": ["synthetic_customers"], "check": check})
        mine = [e for e in execs["assetCheckExecutions"] if e["runId"] == run_id]
        assert len(mine) == 1, (check, execs)
        e = mine[0]
        summary = {m["label"]: m.get("text") for m in (e["evaluation"] or {}).get("metadataEntries", [])}.get("summary")
        assert e["status"] == "SUCCEEDED" and e["evaluation"]["success"], (check, e["status"], summary)
        # It evaluated the v4 materialization of this very run.
        assert e["evaluation"]["targetMaterialization"]["runId"] == run_id
        assert e["partition"] in (PARTITION, None)
