"""From warehouse tables to a trained, checked, evaluated teacher, and back.

Glue between the feature table / task labels and `finai_assets.lib.ple`: the kept tasks as task
specs, the design matrix, training the PLE teacher and the shared-bottom baseline, the
content-addressed checkpoint, predictions as a table (soft labels for every split), the
per-task evaluation beside the baselines and the oracle, the routing decision (docs/thresholds.md#routing) and
the teacher's sanity verdict. torch and lightgbm are imported inside the functions that need
them, so the code location loads without them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from finai_assets.lib.labels import CANDIDATES
from finai_assets.lib.ple.tasks import TaskSpec
from finai_assets.lib.stats import stable_hash

PRIMARY = {"binary": "auc", "multiclass": "f1_macro", "regression": "r2"}
# Routing (docs/thresholds.md#routing): distil above these teacher validation scores; a rule where hard-label LightGBM
# itself learns nothing (at or below these).
DISTIL_ABOVE = {"binary": lambda k: 0.60, "multiclass": lambda k: 2 / k, "regression": lambda k: 0.05}
RULE_AT_OR_BELOW = {"binary": lambda k: 0.52, "multiclass": lambda k: 1 / k, "regression": lambda k: 0.01}


def task_specs(decisions: pl.DataFrame) -> list[TaskSpec]:
    """The kept tasks of the decision table, in its order, with the registry's classes and group."""
    kept = decisions.filter(pl.col("decision") == "kept")["task"].to_list()
    if not kept:
        raise ValueError("task_labels kept no task: there is nothing to train; read its decision table")
    specs = []
    for task in kept:
        c = CANDIDATES[task]
        specs.append(TaskSpec(task, c.type, c.classes if c.type == "multiclass" else 1, c.group or "default", loss=c.loss))
    return specs


@dataclasses.dataclass
class Design:
    X: np.ndarray  # [N, F] float32
    columns: list[str]
    targets: dict[str, np.ndarray]  # task -> [N] float, NaN = null label
    split: np.ndarray  # [N] str
    ncodpers: np.ndarray  # [N]

    def rows(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        keep = self.split == split
        return self.X[keep], {t: y[keep] for t, y in self.targets.items()}


def design(features: pl.DataFrame, labels: pl.DataFrame, specs: Sequence[TaskSpec]) -> Design:
    """Feature rows joined to their labels and split (one row per customer of the feature table;
    a customer without a label row is an error: the two tables must come from the same build)."""
    missing = [s.name for s in specs if s.name not in labels.columns]
    if missing:
        raise ValueError(f"task labels lack the columns {missing}; rematerialize task_labels for this partition")
    joined = features.join(labels.select("ncodpers", "split", *[s.name for s in specs]), on="ncodpers", how="left")
    unlabelled = joined["split"].null_count()
    if unlabelled:
        raise ValueError(f"{unlabelled} feature rows have no split/label row; rematerialize task_labels and feature_table from the same synthetic_customers")
    columns = [c for c in features.columns if c != "ncodpers"]
    X = joined.select(columns).to_numpy().astype(np.float32)
    if not np.isfinite(X).all():
        bad = [c for c, ok in zip(columns, np.isfinite(X).all(0)) if not ok]
        raise ValueError(f"non-finite feature values in {bad[:5]}; the feature table must be fully filled")
    targets = {s.name: joined[s.name].cast(pl.Float64).fill_null(float("nan")).to_numpy() for s in specs}
    return Design(X, columns, targets, joined["split"].to_numpy(), joined["ncodpers"].to_numpy())


def routing_schema(schema: pl.DataFrame) -> dict[str, list[str]]:
    """column -> experts, from the feature table's schema table."""
    return {c: e.split(", ") for c, e in schema.select("column", "experts").iter_rows()}


def train_model(kind: str, data: Design, specs: Sequence[TaskSpec], schema: Mapping[str, Sequence[str]] | None,
                model_config, train_config, log: Callable[[str], None]):
    """`kind` = "ple" (the teacher) or "shared_bottom" (the baseline), on the train and val rows."""
    import torch

    from finai_assets.lib.ple.model import PLE, SharedBottom
    from finai_assets.lib.ple.train import Split, fit

    torch.manual_seed(train_config.seed)
    model = PLE(data.columns, specs, model_config, schema) if kind == "ple" else SharedBottom(data.columns, specs)
    train, val = (Split(*data.rows(s)) for s in ("train", "val"))
    return fit(model, train, val, specs, train_config, log)


CROSS_FIT_SEED = 7919


def cross_fit_soft_labels(data: Design, soft: Mapping[str, np.ndarray], specs: Sequence[TaskSpec],
                          schema: Mapping[str, Sequence[str]] | None, model_config, train_config, folds: int,
                          log: Callable[[str], None]) -> dict[str, np.ndarray]:
    """`soft` with every train row replaced by the prediction of a teacher trained without it:
    the train customers fall into `folds` folds by id hash, and the teacher recipe is retrained
    on the other folds (early stopping on val as before). Val, calib and test rows keep `soft`
    (the full teacher never trained on them)."""
    from finai_assets.lib.ple.train import predict

    if folds < 2:
        raise ValueError(f"a cross-fit needs at least 2 folds, got {folds}; use 0 for in-sample soft labels")
    train_rows = np.flatnonzero(data.split == "train")
    fold = stable_hash(data.ncodpers[train_rows], seed=CROSS_FIT_SEED) % folds
    out = {t: np.array(v, copy=True) for t, v in soft.items()}
    for k in range(folds):
        held = train_rows[fold == k]
        split = data.split.copy()
        split[held] = "held_out"
        log(f"cross-fit fold {k + 1}/{folds}: teacher on {len(train_rows) - len(held):,} train rows, predicting {len(held):,}")
        result = train_model("ple", dataclasses.replace(data, split=split), specs, schema, model_config, train_config, log)
        preds = predict(result.model, data.X[held], specs, result.target_scaling)
        for t in out:
            out[t][held] = preds[t]
    return out


def save_model(result, specs: Sequence[TaskSpec], columns: list[str], folder: Path, config: dict) -> tuple[Path, str]:
    """A content-addressed checkpoint (`checkpoint-<sha16>.pt`): a new one never overwrites the
    file an earlier materialization points to."""
    from finai_assets.lib.ple.checkpoint import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".staging-{os.getpid()}.pt"
    sha = save_checkpoint(
        staging, state_dict=result.model.state_dict(),
        config={**config, "target_scaling": {t: list(v) for t, v in result.target_scaling.items()}},
        metrics={"best_epoch": result.best_epoch, "val": result.val_metrics},
        feature_columns=columns, tasks=[dataclasses.asdict(s) for s in specs],
    )
    final = folder / f"checkpoint-{sha[:16]}.pt"
    os.replace(staging, final)
    os.replace(staging.with_suffix(".sha256"), final.with_suffix(".sha256"))
    return final, sha


def load_model(path: Path, sha256: str, columns: list[str], specs: Sequence[TaskSpec] | None = None, kind: str = "ple"):
    """The verified checkpoint as a model in eval mode, with its regression target scaling and its
    task specs (checked against `specs` when given)."""
    from finai_assets.lib.ple.checkpoint import load_checkpoint
    from finai_assets.lib.ple.model import PLE, PLEConfig, SharedBottom

    ckpt = load_checkpoint(path, expected_sha256=sha256, feature_columns=columns,
                           tasks=None if specs is None else [dataclasses.asdict(s) for s in specs])
    specs = [TaskSpec(**t) for t in ckpt["tasks"]]
    cfg = ckpt["config"]
    if kind == "ple":
        model = PLE(columns, specs, PLEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model"].items()}), cfg.get("routing"))
    else:
        model = SharedBottom(columns, specs)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, {t: tuple(v) for t, v in cfg["target_scaling"].items()}, specs


def prediction_frame(ncodpers: np.ndarray, preds: Mapping[str, np.ndarray], specs: Sequence[TaskSpec]) -> pl.DataFrame:
    """One row per customer: `p_<task>` (binary), `p_<task>_<k>` (multiclass), `y_<task>` (regression)."""
    cols = {"ncodpers": ncodpers}
    for s in specs:
        p = preds[s.name]
        if s.type == "binary":
            cols[f"p_{s.name}"] = p
        elif s.type == "multiclass":
            cols.update({f"p_{s.name}_{k}": p[:, k] for k in range(s.classes)})
        else:
            cols[f"y_{s.name}"] = p
    return pl.DataFrame(cols)


def frame_predictions(frame: pl.DataFrame, specs: Sequence[TaskSpec]) -> dict[str, np.ndarray]:
    out = {}
    for s in specs:
        if s.type == "binary":
            out[s.name] = frame[f"p_{s.name}"].to_numpy()
        elif s.type == "multiclass":
            out[s.name] = frame.select([f"p_{s.name}_{k}" for k in range(s.classes)]).to_numpy()
        else:
            out[s.name] = frame[f"y_{s.name}"].to_numpy()
    return out


def evaluate_models(labels: pl.DataFrame, predictions: Mapping[str, pl.DataFrame], specs: Sequence[TaskSpec], split: str) -> pl.DataFrame:
    """Long table (task, type, model, metric, value) of every model's metrics on one split."""
    from finai_assets.lib.ple.metrics import class_priors, task_metrics

    train = labels.filter(pl.col("split") == "train")
    priors = {s.name: class_priors(train[s.name].cast(pl.Float64).fill_null(float("nan")).to_numpy(), s.classes)
              for s in specs if s.type == "multiclass"}
    rows = []
    for model, frame in predictions.items():
        joined = labels.filter(pl.col("split") == split).select("ncodpers", *[s.name for s in specs]).join(
            frame, on="ncodpers", how="left")
        preds = frame_predictions(joined, specs)
        for s in specs:
            y = joined[s.name].cast(pl.Float64).fill_null(float("nan")).to_numpy()
            for metric, value in task_metrics(s, y, preds[s.name], priors=priors.get(s.name)).items():
                rows.append((s.name, s.type, model, metric, float(value)))
    return pl.DataFrame(rows, schema=["task", "type", "model", "metric", "value"], orient="row")


def with_oracle(table: pl.DataFrame, oracle: pl.DataFrame) -> pl.DataFrame:
    """The oracle's AUC beside the models (binary tasks with a ground-truth score)."""
    known = oracle.filter(pl.col("metric") == "AUC").select(
        "task", pl.lit("binary").alias("type"), pl.lit("oracle").alias("model"), pl.lit("auc").alias("metric"), pl.col("ceiling").alias("value"))
    return pl.concat([table, known.filter(pl.col("task").is_in(table["task"].unique().implode()))])


def comparison(table: pl.DataFrame, specs: Sequence[TaskSpec]) -> pl.DataFrame:
    """task x model on the headline metrics (AUC, F1-macro, NDCG@3, MAE, R^2)."""
    wanted = table.filter(pl.col("metric").is_in(["auc", "f1_macro", "ndcg@3", "mae", "r2"]))
    wide = wanted.pivot(on="model", index=["task", "type", "metric"], values="value")
    order = {s.name: i for i, s in enumerate(specs)}
    return wide.with_columns(pl.col("task").replace_strict(order, return_dtype=pl.Int32).alias("_o")).sort("_o", "metric").drop("_o")


def routing_decisions(val: pl.DataFrame, specs: Sequence[TaskSpec]) -> pl.DataFrame:
    """Routing from validation metrics: distil when the teacher is good enough, a rule
    when hard-label LightGBM learns nothing either, hard-label LightGBM otherwise."""
    rows = []
    for s in specs:
        metric = PRIMARY[s.type]
        get = lambda model: val.filter((pl.col("task") == s.name) & (pl.col("model") == model) & (pl.col("metric") == metric))["value"]  # noqa: E731
        teacher, lgbm = float(get("teacher")[0]), float(get("lightgbm")[0])
        distil, rule = DISTIL_ABOVE[s.type](s.classes), RULE_AT_OR_BELOW[s.type](s.classes)
        if teacher > distil:
            route, reason = "distil", f"teacher val {metric} {teacher:.4f} > {distil:.4f}"
        elif not lgbm > rule:
            route, reason = "rule", f"teacher val {metric} {teacher:.4f} <= {distil:.4f} and hard-label LightGBM {lgbm:.4f} <= {rule:.4f}: nothing learns"
        else:
            route, reason = "hard_label", f"teacher val {metric} {teacher:.4f} <= {distil:.4f}; hard-label LightGBM {lgbm:.4f} > {rule:.4f}"
        rows.append((s.name, s.type, metric, teacher, lgbm, distil, rule, route, reason))
    return pl.DataFrame(rows, schema=["task", "type", "metric", "teacher_val", "lightgbm_val", "distil_above", "rule_at_or_below", "route", "reason"], orient="row")


def sanity(test: pl.DataFrame, routing: pl.DataFrame, specs: Sequence[TaskSpec]) -> pl.DataFrame:
    """Per task: the teacher's test metric, its upper confidence bound and chance (F1 chance: a
    random predictor following the class priors), and two verdicts.
    `blocking`: a NaN metric (any route), or a task routed to distil whose upper bound is below
    chance: its soft labels would teach the students noise. `weak`: below chance but routed to
    hard_label or rule, so the students never read the teacher for it; reported, not blocking.
    Multiclass rows also carry the log-loss beside the class-prior log-loss and the F1-macro of
    prior-corrected decisions (argmax p_k / prior_k)."""
    routes = dict(routing.select("task", "route").iter_rows())
    rows = []
    for s in specs:
        m = {r["metric"]: r["value"] for r in test.filter((pl.col("task") == s.name) & (pl.col("model") == "teacher")).iter_rows(named=True)}
        value = m.get(PRIMARY[s.type], math.nan)
        upper = {"binary": m.get("auc_ci_high"), "multiclass": m.get("f1_macro_ci_high"), "regression": m.get("r2_ci_high")}[s.type]
        chance = {"binary": 0.5, "multiclass": m.get("chance_f1"), "regression": 0.0}[s.type]
        upper, chance = (math.nan if v is None else v for v in (upper, chance))
        route = routes.get(s.name)
        nan = math.isnan(value) or math.isnan(upper)
        below = not nan and upper < chance
        blocking = nan or (below and route == "distil")
        weak = below and route != "distil"
        if nan:
            why = "metric is NaN"
        elif below:
            why = f"upper bound {upper:.4f} below chance {chance:.4f}" + (
                ": distilled, the students would learn noise" if blocking else f" (routed to {route}: the students do not use the teacher)")
        else:
            why = "upper bound above chance"
        extra = {k: m.get(k, math.nan) for k in ("log_loss", "prior_log_loss", "f1_macro_prior_corrected")}
        rows.append((s.name, PRIMARY[s.type], value, upper, chance, route, not blocking, weak, *extra.values(), why))
    return pl.DataFrame(rows, orient="row", schema={
        "task": pl.String, "metric": pl.String, "value": pl.Float64, "upper_bound": pl.Float64, "chance": pl.Float64,
        "route": pl.String, "passed": pl.Boolean, "weak": pl.Boolean, "log_loss": pl.Float64, "prior_log_loss": pl.Float64,
        "f1_macro_prior_corrected": pl.Float64, "reason": pl.String})


def gate_table(model, X: np.ndarray, batch_size: int = 8192) -> pl.DataFrame:
    """Mean layer-0 gate weight, task x expert, over the given rows."""
    import torch

    device = next(model.parameters()).device
    sums: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            gates = model(torch.as_tensor(X[start:start + batch_size], device=device)).gates
            for t, g in gates.items():
                sums[t] = sums.get(t, 0) + g.sum(0).cpu().numpy().astype(np.float64)
    return pl.DataFrame([{"task": t, **dict(zip(model.expert_names, v / X.shape[0]))} for t, v in sums.items()])


def model_card(*, version: str, specs: Sequence[TaskSpec], data: Design, config: Mapping, result, sha: str,
               parameters: Mapping[str, int], comparison_md: str) -> str:
    counts = {s: int((data.split == s).sum()) for s in ("train", "val", "calib", "test")}
    lines = [
        f"### PLE teacher, dataset {version}",
        f"- **Data**: synthetic version `{version}`; {data.X.shape[0]:,} customers at the cutoff "
        f"({', '.join(f'{k} {v:,}' for k, v in counts.items())}); {len(data.columns)} features; trained on "
        f"{result.train_rows:,} train rows.",
        f"- **Tasks** ({len(specs)}): " + ", ".join(f"{s.name} ({s.type}{'/' + str(s.classes) if s.type == 'multiclass' else ''})" for s in specs),
        f"- **Experts**: {', '.join(parameters)}; {sum(parameters.values()):,} parameters.",
        f"- **Training**: best epoch {result.best_epoch} of {len(result.history)} on the validation composite; "
        f"{result.seconds:.1f} s on {result.device} with {result.threads} torch threads.",
        f"- **Config**: `{dict(config)}`",
        f"- **Checkpoint**: sha256 `{sha}`",
        "- **Limits**: synthetic data only (the version recipes v2-v4); test metrics are in "
        "`teacher_evaluation`; the teacher is for distillation, not for serving; protected "
        "attributes excluded from the features per the feature policy, with their proxy probe in `leakage_report`.",
        "", "**Validation metrics (best epoch)**", "", comparison_md,
    ]
    return "\n".join(lines)
