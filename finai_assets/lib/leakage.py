"""Oracle ceilings and the leakage screen of the feature table.

The oracle is the ground truth's own probability of each event: the best any model could do.
The leakage report has five blocking parts:
1. single-feature dependency: binned uncertainty coefficient U(task | feature), one pass;
2. per-feature-group LightGBM probes per task, flagged above the oracle ceiling + 2 SE or the
   fixed ceiling (AUC 0.95 / R^2 0.90);
3. label reproduction: a feature that is a copy of a kept label;
4. time isolation: recomputing the features on data perturbed after the cutoff (and refitting
   the pipeline on perturbed val/test rows) changes nothing;
5. lineage: no ground-truth, label or post-cutoff column reaches the feature table.
lightgbm and sklearn are imported inside the functions that fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from finai_assets.lib.labels import CANDIDATES, PRODUCT_LABELS
from finai_assets.lib.stats import column_codes, conditional_entropy_ratio, stable_hash

# Kept task -> the ground-truth column holding its true probability or expectation.
ORACLE_SCORES: dict[str, str] = {
    "churn_signal": "p_churn",
    **{f"will_acquire_{g}": f"p_acquire_{g}" for g in ("deposits", "investments", "lending", "payments", "accounts")},
    "top_mcc_shift": "p_mcc_shift",
}
# Tasks whose label is more than the generator event the score is the probability of: the
# oracle is reported, but it is no ceiling (features can see the rest of the label), so the
# probes face the fixed ceiling. At 1M customers probes beat the top_mcc_shift oracle by 0.006.
APPROXIMATE_ORACLES: dict[str, str] = {
    "churn_signal": "the label also needs count(c+1) < 0.7 x the history mean, which the features see",
    "top_mcc_shift": "the label compares sampled modal MCCs; the features see the modal MCC before c",
}
GROUND_TRUTH_PREFIXES = ("p_", "logit_", "flipped_")
GROUND_TRUTH_COLUMNS = ("persona", "wealth", "activity", "risk", "digital", "loyalty")


@dataclasses.dataclass(frozen=True)
class LeakageThresholds:
    dependency: float = 0.99  # U(task | feature) at or above: a near-deterministic feature
    fixed_auc: float = 0.95
    fixed_r2: float = 0.90
    oracle_se: float = 2.0
    probe_rows: int = 200_000
    reproduction: float = 0.999  # |Spearman| with a kept label at or above: a copy


def auc_with_se(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC AUC (rank formula, ties averaged) and its Hanley-McNeil standard error."""
    from scipy.stats import rankdata

    y = y.astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan"), float("nan")
    ranks = rankdata(score)
    auc = (ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = np.sqrt((auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0))
    return float(auc), float(se)


def oracle_report(ground_truth: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """Per kept task on the test split: the oracle's AUC and its SE where the ground truth holds
    the task's event probability; `unavailable` elsewhere. Only an `is_ceiling` oracle bounds the
    probes; the others face the fixed ceiling."""
    test = tasks.filter(pl.col("split") == "test").join(ground_truth, on="ncodpers", how="left")
    rows = []
    for task in [c for c in tasks.columns if c in CANDIDATES]:
        score = ORACLE_SCORES.get(task)
        if score is None or score not in test.columns:
            rows.append({"task": task, "metric": "unavailable", "ceiling": None, "se": None, "rows": 0, "score": None,
                         "is_ceiling": False, "note": "no ground-truth score"})
            continue
        known = test.select(task, score).drop_nulls()
        auc, se = auc_with_se(known[task].to_numpy(), known[score].to_numpy())
        rows.append({"task": task, "metric": "AUC", "ceiling": auc, "se": se, "rows": known.height, "score": score,
                     "is_ceiling": task not in APPROXIMATE_ORACLES, "note": APPROXIMATE_ORACLES.get(task, "the label's own event probability")})
    return pl.DataFrame(rows, schema={"task": pl.Utf8, "metric": pl.Utf8, "ceiling": pl.Float64, "se": pl.Float64, "rows": pl.Int64,
                                      "score": pl.Utf8, "is_ceiling": pl.Boolean, "note": pl.Utf8})


def single_feature_dependency(features: pl.DataFrame, tasks: pl.DataFrame) -> pl.DataFrame:
    """U(task | feature) = 1 - H(task | feature) / H(task) for every feature x kept task, on
    binned codes (<= 32 quantile bins)."""
    joined = tasks.join(features, on="ncodpers")
    names = [c for c in features.columns if c != "ncodpers"]
    feature_codes = {c: column_codes(joined[c]) for c in names}
    rows = []
    for task in [c for c in tasks.columns if c in CANDIDATES]:
        known = joined[task].is_not_null().to_numpy()
        y = column_codes(joined[task].filter(pl.Series(known)))
        if np.unique(y).size < 2:
            continue
        for c in names:
            rows.append((c, task, 1 - conditional_entropy_ratio(feature_codes[c][known], y)))
    return pl.DataFrame(rows, schema={"feature": pl.Utf8, "task": pl.Utf8, "u": pl.Float64}, orient="row")


def label_reproduction(features: pl.DataFrame, tasks: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """Features whose values reproduce a kept label (|Spearman| on the labelled rows)."""
    joined = tasks.join(features, on="ncodpers")
    names = [c for c in features.columns if c != "ncodpers"]
    rows = []
    for task in [c for c in tasks.columns if c in CANDIDATES]:
        known = joined.filter(pl.col(task).is_not_null())
        if known[task].n_unique() < 2:
            continue
        ranked = known.select(pl.col(task).rank().alias("_y"), *[pl.col(c).rank().alias(c) for c in names])
        corr = ranked.select(pl.corr("_y", c).abs().alias(c) for c in names).row(0)
        rows += [(c, task, float(r)) for c, r in zip(names, corr) if r is not None and r >= threshold]
    return pl.DataFrame(rows, schema={"feature": pl.Utf8, "task": pl.Utf8, "spearman": pl.Float64}, orient="row")


def lineage(features: pl.DataFrame, ground_truth: pl.DataFrame | None = None) -> list[str]:
    """Columns that must never be features: labels and ground truth by name, and (given the
    ground truth) any feature reproducing a ground-truth column by value."""
    problems = []
    forbidden = set(CANDIDATES) | set(PRODUCT_LABELS) | set(GROUND_TRUTH_COLUMNS) | {"split", "present_next"}
    for c in features.columns:
        if c in forbidden or c.startswith(GROUND_TRUTH_PREFIXES):
            problems.append(f"{c}: a label / ground-truth column name in the feature table")
    if ground_truth is None:
        return problems
    joined = features.join(ground_truth, on="ncodpers", how="inner")
    truth = [c for c in ground_truth.columns if c != "ncodpers" and ground_truth[c].dtype.is_numeric()]
    names = [c for c in features.columns if c != "ncodpers" and c not in problems]
    for t in truth:
        corr = joined.select(pl.corr(t, c).abs().alias(c) for c in names).row(0)
        problems += [f"{c}: reproduces ground truth {t} (|r| = {r:.4f})" for c, r in zip(names, corr) if r is not None and r >= 0.999]
    return problems


def group_probes(features: pl.DataFrame, schema: pl.DataFrame, tasks: pl.DataFrame, oracle: pl.DataFrame,
                 thresholds: LeakageThresholds = LeakageThresholds(), seed: int = 0) -> pl.DataFrame:
    """LightGBM per feature group x binary / regression task: trained on train, scored on
    val + test (<= probe_rows, stratified by split), compared with the task's ceiling."""
    import lightgbm as lgb

    joined = tasks.join(features, on="ncodpers")
    if joined.height > thresholds.probe_rows:
        joined = joined.sample(thresholds.probe_rows, seed=seed)
    is_train = (joined["split"] == "train").to_numpy()
    evaluate = joined["split"].is_in(["val", "test"]).to_numpy()
    ceilings = {r["task"]: r for r in oracle.iter_rows(named=True)}
    rows = []
    for task in [c for c in tasks.columns if c in CANDIDATES and CANDIDATES[c].type != "multiclass"]:
        known = joined[task].is_not_null().to_numpy()
        y = joined[task].cast(pl.Float64).to_numpy()
        binary = CANDIDATES[task].type == "binary"
        oracle_row = ceilings.get(task, {})
        if oracle_row.get("ceiling") is not None and oracle_row.get("is_ceiling"):
            ceiling = min(oracle_row["ceiling"] + thresholds.oracle_se * oracle_row["se"], thresholds.fixed_auc)
        else:
            ceiling = thresholds.fixed_auc if binary else thresholds.fixed_r2
        for group, cols in schema.group_by("group", maintain_order=True).agg("column").iter_rows():
            x = joined.select(cols).to_numpy()
            fit, score = is_train & known, evaluate & known
            params = dict(objective="binary" if binary else "regression", num_leaves=15, learning_rate=0.1,
                          min_data_in_leaf=20, verbose=-1, seed=seed, num_threads=1, deterministic=True)
            model = lgb.train(params, lgb.Dataset(x[fit], y[fit]), num_boost_round=60)
            pred = model.predict(x[score])
            value = auc_with_se(y[score], pred)[0] if binary else _r2(y[score], pred)
            rows.append({"group": group, "task": task, "metric": "AUC" if binary else "R2", "value": value,
                         "ceiling": ceiling, "flagged": bool(value > ceiling)})
    return pl.DataFrame(rows)


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((y - pred) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12))


def excluded_attributes(snapshots: pl.DataFrame, cutoff, excluded: tuple[str, ...]) -> pl.DataFrame:
    """The protected attributes the policy keeps out of the features, per customer at the cutoff:
    gender (1 = V) when `sexo` is excluded, foreign residency when `indext` / `pais_residencia` are."""
    at_c = snapshots.filter(pl.col("fecha_dato") == cutoff)
    columns = {}
    if "sexo" in excluded:
        columns["gender"] = pl.when(pl.col("sexo").is_null()).then(None).otherwise((pl.col("sexo") == "V").cast(pl.Int8))
    if {"indext", "pais_residencia"} & set(excluded):
        columns["residency"] = ((pl.col("indext") == "S").fill_null(False) | (pl.col("pais_residencia") != "ES").fill_null(False)).cast(pl.Int8)
    return at_c.select("ncodpers", **columns)


def proxy_probe(features: pl.DataFrame, attributes: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """How well the features predict each excluded protected attribute: LightGBM on a seeded 70 %
    of customers (by id hash), AUC on the rest. High AUC = the features carry a proxy."""
    import lightgbm as lgb


    joined = attributes.join(features, on="ncodpers")
    names = [c for c in features.columns if c != "ncodpers"]
    fit = (stable_hash(joined["ncodpers"].to_numpy(), seed=seed) % 10) < 7
    rows = []
    for attribute in [c for c in attributes.columns if c != "ncodpers"]:
        known = joined[attribute].is_not_null().to_numpy()
        y = joined[attribute].fill_null(0).to_numpy()
        x = joined.select(names).to_numpy()
        params = dict(objective="binary", num_leaves=15, learning_rate=0.1, verbose=-1, seed=seed, num_threads=1, deterministic=True)
        model = lgb.train(params, lgb.Dataset(x[fit & known], y[fit & known]), num_boost_round=60)
        auc, se = auc_with_se(y[~fit & known], model.predict(x[~fit & known]))
        rows.append({"attribute": attribute, "auc": auc, "se": se, "rows": int((~fit & known).sum()),
                     "positive_rate": float(y[known].mean())})
    return pl.DataFrame(rows, schema={"attribute": pl.Utf8, "auc": pl.Float64, "se": pl.Float64, "rows": pl.Int64, "positive_rate": pl.Float64})
