"""The screen that turns 18 candidate labels into the task set, and its decision table.

A candidate is dropped as **not a prediction task** when all its sources are pre-cutoff columns
and the data confirms a (near-)deterministic dependency out of sample (balanced metrics: MCC >=
0.99 for classes; R^2 >= 0.99 with OLS and a GBM for regressions); as **redundant** when it is an
(almost) exact function of another candidate, H(X|Y)/H(X) <= 0.01 and it is the coarser one;
a label that mostly persists (segment) is judged by its skill over carrying the current value
forward. Everything else is kept. Disagreements with the registry are reported, never tuned.

Every candidate also gets the same determinism metric (`determinism_*` columns), so the table
shows the dropped ones at or above 0.99 *and* the kept ones clearly below (a kept task
stays <= 0.90). A pre-cutoff-only candidate is scored on its own sources (the very number its
decision used); one that reads post-cutoff windows on every pre-cutoff aggregate the registry
declares (a superset of its own pre-cutoff sources): a label those already determine would be a
leak however the registry declared it. sklearn is imported inside the functions that fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from finai_assets.lib.labels import REGISTRY, SOURCE_COLUMNS, Candidate
from finai_assets.lib.stats import column_codes, conditional_entropy_ratio

N_MCC_CLASSES = 50  # top-49 train MCCs + "other"
PERSISTING = {"segment_prediction": "segment_at_c"}


@dataclasses.dataclass(frozen=True)
class ScreenThresholds:
    deterministic: float = 0.99  # MCC / R^2 at or above: not a prediction task
    redundant: float = 0.01  # H(X|Y)/H(X) at or below: redundant
    kept_determinism: float = 0.90  # a kept task's determinism stays at or below


# Every pre-cutoff aggregate the registry declares (the values of SOURCE_COLUMNS); `segment_at_c`
# in pre_cutoff_sources is no registry source: it serves the carry-forward rule only.
DECLARED_AGGREGATES: tuple[str, ...] = tuple(sorted(set(SOURCE_COLUMNS.values())))


def _fit_eval_split(splits: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    split = splits.to_numpy()
    return split == "train", np.isin(split, ("val", "test"))


def determinism_columns(candidate: Candidate) -> list[str]:
    """The pre-cutoff columns a candidate's determinism is measured on: its own sources when they
    are all pre-cutoff (the 'not a prediction task' test), else every declared aggregate."""
    if candidate.pre_cutoff_only:
        return sorted({SOURCE_COLUMNS[s] for s in candidate.sources})
    return list(DECLARED_AGGREGATES)


def determinism(candidate: Candidate, frame: pl.DataFrame, seed: int = 0) -> dict:
    """Out-of-sample predictability of a candidate from its pre-cutoff columns (train -> val+test):
    MCC of a GBM for classes, min(R^2 OLS, R^2 GBM) for regressions."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # OpenMP spin-waits badly when two runs share 2 cores
        return _determinism(candidate, frame, seed)


def _determinism(candidate: Candidate, frame: pl.DataFrame, seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import matthews_corrcoef, r2_score

    columns = determinism_columns(candidate)
    rows = frame.filter(pl.col(candidate.name).is_not_null())
    x = rows.select(pl.col(columns).cast(pl.Float64)).to_numpy()
    y = rows[candidate.name].to_numpy()
    fit, evaluate = _fit_eval_split(rows["split"])
    if candidate.type == "regression":
        finite = ~np.isnan(x).any(1)
        ols = LinearRegression().fit(x[fit & finite], y[fit & finite])
        r2_ols = r2_score(y[evaluate & finite], ols.predict(x[evaluate & finite]))
        gbm = HistGradientBoostingRegressor(max_iter=200, random_state=seed).fit(x[fit], y[fit])
        r2_gbm = r2_score(y[evaluate], gbm.predict(x[evaluate]))
        return {"metric": "min R2 (OLS, GBM)", "value": float(min(r2_ols, r2_gbm)), "r2_ols": float(r2_ols), "r2_gbm": float(r2_gbm)}
    if np.unique(y[fit]).size < 2:  # one class to learn: a constant prediction, MCC 0
        return {"metric": "MCC", "value": 0.0, "uncertainty_coefficient": 0.0}
    gbm = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(x[fit], y[fit])
    predicted = gbm.predict(x[evaluate])
    u = 1 - conditional_entropy_ratio(predicted.astype(np.int64), y[evaluate].astype(np.int64))
    return {"metric": "MCC", "value": float(matthews_corrcoef(y[evaluate], predicted)), "uncertainty_coefficient": float(u)}


def redundancy(labels: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """For every ordered pair: H(X|Y)/H(X) on the rows where both are known."""
    rows = []
    for x in names:
        for y in names:
            if x == y:
                continue
            both = labels.select(x, y).drop_nulls()
            cx, cy = column_codes(both[x]), column_codes(both[y])
            if both.height and np.unique(cx).size > 1:
                rows.append((x, y, conditional_entropy_ratio(cy, cx)))
    return pl.DataFrame(rows, schema={"x": pl.Utf8, "y": pl.Utf8, "ratio": pl.Float64}, orient="row")


def carry_forward_mcc(labels: pl.DataFrame, current: str, task: str) -> float:
    from sklearn.metrics import matthews_corrcoef

    rows = labels.select(current, task, "split").drop_nulls().filter(pl.col("split").is_in(["val", "test"]))
    return float(matthews_corrcoef(rows[task].to_numpy(), rows[current].to_numpy()))


def screen(labels: pl.DataFrame, splits: pl.DataFrame, sources: pl.DataFrame,
           thresholds: ScreenThresholds = ScreenThresholds(), registry: tuple[Candidate, ...] = REGISTRY) -> pl.DataFrame:
    """The decision table: one row per candidate (metric, value, threshold, margin, decision,
    reason, expected fate, agrees; and every candidate's determinism metric, value and margin to
    the deterministic threshold)."""
    frame = labels.join(splits.select("ncodpers", "split"), on="ncodpers").join(sources, on="ncodpers", how="left")
    pairs = redundancy(labels, [c.name for c in registry])
    rows = []
    for c in registry:
        if labels[c.name].null_count() == labels.height:
            rows.append(_row(c, "available rows", 0.0, 1.0, "unavailable", "no data for this candidate (no transactions?)"))
            continue
        mine = pairs.filter(pl.col("x") == c.name).sort("ratio")
        ratio, partner = (float(mine["ratio"][0]), mine["y"][0]) if mine.height else (1.0, None)
        reverse = pairs.filter((pl.col("x") == partner) & (pl.col("y") == c.name))["ratio"] if partner else pl.Series([1.0])
        coarser = ratio <= thresholds.redundant and (reverse.is_empty() or float(reverse[0]) > thresholds.redundant)
        det = determinism(c, frame)  # every candidate: shown in the table, decides pre-cutoff-only ones
        if c.pre_cutoff_only and det["value"] >= thresholds.deterministic:
            rows.append(_row(c, det["metric"], det["value"], thresholds.deterministic, "dropped",
                             "not a prediction task: deterministic from its pre-cutoff sources", det, det, thresholds))
        elif coarser:
            rows.append(_row(c, "H(X|Y)/H(X)", ratio, thresholds.redundant, "dropped", f"redundant: a function of {partner}",
                             det=det, thresholds=thresholds))
        elif c.name in PERSISTING:
            mcc = carry_forward_mcc(frame, PERSISTING[c.name], c.name)
            decision = "dropped" if mcc >= thresholds.deterministic else "kept"
            rows.append(_row(c, "carry-forward MCC", mcc, thresholds.deterministic, decision,
                             "persists: no skill left over carrying it forward" if decision == "dropped"
                             else "changes often enough to predict beyond carrying it forward", det=det, thresholds=thresholds))
        else:
            rows.append(_row(c, "H(X|Y)/H(X)", ratio, thresholds.redundant, "kept",
                             f"a prediction task (closest candidate {partner})", det=det, thresholds=thresholds))
    return pl.DataFrame(rows).with_columns(agrees=pl.col("decision") == pl.col("expected"))


def _row(c: Candidate, metric: str, value: float, threshold: float, decision: str, reason: str, extra: dict | None = None,
         det: dict | None = None, thresholds: ScreenThresholds = ScreenThresholds()) -> dict:
    columns = determinism_columns(c)
    return {
        "task": c.name, "type": c.type, "metric": metric, "value": round(value, 6), "threshold": threshold,
        "margin": round(value - threshold, 6), "decision": decision, "reason": reason, "expected": c.expected,
        "determinism_metric": det["metric"] if det else None,
        "determinism_value": round(det["value"], 6) if det else None,
        "determinism_margin": round(det["value"] - thresholds.deterministic, 6) if det else None,
        "determinism_from": (", ".join(columns) if c.pre_cutoff_only else f"all {len(columns)} declared pre-cutoff aggregates")
        if det else None,
        "details": str({k: round(v, 4) for k, v in (extra or {}).items() if isinstance(v, float) and k != "value"}),
    }


def next_mcc_vocabulary(labels: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
    """The 49 most frequent first-MCCs on the train split (ties: lower code) + class 49 'other'."""
    train = labels.join(splits.filter(pl.col("split") == "train").select("ncodpers"), on="ncodpers")
    top = (
        train["next_mcc"].drop_nulls().value_counts()
        .sort(["count", "next_mcc"], descending=[True, False])
        .head(N_MCC_CLASSES - 1)
    )
    return pl.DataFrame({"mcc": top["next_mcc"], "class": pl.int_range(top.height, eager=True).cast(pl.Int8)})


def task_labels(labels: pl.DataFrame, splits: pl.DataFrame, decisions: pl.DataFrame, vocabulary: pl.DataFrame) -> pl.DataFrame:
    """ncodpers, split and every kept task; next_mcc as its class (unseen codes -> 'other')."""
    kept = decisions.filter(pl.col("decision") == "kept")["task"].to_list()
    mapping = dict(zip(vocabulary["mcc"].to_list(), vocabulary["class"].to_list()))
    frame = labels.join(splits.select("ncodpers", "split"), on="ncodpers")
    if "next_mcc" in kept:
        frame = frame.with_columns(
            pl.when(pl.col("next_mcc").is_null()).then(None)
            .otherwise(pl.col("next_mcc").replace_strict(mapping, default=N_MCC_CLASSES - 1, return_dtype=pl.Int8))
            .alias("next_mcc")
        )
    return frame.select("ncodpers", "split", *kept).sort("ncodpers")
