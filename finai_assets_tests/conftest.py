"""Session-wide fixtures: one on-disk build of the graph, shared by every stage's tests."""

import concurrent.futures
import dataclasses
import multiprocessing
import os
from pathlib import Path

import dagster as dg
import pytest

from finai_assets.defs import fairness, features, governance, labels, leakage, production, raw, students, synthetic, teacher
from finai_assets.resources import AuditLogResource, DataPaths, ModelRegistryResource, WarehouseIOManager

REPO = Path(__file__).resolve().parents[1]


def declared_checks() -> dict[str, dict[str, bool]]:
    """asset -> {check name: blocking} as the loaded definitions declare them."""
    from finai_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    out = {key.to_user_string(): {} for key in graph.materializable_asset_keys}
    for check_key in graph.asset_check_keys:
        out[check_key.asset_key.to_user_string()][check_key.name] = graph.get_check_spec(check_key).blocking
    return out

RAW_ASSETS = [raw.santander_raw, raw.card_transactions_raw, raw.customer_profiles]
SYNTHETIC_ASSETS = [synthetic.synthetic_calibration, synthetic.synthetic_version]
LABEL_ASSETS = [labels.candidate_labels, labels.split_assignments, labels.task_labels]
FEATURE_ASSETS = [features.feature_pipeline, features.feature_table, leakage.oracle_report, leakage.leakage_report]
TEACHER_ASSETS = [teacher.ple_teacher, teacher.baseline_models, teacher.teacher_predictions, teacher.teacher_evaluation]
STUDENT_ASSETS = [students.distilled_students, students.fidelity_report, fairness.fairness_report]
GOVERNANCE_ASSETS = [governance.promotion_decision, governance.champion_model]
PRODUCTION_ASSETS = [production.production_snapshots, production.production_scores, production.drift_report,
                     production.production_fairness, production.production_outcomes]
ALL_DATASET_ASSETS = [*RAW_ASSETS, *SYNTHETIC_ASSETS, *LABEL_ASSETS, *FEATURE_ASSETS, *TEACHER_ASSETS, *STUDENT_ASSETS]
ALL_ASSETS = [*ALL_DATASET_ASSETS, *GOVERNANCE_ASSETS, *PRODUCTION_ASSETS]
# Capped training for the suite: v4 at the default 20,000 customers, fixed seed.
# Threads: the cores this pytest process has to itself (xdist runs one process per core).
TEST_TEACHER_CONFIG = {"epochs": 4, "patience": 2, "seed": 0, "device": "auto",
                       "threads": max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))}
VERSIONS = ("v2", "v3", "v4")
BUILD_FIXTURES = {"build", "teacher_build", "students_build"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    """Tests on the shared build are `slow`. Under xdist each module is one unit of work (its module
    fixtures are built once) and every test on the shared build joins one group, scheduled first,
    so that one worker builds it while the others run everything else."""
    on_build = {item: bool(BUILD_FIXTURES & set(item.fixturenames)) for item in items}
    for item in items:
        if on_build[item]:
            item.add_marker(pytest.mark.slow)
    if config.pluginmanager.hasplugin("xdist"):
        for item in items:
            item.add_marker(pytest.mark.xdist_group("shared_build" if on_build[item] else item.module.__name__))
    items.sort(key=lambda item: not on_build[item])


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The metadata of the run's one materialization of `asset`."""
    (mat,) = result.asset_materializations_for_node(asset)
    return mat.metadata


def resources_for(data_dir: Path) -> dict:
    d = str(data_dir)
    return {"paths": DataPaths(data_dir=d), "io_manager": WarehouseIOManager(data_dir=d),
            "model_registry": ModelRegistryResource(data_dir=d), "audit_log": AuditLogResource(data_dir=d)}


@dataclasses.dataclass
class Build:
    data_dir: Path
    instance: dg.DagsterInstance
    results: dict

    @property
    def resources(self) -> dict:
        return resources_for(self.data_dir)

    @property
    def warehouse(self):
        return DataPaths(data_dir=str(self.data_dir)).warehouse


def _materialize_version(home: str, data_dir: str, version: str) -> str:
    """One synthetic version through labels, features and leakage, in its own process; the run id."""
    instance = dg.DagsterInstance.local_temp(home)
    return dg.materialize(
        [*RAW_ASSETS, *SYNTHETIC_ASSETS, *LABEL_ASSETS, *FEATURE_ASSETS],
        selection=[synthetic.synthetic_version, *LABEL_ASSETS, *FEATURE_ASSETS],
        partition_key=version, instance=instance, resources=resources_for(Path(data_dir)), raise_on_error=False,
    ).run_id


def stored_result(instance: dg.DagsterInstance, run_id: str) -> dg.ExecuteInProcessResult:
    """A run executed in another process, read back from the instance it wrote to (the events and
    the run; no job definition or captured outputs, which no test reads)."""
    events = [e.dagster_event for e in instance.all_logs(run_id) if e.is_dagster_event]
    return dg.ExecuteInProcessResult(events, instance.get_run_by_id(run_id), None, None)


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Build:
    """The embedded default through raw, calibration and every synthetic version, on disk: an on-disk
    instance, the versions materialized in parallel processes (they share only the warehouse)."""
    data_dir = tmp_path_factory.mktemp("finai_data")
    home = tmp_path_factory.mktemp("dagster_instance")
    instance = dg.DagsterInstance.local_temp(str(home))
    results = {
        "raw": dg.materialize([*RAW_ASSETS, synthetic.synthetic_calibration], instance=instance, resources=resources_for(data_dir))
    }
    with concurrent.futures.ProcessPoolExecutor(len(VERSIONS), mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = {v: pool.submit(_materialize_version, str(home), str(data_dir), v) for v in VERSIONS}
        results |= {v: stored_result(instance, run.result()) for v, run in runs.items()}
    return Build(data_dir, instance, results)


@pytest.fixture(scope="session")
def teacher_build(build) -> Build:
    """The teacher stage on v4 (capped epochs), on top of the shared build."""
    config = {"ops": {name: {"config": TEST_TEACHER_CONFIG} for name in ("ple_teacher", "baseline_models")}}
    build.results["teacher_v4"] = dg.materialize(
        ALL_DATASET_ASSETS, selection=TEACHER_ASSETS, partition_key="v4", instance=build.instance,
        resources=build.resources, run_config=config, raise_on_error=False,
    )
    return build


@pytest.fixture(scope="session")
def students_build(teacher_build) -> Build:
    """Students, fidelity and fairness on v4, on top of the teacher stage."""
    teacher_build.results["students_v4"] = dg.materialize(
        ALL_DATASET_ASSETS, selection=STUDENT_ASSETS, partition_key="v4", instance=teacher_build.instance,
        resources=teacher_build.resources, raise_on_error=False,
    )
    return teacher_build
