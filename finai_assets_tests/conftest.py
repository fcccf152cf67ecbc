"""Session-wide fixtures: one on-disk build of the graph, shared by every stage's tests (SPEC 4)."""

import dataclasses
from pathlib import Path

import dagster as dg
import pytest

from finai_assets.defs import fairness, features, governance, labels, leakage, production, raw, students, synthetic, teacher
from finai_assets.resources import AuditLogResource, DataPaths, ModelRegistryResource, WarehouseIOManager

REPO = Path(__file__).resolve().parents[1]
# SPEC 3: asset -> (group, partitioned, upstream assets).
SPEC_EDGES = {
    "santander_raw": ("raw", False, {"production_snapshots"}),
    "card_transactions_raw": ("raw", False, set()),
    "customer_profiles": ("raw", False, {"santander_raw", "card_transactions_raw"}),
    "synthetic_calibration": ("synthetic", False, {"customer_profiles", "santander_raw", "card_transactions_raw"}),
    "synthetic_customers": ("synthetic", True, {"synthetic_calibration"}),
    "synthetic_ground_truth": ("synthetic", True, {"synthetic_calibration"}),
    "candidate_labels": ("labels", True, {"synthetic_customers"}),
    "split_assignments": ("features", True, {"synthetic_customers", "candidate_labels"}),
    "task_labels": ("labels", True, {"candidate_labels", "split_assignments", "synthetic_customers"}),
    "feature_pipeline": ("features", True, {"synthetic_customers", "split_assignments"}),
    "feature_table": ("features", True, {"synthetic_customers", "feature_pipeline"}),
    "oracle_report": ("features", True, {"synthetic_ground_truth", "task_labels", "split_assignments"}),
    "leakage_report": ("features", True, {"feature_table", "task_labels", "split_assignments", "oracle_report"}),
    "ple_teacher": ("teacher", True, {"feature_table", "task_labels", "split_assignments", "leakage_report"}),
    "baseline_models": ("teacher", True, {"feature_table", "task_labels", "split_assignments", "leakage_report"}),
    "teacher_predictions": ("teacher", True, {"ple_teacher", "feature_table", "leakage_report"}),
    "teacher_evaluation": ("teacher", True, {"teacher_predictions", "baseline_models", "oracle_report", "task_labels", "split_assignments"}),
    "distilled_students": ("students", True, {"teacher_predictions", "teacher_evaluation", "feature_table", "task_labels", "split_assignments", "leakage_report"}),
    "fidelity_report": ("students", True, {"distilled_students", "teacher_predictions", "teacher_evaluation", "task_labels", "split_assignments"}),
    "fairness_report": ("governance", True, {"distilled_students", "teacher_predictions", "task_labels", "split_assignments", "synthetic_customers"}),
    # SPEC 3 lists seven inputs; leakage_report is added by its own rule: every consumer of
    # feature_table also depends on leakage_report (blocking checks only gate direct dependents).
    "promotion_decision": ("governance", True, {"fidelity_report", "fairness_report", "teacher_evaluation", "distilled_students",
                                               "feature_table", "task_labels", "split_assignments", "leakage_report"}),
    "champion_model": ("governance", False, {"promotion_decision"}),
    "production_snapshots": ("production", True, set()),
    "production_scores": ("production", True, {"production_snapshots", "santander_raw", "card_transactions_raw", "champion_model"}),
    "drift_report": ("production", True, {"production_scores", "champion_model"}),
    "production_fairness": ("production", True, {"production_scores"}),
    "production_outcomes": ("production", True, {"production_scores", "production_snapshots"}),
}


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
# Capped training for the suite (SPEC 4): v4 at the default 20,000 customers, fixed seed.
TEST_TEACHER_CONFIG = {"epochs": 4, "patience": 2, "seed": 0, "device": "auto"}


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


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Build:
    """The embedded default through raw, calibration and every synthetic version, on disk."""
    data_dir = tmp_path_factory.mktemp("finai_data")
    instance = dg.DagsterInstance.ephemeral()
    results = {
        "raw": dg.materialize([*RAW_ASSETS, synthetic.synthetic_calibration], instance=instance, resources=resources_for(data_dir))
    }
    for version in ("v2", "v3", "v4"):
        results[version] = dg.materialize(
            [*RAW_ASSETS, *SYNTHETIC_ASSETS, *LABEL_ASSETS, *FEATURE_ASSETS],
            selection=[synthetic.synthetic_version, *LABEL_ASSETS, *FEATURE_ASSETS],
            partition_key=version,
            instance=instance,
            resources=resources_for(data_dir),
            raise_on_error=False,
        )
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
