"""Students stage: per-task LightGBM students distilled from the teacher, and their fidelity gate."""

from typing import Optional

import dagster as dg
import polars as pl

from finai_assets.dagster_meta import artifact_dir, code_version, input_hashes, labels_with_split, markdown_table, table_metadata
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.lib import fidelity as fid
from finai_assets.lib import student_model as st
from finai_assets.lib import student_tables as dl
from finai_assets.lib import teacher as tl
from finai_assets.lib.ple.config import training_threads
from finai_assets.lib.storage import content_hash
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports

FIDELITY_CHECKS = ("fidelity_tier1", "constant_student_guard")


class StudentsConfig(dg.Config):
    """Launchpad config of the distilled students."""

    alpha: float = st.StudentConfig.alpha  # weight of the hard label; 1 - alpha on the teacher's soft label
    temperature: float = st.StudentConfig.temperature
    learning_rate: float = st.StudentConfig.learning_rate
    num_leaves: int = st.StudentConfig.num_leaves
    min_child_samples: int = st.StudentConfig.min_child_samples
    max_rounds: int = st.StudentConfig.max_rounds
    max_trees: int = st.StudentConfig.max_trees  # a multiclass student: rounds <= max_trees / K, learning rate raised to match
    early_stopping: int = st.StudentConfig.early_stopping
    reason_codes: int = st.StudentConfig.reason_codes  # top contributing features kept per test-split prediction
    # 0: soft labels on train rows are the teacher's in-sample predictions; K >= 2: a K-fold
    # cross-fit retrains the teacher's own recipe (its checkpoint's config) K times.
    cross_fit_folds: int = 0
    seed: int = st.StudentConfig.seed
    threads: Optional[int] = None  # None: every core (the heavy pool trains one step at a time)

    def student_config(self) -> st.StudentConfig:
        return st.StudentConfig(alpha=self.alpha, temperature=self.temperature, learning_rate=self.learning_rate,
                                num_leaves=self.num_leaves, min_child_samples=self.min_child_samples, max_rounds=self.max_rounds, max_trees=self.max_trees,
                                early_stopping=self.early_stopping, seed=self.seed, threads=training_threads(self.threads),
                                reason_codes=self.reason_codes)


def _cross_fit(context: dg.AssetExecutionContext, paths: DataPaths, data: tl.Design, soft: dict, specs, folds: int) -> dict:
    """The teacher's recipe, read from the checkpoint `ple_teacher` recorded (verified), retrained per fold."""
    from finai_assets.lib.ple.checkpoint import load_checkpoint
    from finai_assets.lib.ple.config import PLEConfig, TrainConfig

    manifest = paths.warehouse.read("ple_teacher", context.partition_key)["manifest"].row(0, named=True)
    recipe = load_checkpoint(paths.root / manifest["checkpoint"], expected_sha256=manifest["sha256"], feature_columns=data.columns)["config"]
    model_config = PLEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe["model"].items()})
    train = {k: v for k, v in recipe["train"].items() if k in TrainConfig.__dataclass_fields__}
    train_config = TrainConfig(**train)
    return tl.cross_fit_soft_labels(data, soft, specs, recipe.get("routing"), model_config, train_config, folds, context.log.info)


@dg.asset(
    partitions_def=dataset_partitions, group_name="students", kinds={"lightgbm"}, code_version=CODE_VERSION, pool="heavy",
    deps=["leakage_report", "ple_teacher"],  # a cross-fit reads the teacher's recipe from its checkpoint
    automation_condition=CHAIN_AUTOMATION,
)
def distilled_students(
    context: dg.AssetExecutionContext, config: StudentsConfig, teacher_predictions: pl.DataFrame, teacher_evaluation: dict,
    feature_table: dict, task_labels: dict, split_assignments: pl.DataFrame, paths: DataPaths,
) -> dg.MaterializeResult:
    """One LightGBM student per kept task, as `teacher_evaluation` routed it: distilled on the
    teacher's soft labels with the custom objective (hard-label weight alpha = 0.3, T = 1),
    hard-label LightGBM where the teacher is too weak, or the documented prior rule where nothing
    learns. Early stopping on val; binary students Platt-calibrated on the calib fold (test is
    never read). Each model is a content-addressed LightGBM text file whose sha256 every reader
    verifies; predictions for every customer and, for the test split, each prediction's top
    contributing features (reason codes) are stored beside the manifest."""
    specs = tl.task_specs(task_labels["decisions"])
    data = tl.design(feature_table["features"], labels_with_split(task_labels, split_assignments), specs)
    route_of = dl.routes(teacher_evaluation["routing"], specs)
    soft = dl.aligned(teacher_predictions, data.ncodpers, specs, "teacher_predictions")
    soft_source = "in_sample"
    if config.cross_fit_folds:
        soft, soft_source = _cross_fit(context, paths, data, soft, specs, config.cross_fit_folds), f"cross_fit_{config.cross_fit_folds}"
    student_config = config.student_config()
    students = dl.train_students(data, soft, route_of, specs, student_config, context.log.info)
    manifest = dl.save_students(students, artifact_dir(paths, "distilled_students", context.partition_key), paths.root,
                                teacher_evaluation["routing"], soft_source)
    predictions = dl.student_frame(students, data, specs, student_config.threads)
    reasons = dl.reason_codes(students, data, config.reason_codes, threads=student_config.threads)
    tables = {"manifest": manifest, "predictions": predictions, "reason_codes": reasons}
    summary = manifest.select("task", "route", "rounds", "model_bytes", "platt_a", "platt_b", "sha256")
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            **table_metadata(predictions),
            "students": markdown_table(summary),
            "routes": dg.MetadataValue.json(dict(manifest.select("task", "route").iter_rows())),
            "soft_labels": soft_source,
            "model_bytes_total": int(manifest["model_bytes"].sum()),
            "model_sha256": dg.MetadataValue.json({t: s for t, s in manifest.select("task", "sha256").iter_rows() if s}),
            "reason_codes_example": markdown_table(reasons.head(6)),
            "config": dg.MetadataValue.json(config.model_dump()),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in (
                "teacher_predictions", "teacher_evaluation", "feature_table", "task_labels", "split_assignments", "leakage_report")}),
        },
    )


class FidelityConfig(dg.Config):
    """Fidelity thresholds (tier 1 is blocking; docs/thresholds.md#fidelity)."""

    auc_gap: float = fid.FidelityThresholds.auc_gap
    ece: float = fid.FidelityThresholds.ece
    f1_gap: float = fid.FidelityThresholds.f1_gap
    mae_gap_relative: float = fid.FidelityThresholds.mae_gap_relative
    rmse_gap_relative: float = fid.FidelityThresholds.rmse_gap_relative
    constant_std_ratio: float = fid.FidelityThresholds.constant_std_ratio
    top_k_percent: float = fid.FidelityThresholds.top_k_percent

    def thresholds(self) -> fid.FidelityThresholds:
        return fid.FidelityThresholds(**self.model_dump())


@dg.asset(
    partitions_def=dataset_partitions, group_name="students", kinds={"lightgbm", "polars"}, code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec("fidelity_tier1", asset="fidelity_report", blocking=True,
                          description="every distilled student within the one-sided tier-1 gaps of its teacher (AUC, ECE, F1-macro, MAE/RMSE)"),
        dg.AssetCheckSpec("constant_student_guard", asset="fidelity_report", blocking=True,
                          description="no distilled student's prediction std below 1e-3 x its teacher's"),
    ],
    automation_condition=CHAIN_AUTOMATION,
)
def fidelity_report(
    context: dg.AssetExecutionContext, config: FidelityConfig, distilled_students: dict, teacher_predictions: pl.DataFrame,
    teacher_evaluation: dict, task_labels: dict, split_assignments: pl.DataFrame, paths: DataPaths,
):

    """Fidelity of each distilled student to its teacher on the test split. Every student model
    file is first verified against the sha256 `distilled_students` recorded: a tampered or missing
    file is refused here, before anything is judged. Tier 1 (blocking, one-sided: a student may
    beat its teacher), tier 2 (agreement, also within the top-k %, rank correlation, JSD;
    informational), the constant-student guard. Tasks not distilled are listed, not judged."""
    specs = tl.task_specs(task_labels["decisions"])
    route_of = dl.routes(teacher_evaluation["routing"], specs)
    dl.load_students(distilled_students["manifest"], paths.root)
    test = labels_with_split(task_labels, split_assignments).filter(pl.col("split") == "test")
    ncodpers = test["ncodpers"].to_numpy()
    student = dl.aligned(distilled_students["predictions"], ncodpers, specs, "distilled_students")
    teacher = dl.aligned(teacher_predictions, ncodpers, specs, "teacher_predictions")
    y = {s.name: test[s.name].cast(pl.Float64).fill_null(float("nan")).to_numpy() for s in specs}
    th = config.thresholds()
    tables = fid.fidelity_tables(specs, route_of, y, student, teacher, th)
    quality = tl.evaluate_models(test, {"student": distilled_students["predictions"], "teacher": teacher_predictions}, specs, "test")
    tables["test_comparison"] = tl.comparison(quality, specs)
    judged = tables["summary"].filter(pl.col("verdict") != "not_judged")
    yield dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "summary": markdown_table(tables["summary"]),
            "tier1": markdown_table(tables["tier1"], 60),
            "tier2": markdown_table(tables["tier2"]),
            "test_comparison": markdown_table(tables["test_comparison"], 60),
            "distilled_tasks": judged.height,
            "passing": int((judged["verdict"] == "pass").sum()),
            "test_rows": test.height,
            "thresholds": dg.MetadataValue.json(config.model_dump()),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in (
                "distilled_students", "teacher_predictions", "teacher_evaluation", "task_labels", "split_assignments")}),
        },
    )
    tier1_failed = tables["tier1"].filter(~pl.col("passed"))
    yield dg.AssetCheckResult(
        check_name="fidelity_tier1", asset_key="fidelity_report", passed=tier1_failed.is_empty(), severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failed": markdown_table(tier1_failed), "distilled_tasks": judged.height, "thresholds": dg.MetadataValue.json(config.model_dump())},
    )
    guard_failed = tables["guard"].filter(~pl.col("passed"))
    yield dg.AssetCheckResult(
        check_name="constant_student_guard", asset_key="fidelity_report", passed=guard_failed.is_empty(), severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failed": markdown_table(guard_failed), "all": markdown_table(tables["guard"]), "std_ratio_floor": th.constant_std_ratio},
    )

