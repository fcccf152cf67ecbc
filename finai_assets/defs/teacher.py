"""Teacher stage: the PLE teacher, its baselines, its soft labels, and its evaluation."""

import dataclasses
from typing import Optional

import dagster as dg
import polars as pl

from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.dagster_meta import artifact_dir, code_version, input_hashes, labels_with_split, markdown_table, table_metadata
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.lib import plots
from finai_assets.lib import teacher as tl
from finai_assets.lib.ple.config import PLEConfig, TrainConfig, training_threads
from finai_assets.lib.storage import content_hash
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports


class TeacherConfig(dg.Config):
    """Launchpad config of the PLE teacher (the shared-bottom baseline trains with the same loop
    settings)."""

    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    weight_decay: float = TrainConfig.weight_decay
    warmup_epochs: int = TrainConfig.warmup_epochs
    patience: int = TrainConfig.patience
    max_train_rows: Optional[int] = TrainConfig.max_train_rows
    loss_weighting: str = TrainConfig.loss_weighting  # uncertainty | fixed | gradnorm | dwa
    gate: str = PLEConfig.gate  # softmax | sigmoid
    extraction_layers: int = PLEConfig.extraction_layers
    expert_dim: int = PLEConfig.expert_dim
    seed: int = TrainConfig.seed
    device: str = TrainConfig.device  # auto | cpu | cuda
    threads: Optional[int] = TrainConfig.threads  # None: every core (the heavy pool trains one step at a time)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           warmup_epochs=self.warmup_epochs, patience=self.patience, seed=self.seed, device=self.device,
                           max_train_rows=self.max_train_rows, threads=self.threads,
                           loss_weighting=self.loss_weighting)

    def ple_config(self) -> PLEConfig:
        return PLEConfig(expert_dim=self.expert_dim, extraction_layers=self.extraction_layers, gate=self.gate)


def _history_table(result) -> pl.DataFrame:
    return pl.DataFrame(result.history)


@dg.asset(
    partitions_def=dataset_partitions, group_name="teacher", kinds={"pytorch"}, code_version=CODE_VERSION, pool="heavy",
    deps=["leakage_report"], automation_condition=CHAIN_AUTOMATION,
)
def ple_teacher(
    context: dg.AssetExecutionContext, config: TeacherConfig, feature_table: dict, task_labels: dict,
    split_assignments: pl.DataFrame, paths: DataPaths,
) -> dg.MaterializeResult:
    """The PLE multi-task teacher: seven heterogeneous shared experts fed by the feature schema's
    routing, CGC gates, per-task towers, masked losses with uncertainty weighting; trained on the
    train split, checkpoint chosen on the validation composite. The checkpoint (state dict,
    config, metrics, feature and task schema) is a content-addressed file; its sha256 is recorded
    here and verified by every reader."""
    specs = tl.task_specs(task_labels["decisions"])
    data = tl.design(feature_table["features"], labels_with_split(task_labels, split_assignments), specs)
    routing = tl.routing_schema(feature_table["schema"])
    result = tl.train_model("ple", data, specs, routing, config.ple_config(), config.train_config(), context.log.info)
    model_cfg = dataclasses.asdict(config.ple_config())
    path, sha = tl.save_model(result, specs, data.columns, artifact_dir(paths, "ple_teacher", context.partition_key),
                              {"model": model_cfg, "train": config.model_dump(), "routing": routing, "partition": context.partition_key})
    history = _history_table(result)
    val_rows = [(t, k, float(v)) for t, m in result.val_metrics.items() for k, v in m.items()]
    val = pl.DataFrame(val_rows, schema=["task", "metric", "value"], orient="row")
    val_md = markdown_table(val.filter(pl.col("metric").is_in(["auc", "f1_macro", "ndcg@3", "r2", "mae"])).pivot(on="metric", index="task"))
    sample = data.rows("val")[0]
    gates = tl.gate_table(result.model, sample)
    parameters = result.model.parameters_per_expert()
    manifest = pl.DataFrame({"checkpoint": [str(path.relative_to(paths.root))], "sha256": [sha], "best_epoch": [result.best_epoch],
                             "device": [result.device], "threads": [result.threads], "train_rows": [result.train_rows]})
    tables = {"manifest": manifest, "history": history, "gates": gates, "val_metrics": val,
              "parameters": pl.DataFrame({"part": list(parameters), "parameters": list(parameters.values())})}
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(sha),
        metadata={
            "checkpoint_sha256": sha,
            "checkpoint_path": dg.MetadataValue.path(str(path)),
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "train_seconds": round(result.seconds, 1),
            "device": result.device,
            "torch_threads": result.threads,
            "val_composite": float(history["val_composite"][result.best_epoch - 1]),
            "parameters_per_expert": dg.MetadataValue.json(parameters),
            "gate_weights": dg.MetadataValue.md(plots.gate_heatmap_figure(gates, f"mean layer-0 gate, {context.partition_key}")),
            "training_curves": dg.MetadataValue.md(plots.training_curves_figure(history, f"PLE teacher, {context.partition_key}")),
            "model_card": dg.MetadataValue.md(tl.model_card(
                version=context.partition_key, specs=specs, data=data, config=config.model_dump(), result=result, sha=sha,
                parameters=parameters, comparison_md=val_md.value)),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("feature_table", "task_labels", "split_assignments", "leakage_report")}),
        },
    )


@dg.asset(
    partitions_def=dataset_partitions, group_name="teacher", kinds={"lightgbm", "pytorch"}, code_version=CODE_VERSION, pool="heavy",
    deps=["leakage_report"], automation_condition=CHAIN_AUTOMATION,
)
def baseline_models(
    context: dg.AssetExecutionContext, config: TeacherConfig, feature_table: dict, task_labels: dict,
    split_assignments: pl.DataFrame, paths: DataPaths,
) -> dg.MaterializeResult:
    """The baselines the teacher must be read against, on the same splits: per-task hard-label
    LightGBM (early stopping on val) and a shared-bottom MLP trained by the teacher's loop.
    Stores both models (LightGBM text with sha256; a verified checkpoint) and their predictions
    for every customer."""
    from finai_assets.lib.ple.baselines import fit_lightgbm_baselines, predict_lightgbm
    from finai_assets.lib.ple.train import predict

    specs = tl.task_specs(task_labels["decisions"])
    data = tl.design(feature_table["features"], labels_with_split(task_labels, split_assignments), specs)
    threads = training_threads(config.threads)
    boosters = fit_lightgbm_baselines(*data.rows("train"), *data.rows("val"), specs, seed=config.seed, threads=threads)
    lgb_pred = tl.prediction_frame(data.ncodpers, predict_lightgbm(boosters, data.X, specs), specs)
    texts = {t: b.model_to_string() for t, b in boosters.items()}
    lightgbm = pl.DataFrame({"task": list(texts), "model": list(texts.values()),
                             "sha256": [content_hash(pl.DataFrame({"m": [m]})) for m in texts.values()],
                             "rounds": [boosters[t].current_iteration() for t in texts]})
    result = tl.train_model("shared_bottom", data, specs, None, None, config.train_config(), context.log.info)
    path, sha = tl.save_model(result, specs, data.columns, artifact_dir(paths, "baseline_models", context.partition_key),
                              {"model": {"kind": "shared_bottom"}, "train": config.model_dump(), "partition": context.partition_key})
    sb_pred = tl.prediction_frame(data.ncodpers, predict(result.model, data.X, specs, result.target_scaling), specs)
    tables = {"lightgbm": lightgbm, "lightgbm_predictions": lgb_pred, "shared_bottom_predictions": sb_pred,
              "shared_bottom_manifest": pl.DataFrame({"checkpoint": [str(path.relative_to(paths.root))], "sha256": [sha], "best_epoch": [result.best_epoch]}),
              "shared_bottom_history": _history_table(result)}
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "lightgbm_rounds": dg.MetadataValue.json(dict(lightgbm.select("task", "rounds").iter_rows())),
            "shared_bottom_checkpoint_sha256": sha,
            "shared_bottom_best_epoch": result.best_epoch,
            "shared_bottom_parameters": sum(p.numel() for p in result.model.parameters()),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("feature_table", "task_labels", "split_assignments", "leakage_report")}),
        },
    )


@dg.asset(partitions_def=dataset_partitions, group_name="teacher", kinds={"pytorch"}, code_version=CODE_VERSION,
          deps=["leakage_report"], automation_condition=CHAIN_AUTOMATION)
def teacher_predictions(
    context: dg.AssetExecutionContext, ple_teacher: dict, feature_table: dict, paths: DataPaths,
) -> dg.MaterializeResult:
    """Soft labels of every customer in every split (probabilities; class probabilities; values),
    from the checkpoint verified against the sha256 `ple_teacher` recorded and the feature
    table's schema."""
    from finai_assets.lib.ple.train import predict

    manifest = ple_teacher["manifest"].row(0, named=True)
    features = feature_table["features"]
    columns = [c for c in features.columns if c != "ncodpers"]
    checkpoint = paths.root / manifest["checkpoint"]  # stored relative to the data folder
    model, scaling, specs = tl.load_model(checkpoint, manifest["sha256"], columns)
    preds = predict(model, features.select(columns).to_numpy().astype("float32"), specs, scaling)
    frame = tl.prediction_frame(features["ncodpers"].to_numpy(), preds, specs)
    return dg.MaterializeResult(
        value=frame,
        data_version=dg.DataVersion(content_hash(frame)),
        metadata={**table_metadata(frame), "checkpoint_sha256": manifest["sha256"],
                  "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("ple_teacher", "feature_table", "leakage_report")})},
    )


@dg.asset(
    partitions_def=dataset_partitions, group_name="teacher", kinds={"polars"}, code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec("teacher_sanity", asset="teacher_evaluation", blocking=True,
                                   description="no NaN metric on any task; every task routed to distil has its upper confidence bound above chance"),
                 dg.AssetCheckSpec("teacher_weak_tasks", asset="teacher_evaluation",
                                   description="tasks whose teacher is below chance but routed to hard_label or rule (the students do not use the teacher there)")],
    automation_condition=CHAIN_AUTOMATION,
)
def teacher_evaluation(
    context: dg.AssetExecutionContext, teacher_predictions: pl.DataFrame, baseline_models: dict,
    oracle_report: pl.DataFrame, task_labels: dict, split_assignments: pl.DataFrame, paths: DataPaths,
):

    """Per-task test metrics (AUC, F1-macro, NDCG@3, MAE, R^2) of the teacher beside per-task
    LightGBM, the shared-bottom MLP and the oracle ceiling; the routing decision (distil / hard_label / rule)
    from validation metrics; and the blocking sanity check."""
    specs = tl.task_specs(task_labels["decisions"])
    labels = labels_with_split(task_labels, split_assignments)
    predictions = {"teacher": teacher_predictions, "lightgbm": baseline_models["lightgbm_predictions"],
                   "shared_bottom": baseline_models["shared_bottom_predictions"]}
    test = tl.with_oracle(tl.evaluate_models(labels, predictions, specs, "test"), oracle_report)
    val = tl.evaluate_models(labels, predictions, specs, "val")
    routing = tl.routing_decisions(val, specs)
    sanity = tl.sanity(test, routing, specs)
    table = tl.comparison(test, specs)
    binary = test.filter((pl.col("metric") == "auc"))
    means = binary.group_by("model").agg(pl.col("value").mean()).sort("model")
    tables = {"test_metrics": test, "val_metrics": val, "comparison": table, "routing": routing, "sanity": sanity}
    yield dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "comparison_test": markdown_table(table, 80),
            "mean_binary_test_auc": dg.MetadataValue.json(dict(means.iter_rows())),
            "routing": markdown_table(routing.select("task", "metric", "teacher_val", "lightgbm_val", "route", "reason")),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("teacher_predictions", "baseline_models", "oracle_report", "task_labels", "split_assignments")}),
        },
    )
    failed, weak = sanity.filter(~pl.col("passed")), sanity.filter(pl.col("weak"))
    yield dg.AssetCheckResult(check_name="teacher_sanity", asset_key="teacher_evaluation", passed=failed.is_empty(),
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"failed": markdown_table(failed), "all": markdown_table(sanity)})
    yield dg.AssetCheckResult(check_name="teacher_weak_tasks", asset_key="teacher_evaluation", passed=weak.is_empty(),
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"weak_tasks": dg.MetadataValue.json(weak["task"].to_list()), "weak": markdown_table(weak)})
