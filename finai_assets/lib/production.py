"""Production months scored by the champion, without Dagster.

- `register_candidate` puts a build's feature pipeline, students, teacher checkpoint and a
  training-feature sample into the registry; `load_champion` takes them back out, verified.
- `panel` joins the raw history (before the production window) with the accepted production
  months m-6..m; `score_month` applies the champion's feature pipeline at cutoff m and its
  students; `label_basis` keeps what month m+1's outcomes need (snapshots m-5..m, transactions
  of the 180 days before the end of m).
- `selection_fairness`: per protected group, the share each binary task's decisions select
  (no labels exist yet for month m); `outcomes`: once m+1 arrives, the realised labels of m
  (the same label code as training) and the lagged AUC, calibration and fairness.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from finai_assets.lib import fairness as fair
from finai_assets.lib import features as feat
from finai_assets.lib import labels as lab
from finai_assets.lib import protected as prot
from finai_assets.lib import student_tables as dl
from finai_assets.lib import teacher as tl
from finai_assets.lib.fidelity import expected_calibration_error
from finai_assets.lib.inbox import month_window
from finai_assets.lib.ple.tasks import TaskSpec
from finai_assets.lib.registry import ModelRegistry
from finai_assets.lib.schema import month_date, month_index
from finai_assets.lib.student_model import Student

TRAINING_SAMPLE_ROWS = 20_000
LABEL_HISTORY_DAYS = 180
TRANSACTION_GROUPS = ("txn_windows", "sequence", "mcc", "persistence")  # feature groups built from card transactions


# ------------------------------------------------------------------------------------ the champion


def register_candidate(registry: ModelRegistry, root: Path, dataset: str, run_id: str | None, pipeline: Mapping[str, pl.DataFrame],
                       students_manifest: pl.DataFrame, teacher_checkpoint: Path, feature_schema: pl.DataFrame,
                       decisions: pl.DataFrame, training_sample: pl.DataFrame, meta: Mapping) -> dict:
    """Content-addressed copies of everything scoring needs; the candidate record."""
    artifacts = {f"pipeline/{name}": registry.put_table(table) for name, table in pipeline.items()}
    manifest = students_manifest
    for row in students_manifest.filter(pl.col("model_file").is_not_null()).iter_rows(named=True):
        sha = registry.put_file(root / row["model_file"])
        if sha != row["sha256"]:
            raise ValueError(f"student {row['task']}: its file hashes to {sha[:16]}, the manifest recorded {row['sha256'][:16]}; "
                             "rematerialize distilled_students")
        artifacts[f"students/{row['task']}"] = sha
    artifacts["students/manifest"] = registry.put_table(manifest)
    artifacts["teacher/checkpoint"] = registry.put_file(teacher_checkpoint)
    artifacts["feature_schema"] = registry.put_table(feature_schema)
    artifacts["task_decisions"] = registry.put_table(decisions)
    artifacts["training_sample"] = registry.put_table(training_sample)
    return registry.register(dataset, run_id, artifacts, meta)


@dataclasses.dataclass
class Champion:
    candidate_id: str
    dataset: str
    pipeline: dict[str, pl.DataFrame]
    students: dict[str, Student]
    specs: list[TaskSpec]
    columns: list[str]  # the feature columns the students were trained on, in order
    feature_schema: pl.DataFrame
    training_sample: pl.DataFrame  # ncodpers, feature columns, student predictions (same names as scores)
    meta: dict

    @property
    def needs_transactions(self) -> bool:
        return needs_transactions(self.feature_schema)


def needs_transactions(feature_schema: pl.DataFrame) -> bool:
    """Whether any feature of the schema comes from card transactions."""
    return bool(feature_schema.filter(pl.col("group").is_in(TRANSACTION_GROUPS)).height)


def load_champion(registry: ModelRegistry, record: Mapping) -> Champion:
    """The champion of `record` (a registry candidate), every object verified against its hash."""
    artifacts = record["artifacts"]
    pipeline = {name.split("/", 1)[1]: registry.read_table(sha) for name, sha in artifacts.items() if name.startswith("pipeline/")}
    manifest = registry.read_table(artifacts["students/manifest"])
    models = {task: registry.path(artifacts[f"students/{task}"]) for task in manifest.filter(pl.col("model_file").is_not_null())["task"]}
    manifest = manifest.with_columns(model_file=pl.col("task").replace_strict({t: str(p) for t, p in models.items()}, default=None))
    students = dl.load_students(manifest, Path("/"))
    schema = registry.read_table(artifacts["feature_schema"])
    sample = registry.read_table(artifacts["training_sample"])
    specs = tl.task_specs(registry.read_table(artifacts["task_decisions"]))
    return Champion(record["candidate_id"], record["dataset"], pipeline, students, specs, schema["column"].to_list(), schema, sample,
                    dict(record["meta"]))


def training_sample(features: pl.DataFrame, predictions: pl.DataFrame, split: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Up to TRAINING_SAMPLE_ROWS train customers: their features and the students' predictions
    (the drift reference)."""
    train = split.filter(pl.col("split") == "train").select("ncodpers")
    rows = features.join(train, on="ncodpers", how="semi")
    if rows.height > TRAINING_SAMPLE_ROWS:
        rows = rows.sample(TRAINING_SAMPLE_ROWS, seed=seed).sort("ncodpers")
    return rows.join(predictions, on="ncodpers", how="left")


# ------------------------------------------------------------------------------------ scoring


def panel(history_snapshots: pl.DataFrame, history_transactions: pl.DataFrame, months: Mapping[str, Mapping[str, pl.DataFrame]],
          month: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Snapshots and transactions up to the end of production month `month`: the accepted
    production months of the window (partition key -> {"snapshots", "transactions"}) replace any
    rows the history holds for those months (a rebuilt history may already contain them)."""
    key = month.isoformat()
    if key not in months:
        raise ValueError(f"production month {key} is not among the loaded months {sorted(months)}")
    dates = [month_date(month_index(dt.date.fromisoformat(k))) for k in months]
    windows = [month_window(dt.date.fromisoformat(k)) for k in months]
    end = month_window(month)[1]
    snap_cols = history_snapshots.columns
    snapshots = pl.concat(
        [history_snapshots.filter(~pl.col("fecha_dato").is_in(dates) & (pl.col("fecha_dato") <= month_date(month_index(month))))]
        + [m["snapshots"].select(snap_cols) for k, m in sorted(months.items()) if k <= key],
        how="vertical_relaxed",
    )
    in_window = pl.any_horizontal([(pl.col("ts") >= a) & (pl.col("ts") < b) for a, b in windows])
    txn_cols = history_transactions.columns
    production_txn = [m["transactions"].select(txn_cols) for k, m in sorted(months.items()) if k <= key and m["transactions"].height]
    transactions = pl.concat([history_transactions.filter(~in_window & (pl.col("ts") < end)), *production_txn], how="vertical_relaxed")
    return snapshots, transactions


def score_month(snapshots: pl.DataFrame, transactions: pl.DataFrame, champion: Champion, month: dt.date,
                threads: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(scores, features) of every customer present at snapshot month `month`: the champion's
    fitted pipeline at that cutoff and its students' predictions (teacher table format) on
    `threads` LightGBM threads (0: OpenMP's default)."""
    cutoff = month_date(month_index(month))
    features = feat.transform(snapshots, transactions, champion.pipeline, cutoff=cutoff)
    if features.is_empty():
        raise ValueError(f"no customer is present at {cutoff}: the month's snapshot rows are missing")
    missing = [c for c in champion.columns if c not in features.columns]
    if missing:
        raise ValueError(f"the champion's pipeline no longer yields {missing[:5]}...; the champion and its pipeline disagree")
    X = features.select(champion.columns).to_numpy().astype(np.float32)
    preds = dl.predict_students(champion.students, X, champion.specs, threads)
    return tl.prediction_frame(features["ncodpers"].to_numpy(), preds, champion.specs), features


def label_basis(snapshots: pl.DataFrame, transactions: pl.DataFrame, month: dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What month m's labels need besides month m+1: snapshots m-5..m and the transactions of the
    LABEL_HISTORY_DAYS before the end of m."""
    i = month_index(month)
    start, end = month_window(month)[1] - dt.timedelta(days=LABEL_HISTORY_DAYS), month_window(month)[1]
    return (snapshots.filter(pl.col("fecha_dato").is_between(month_date(max(0, i - 5)), month_date(i))),
            transactions.filter((pl.col("ts") >= start) & (pl.col("ts") < end)))


def protected_groups(snapshots: pl.DataFrame, month: dt.date, income_edges: Sequence[float]) -> pl.DataFrame:
    """The five protected attributes of the customers present at `month` (the champion's
    train-fitted income edges). A value nobody declared is an error; a declared group a month
    lacks is reported with n = 0 (insufficient data), not an error: months are not split."""
    at_m = snapshots.filter(pl.col("fecha_dato") == month_date(month_index(month))).select(prot.SNAPSHOT_COLUMNS)
    groups = prot.protected_groups(at_m, list(income_edges))
    undeclared = {a: sorted(set(groups[a].drop_nulls().unique().to_list()) - set(names)) for a, names in prot.DECLARED_GROUPS.items()}
    undeclared = {a: v for a, v in undeclared.items() if v}
    if undeclared:
        raise ValueError(f"protected attribute values {undeclared} are not declared groups; fix the data or declare them")
    return groups


# ------------------------------------------------------------------------------------ fairness without labels


def _wilson(selected: np.ndarray, n: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    p = selected / np.maximum(n, 1)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def selection_fairness(groups: pl.DataFrame, scores: pl.DataFrame, specs: Sequence[TaskSpec],
                       config: fair.FairnessConfig = fair.FairnessConfig()) -> dict[str, pl.DataFrame]:
    """Per binary task, operating point (calibrated p >= threshold; top k % of the month's scores)
    and protected group: n, selected, selection rate with a Wilson 95 % interval, status
    (insufficient_data below the minimum group size); per attribute: DI (min/max rate of the
    sufficient groups; 0 when nobody is selected, as in training fairness) and SPD (max - min), with the four-fifths
    verdict. No TPR or EOD: month m's labels arrive with month m+1 (`outcomes`)."""
    binary = [s.name for s in specs if s.type == "binary"]
    if not binary:
        raise ValueError("the champion serves no binary task: there is no decision to judge")
    frame = groups.join(scores.select("ncodpers", *[f"p_{t}" for t in binary]), on="ncodpers", how="inner")
    if frame.height != groups.height:
        raise ValueError(f"{groups.height - frame.height} customers have protected groups but no score; score every customer of the month")
    rows = []
    for task in binary:
        p = frame[f"p_{task}"].to_numpy()
        decisions = {"threshold": p >= config.threshold,
                     "top_k": fair.top_k_selection(p, frame["ncodpers"].to_numpy(), config.top_k_percent)}
        for point, chosen in decisions.items():
            per = frame.select(*prot.DECLARED_GROUPS).with_columns(selected=pl.Series(chosen.astype(np.int64)))
            for attribute, declared in prot.DECLARED_GROUPS.items():
                counts = pl.DataFrame({"group": list(declared)}).join(
                    per.group_by(attribute).agg(n=pl.len(), selected=pl.col("selected").sum()).rename({attribute: "group"}),
                    on="group", how="left").with_columns(pl.col("n", "selected").fill_null(0))
                rows.append(counts.with_columns(task=pl.lit(task), operating_point=pl.lit(point), attribute=pl.lit(attribute)))
    table = pl.concat(rows).with_columns(pl.col("n").cast(pl.Int64), pl.col("selected").cast(pl.Int64))
    n = table["n"].to_numpy().astype(float)
    low, high = _wilson(table["selected"].to_numpy().astype(float), np.maximum(n, 1))
    table = table.with_columns(
        selection_rate=pl.when(pl.col("n") > 0).then(pl.col("selected") / pl.col("n")),
        rate_ci_low=pl.when(pl.col("n") > 0).then(pl.Series(low)), rate_ci_high=pl.when(pl.col("n") > 0).then(pl.Series(high)),
        status=pl.when(pl.col("n") < config.min_group_size).then(pl.lit(fair.INSUFFICIENT)).otherwise(pl.lit(fair.OK)),
    ).select("task", "operating_point", "attribute", "group", "n", "selected", "selection_rate", "rate_ci_low", "rate_ci_high", "status")
    sufficient = table.filter(pl.col("status") == fair.OK)
    summary = sufficient.group_by("task", "operating_point", "attribute").agg(
        groups_used=pl.len(), min_rate=pl.col("selection_rate").min(), max_rate=pl.col("selection_rate").max(),
    ).join(table.group_by("task", "operating_point", "attribute").agg(groups_declared=pl.len()),
           on=["task", "operating_point", "attribute"], how="right").with_columns(
        spd=pl.when(pl.col("groups_used") < 2).then(None).otherwise(pl.col("max_rate") - pl.col("min_rate")),
    )
    di = prot.disparate_impact(summary["min_rate"].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
                               summary["max_rate"].cast(pl.Float64).fill_null(float("nan")).to_numpy())
    summary = summary.with_columns(
        di=pl.when(pl.col("groups_used").fill_null(0) < 2).then(None).otherwise(pl.Series(di).fill_nan(None)),
    ).with_columns(
        status=pl.when(pl.col("groups_used").fill_null(0) < 2).then(pl.lit(fair.INSUFFICIENT))
        .when(pl.col("max_rate") == 0).then(pl.lit(fair.NO_SELECTION)).otherwise(pl.lit(fair.OK)),
        four_fifths_pass=(pl.col("di") >= config.four_fifths).fill_null(False),
        spd_pass=(pl.col("spd") <= config.spd_limit).fill_null(False),
    ).sort("task", "operating_point", "attribute")
    return {"groups": table, "summary": summary}


# ------------------------------------------------------------------------------------ outcomes


def realised_labels(basis_snapshots: pl.DataFrame, basis_transactions: pl.DataFrame, next_snapshots: pl.DataFrame,
                    next_transactions: pl.DataFrame | None, month: dt.date, tasks: Sequence[str]) -> pl.DataFrame:
    """Month m's binary labels once m+1 is known, by the training label code (`candidate_labels`)."""
    cutoff = month_date(month_index(month))
    snaps = pl.concat([basis_snapshots, next_snapshots.select(basis_snapshots.columns)], how="vertical_relaxed")
    txn = basis_transactions if next_transactions is None or next_transactions.is_empty() else pl.concat(
        [basis_transactions, next_transactions.select(basis_transactions.columns)], how="vertical_relaxed")
    candidates = lab.candidate_labels(snaps, txn, cutoff)
    if next_transactions is None or next_transactions.is_empty():  # the transaction labels cannot be known
        tasks = [t for t in tasks if t != "top_mcc_shift"]
    return candidates.select("ncodpers", *tasks)


def outcomes(labels: pl.DataFrame, scores: pl.DataFrame, groups: pl.DataFrame,
             config: fair.FairnessConfig = fair.FairnessConfig()) -> dict[str, pl.DataFrame]:
    """Lagged realised quality of month m's decisions: per binary task AUC (with Hanley-McNeil SE),
    base rate, mean prediction, ECE; and the fairness report (TPR, EOD, DI beside the realised
    labels' own) on the labelled customers."""
    from finai_assets.lib.ple.metrics import task_metrics  # sklearn: not at import time

    tasks = [c for c in labels.columns if c != "ncodpers"]
    joined = labels.join(scores.select("ncodpers", *[f"p_{t}" for t in tasks]), on="ncodpers", how="inner")
    rows = []
    for task in tasks:
        part = joined.filter(pl.col(task).is_not_null())
        y, p = part[task].cast(pl.Float64).to_numpy(), part[f"p_{task}"].to_numpy()
        metrics = task_metrics(TaskSpec(task, "binary"), y, p) if 0 < y.sum() < len(y) else {"auc": math.nan}
        rows.append({"task": task, "labelled": len(y), "base_rate": float(y.mean()) if len(y) else math.nan,
                     "mean_prediction": float(p.mean()) if len(p) else math.nan, "auc": metrics.get("auc", math.nan),
                     "auc_se": metrics.get("auc_se", math.nan),
                     "ece": expected_calibration_error(y, p) if len(y) else math.nan})
    quality = pl.DataFrame(rows)
    labelled = labels.filter(pl.any_horizontal(pl.col(tasks).is_not_null()))
    report = fair.fairness_report(groups.join(labelled.select("ncodpers"), on="ncodpers", how="semi"), labelled,
                                  {"student": scores}, config)
    return {"quality": quality, **report}
