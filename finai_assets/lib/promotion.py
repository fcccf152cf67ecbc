"""Champion-challenger promotion: the paired significance test always runs on per-sample
predictions (docs/defects.md#significance-never-ran).

The ladder, first match wins:
1. force_promote                  -> "force_promote" (promoted; audited as such)
2. no champion yet                -> "bootstrap" (promoted)
3. any tier-1 fidelity failure or
   blocking fairness failure      -> "reject"
4. competition on the same test rows, both models' per-sample predictions:
   - primary: mean AUC over the binary tasks, relative gain >= min_relative_gain (0.5 %);
   - secondary: mean F1-macro over the multiclass tasks and mean normalised MAE (MAE / mean
     |y - mean y|, scale-free across tasks) over the regression tasks, each at most
     max_secondary_degradation (2 %) worse, relative;
   - a paired bootstrap of the mean-AUC difference (rows resampled once, both models scored on
     the same resample), one-sided p < alpha. It always runs, whatever the point estimates say.
   All pass: "promote" with auto_promote, else "eligible" (auto-promote is off by default: a
   person promotes with force_promote). Any fails: "reject", every failing rule in the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from finai_assets.lib.ple.tasks import TaskSpec

BOOTSTRAP_CELLS = 4_000_000  # resample-by-row cells held at once


@dataclasses.dataclass(frozen=True)
class PromotionConfig:
    min_relative_gain: float = 0.005
    max_secondary_degradation: float = 0.02
    alpha: float = 0.05
    resamples: int = 1000
    seed: int = 0
    force_promote: bool = False
    auto_promote: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.resamples < 100:
            raise ValueError(f"the paired bootstrap needs at least 100 resamples for p < 0.05 to mean anything, got {self.resamples}")


@dataclasses.dataclass(frozen=True)
class Scored:
    """One model's per-sample predictions of the compared rows: task -> [N] or [N, K]."""

    predictions: Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Decision:
    decision: str  # force_promote | bootstrap | reject | eligible | promote (| already_champion, set by the caller)
    promoted: bool
    rung: str  # force | bootstrap | fidelity_fairness | competition
    reason: str
    comparison: pl.DataFrame
    significance: dict | None


def _weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (Mann-Whitney, ties count half) of every row of `weights` [B, N]: row b weighs sample i
    by how often resample b drew it. One sort, then cumulative sums per resample."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], y[order] == 1
    w = weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores
    w_pos = np.add.reduceat(np.where(pos, w, 0.0), starts, axis=1)
    w_neg = np.add.reduceat(np.where(pos, 0.0, w), starts, axis=1)
    below = np.cumsum(w_neg, axis=1) - w_neg
    pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    wins = (w_pos * (below + 0.5 * w_neg)).sum(axis=1)
    return np.divide(wins, pairs, out=np.full(len(w), np.nan), where=pairs > 0)


def paired_bootstrap_auc(y: Mapping[str, np.ndarray], champion: Mapping[str, np.ndarray], challenger: Mapping[str, np.ndarray],
                         resamples: int, seed: int) -> dict:
    """Paired bootstrap of mean AUC (challenger - champion) over the binary tasks in `y`: each
    resample draws N rows with replacement and scores both models on exactly those rows, each
    task on its labelled ones. p is one-sided, (1 + #{delta_b <= 0}) / (B + 1)."""
    tasks = list(y)
    if not tasks:
        raise ValueError("the paired bootstrap needs at least one binary task")
    n = len(y[tasks[0]])
    for t in tasks:
        for name, arr in (("labels", y[t]), ("champion", champion[t]), ("challenger", challenger[t])):
            if np.shape(arr) != (n,):
                raise ValueError(f"task {t!r}: {name} must be [N={n}] per-sample values of the same rows, got {np.shape(arr)}")
    labelled = {t: ~np.isnan(np.asarray(y[t], dtype=np.float64)) for t in tasks}

    def mean_auc(model: Mapping[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        per_task = [_weighted_auc(np.asarray(y[t])[labelled[t]], np.asarray(model[t], dtype=np.float64)[labelled[t]],
                                  weights[:, labelled[t]]) for t in tasks]
        return np.nanmean(np.vstack(per_task), axis=0)

    observed = mean_auc(challenger, np.ones((1, n))) - mean_auc(champion, np.ones((1, n)))
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CELLS // max(n, 1))
    deltas = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        deltas.append(mean_auc(challenger, weights) - mean_auc(champion, weights))
    delta_b = np.concatenate(deltas)
    return {"metric": "mean_auc", "delta": float(observed[0]), "p_value": float((1 + (delta_b <= 0).sum()) / (resamples + 1)),
            "ci_low": float(np.percentile(delta_b, 2.5)), "ci_high": float(np.percentile(delta_b, 97.5)),
            "resamples": int(resamples), "rows": int(n)}


_METRIC = {"binary": "auc", "multiclass": "f1_macro", "regression": "normalised_mae"}
_AGGREGATE = {"binary": "mean_auc", "multiclass": "mean_f1_macro", "regression": "mean_normalised_mae"}


def _comparison(specs: Sequence[TaskSpec], y: Mapping[str, np.ndarray], challenger: Scored, champion: Scored | None,
                config: PromotionConfig) -> pl.DataFrame:
    """Per task and per aggregate: champion, challenger, relative change (positive = better) and
    whether the aggregate meets its rule."""
    from finai_assets.lib.ple.metrics import task_metrics  # scikit-learn: not at code-location load

    rows = []
    for s in specs:
        metric = _METRIC[s.type]
        chal = task_metrics(s, y[s.name], challenger.predictions[s.name])[metric]
        champ = task_metrics(s, y[s.name], champion.predictions[s.name])[metric] if champion else None
        rows.append({"task": s.name, "type": s.type, "metric": metric, "champion": champ, "challenger": chal})
    per_task = pl.DataFrame(rows, schema={"task": pl.Utf8, "type": pl.Utf8, "metric": pl.Utf8, "champion": pl.Float64,
                                          "challenger": pl.Float64})
    aggregate = (per_task.group_by("type", maintain_order=True)
                 .agg(pl.col("champion").mean(), pl.col("challenger").mean())
                 .with_columns(task=pl.lit("(mean)"), metric=pl.col("type").replace_strict(_AGGREGATE)))
    table = pl.concat([per_task, aggregate.select(per_task.columns)])
    lower_is_better = pl.col("metric").str.contains("mae")
    change = (pl.when(lower_is_better).then(pl.col("champion") - pl.col("challenger")).otherwise(pl.col("challenger") - pl.col("champion"))
              / pl.col("champion").abs())
    bound = (pl.when(pl.col("metric") == "mean_auc").then(pl.lit(config.min_relative_gain))
             .when(pl.col("task") == "(mean)").then(pl.lit(-config.max_secondary_degradation)))
    return table.with_columns(relative_change=change, required=bound).with_columns(
        passes=pl.when(pl.col("required").is_not_null())  # an undefined change (NaN, no champion) never passes
        .then((pl.col("relative_change").fill_nan(None) >= pl.col("required")).fill_null(False)))


def decide(specs: Sequence[TaskSpec], y: Mapping[str, np.ndarray], challenger: Scored, champion: Scored | None,
           fidelity_failures: int, fairness_blocking_failures: int, config: PromotionConfig) -> Decision:
    """The ladder of the module docstring on the compared tasks `specs`."""
    missing = [s.name for s in specs if s.name not in challenger.predictions or (champion and s.name not in champion.predictions)]
    if missing:
        raise ValueError(f"no per-sample predictions of {missing} for both models: score the same tasks on the same rows")
    comparison = _comparison(specs, y, challenger, champion, config)
    if config.force_promote:
        return Decision("force_promote", True, "force", "force_promote was set: promoted without the gates (audited)", comparison, None)
    if champion is None:
        return Decision("bootstrap", True, "bootstrap", "no champion yet: the first candidate becomes the champion", comparison, None)
    if fidelity_failures or fairness_blocking_failures:
        return Decision("reject", False, "fidelity_fairness",
                        f"{fidelity_failures} tier-1 fidelity or constant-student failures and {fairness_blocking_failures} "
                        "blocking fairness failures: a challenger must pass both gates", comparison, None)
    binary = [s.name for s in specs if s.type == "binary"]
    if not binary:
        raise ValueError("no binary task in common with the champion: the primary metric (mean AUC) cannot be compared")
    significance = paired_bootstrap_auc({t: y[t] for t in binary}, {t: champion.predictions[t] for t in binary},
                                        {t: challenger.predictions[t] for t in binary}, config.resamples, config.seed)
    failures = [f"{r['metric']} {r['relative_change']:+.2%} relative (needs {r['required']:+.2%})"
                for r in comparison.filter(pl.col("passes").not_()).iter_rows(named=True)]
    if significance["p_value"] >= config.alpha:
        failures.append(f"the mean-AUC gain is not significant (paired bootstrap p = {significance['p_value']:.3f} >= {config.alpha})")
    if failures:
        return Decision("reject", False, "competition", "; ".join(failures), comparison, significance)
    passed = (f"mean AUC {significance['delta']:+.4f} (p = {significance['p_value']:.3f}), secondary metrics within "
              f"{config.max_secondary_degradation:.0%}")
    if config.auto_promote:
        return Decision("promote", True, "competition", f"{passed}: promoted (auto_promote)", comparison, significance)
    return Decision("eligible", False, "competition", f"{passed}; auto_promote is off: rerun with force_promote to promote",
                    comparison, significance)
