"""Session-wide fixtures: one on-disk build of the graph, shared by every stage's tests (SPEC 4)."""

import dataclasses
from pathlib import Path

import dagster as dg
import pytest

from finai_assets.defs import features, labels, leakage, raw, synthetic, teacher
from finai_assets.resources import DataPaths, WarehouseIOManager

REPO = Path(__file__).resolve().parents[1]
# SPEC 3: asset -> (group, partitioned, upstream assets) for the stages that exist so far.
SPEC_EDGES = {
    "santander_raw": ("raw", False, set()),
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
ALL_DATASET_ASSETS = [*RAW_ASSETS, *SYNTHETIC_ASSETS, *LABEL_ASSETS, *FEATURE_ASSETS, *TEACHER_ASSETS]
# Capped training for the suite (SPEC 4): v4 at the default 20,000 customers, fixed seed.
TEST_TEACHER_CONFIG = {"epochs": 8, "patience": 3, "seed": 0, "device": "auto"}


def resources_for(data_dir: Path) -> dict:
    return {"paths": DataPaths(data_dir=str(data_dir)), "io_manager": WarehouseIOManager(data_dir=str(data_dir))}


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
