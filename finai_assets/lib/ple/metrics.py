"""Per-task metrics and the checkpoint-selection composite (numpy + scikit-learn only).

`task_metrics` scores one task on its labelled rows (float labels, NaN = null; multiclass labels
are class indices stored as floats):
- binary      pred [N] probabilities -> auc, auc_se (Hanley & McNeil 1982), auc_ci_high
              (auc + 1.96 se), f1 (threshold 0.5);
- multiclass  pred [N, K] probabilities -> f1_macro (argmax decisions), f1_macro_ci_high,
              chance_f1, f1_macro_prior_corrected (decisions argmax_k p_k / pi_k, pi = `priors`),
              log_loss, prior_log_loss (the log-loss of always predicting pi), ndcg@3, acc@1, acc@3;
- regression  pred [N] -> mae, rmse, r2, r2_ci_high, normalised_mae (MAE / mean |y - mean(y)|).
Every result holds "rows" (int), the labelled row count. `*_ci_high` from a bootstrap is the 97.5th
percentile of 200 seeded resamples (the upper end of a two-sided 95 % interval). A metric the
data leave undefined (AUC with one class present, R^2 of a constant target) is NaN; predictions
that are not finite on labelled rows are an error, not a score.

chance_f1 is the F1-macro of a random predictor that draws class k with the prior p_k of y:
its expected precision on k is p_k (a p_k share of what it calls k is k) and its recall is p_k
(it calls a p_k share of the true k's k), so F1_k = p_k, and the macro average over the classes
present in y is mean_k p_k = 1 / (number of classes present), whatever the imbalance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from finai_assets.lib.ple.tasks import TaskSpec

N_BOOT = 200
TOP_K = 3


def task_metrics(spec: TaskSpec, y: np.ndarray, pred: np.ndarray, *, seed: int = 0,
                 priors: np.ndarray | None = None) -> dict[str, float]:
    """`priors` (multiclass only): the class priors the model was trained under (e.g. the train
    split's class shares); defaults to the class shares of `y` itself."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    assert y.ndim == 1, f"task {spec.name!r}: labels must be [N], got {y.shape}"
    want = (len(y), spec.classes) if spec.type == "multiclass" else (len(y),)
    assert pred.shape == want, f"task {spec.name!r}: predictions must be {want}, got {pred.shape}"
    keep = ~np.isnan(y)
    y, pred = y[keep], pred[keep]
    bad = int((~np.isfinite(pred)).reshape(len(y), -1).any(axis=1).sum())
    if bad:
        raise ValueError(f"task {spec.name!r}: {bad} of {len(y)} labelled rows have non-finite predictions")
    rng = np.random.default_rng(seed)
    if spec.type == "binary":
        out = _binary(y, pred)
    elif spec.type == "multiclass":
        out = _multiclass(y, pred, spec.classes, rng, priors)
    else:
        out = _regression(y, pred, rng)
    return {"rows": int(len(y)), **out}


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC from n_pos positives and n_neg negatives (Hanley & McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def _binary(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"binary labels must be 0/1, got values {np.unique(y)[:5]}")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    f1 = float(f1_score(y, p >= 0.5, zero_division=0)) if len(y) else float("nan")
    if n_pos == 0 or n_neg == 0:  # AUC undefined with one class
        return {"auc": float("nan"), "auc_se": float("nan"), "auc_ci_high": float("nan"), "f1": f1}
    auc = float(roc_auc_score(y, p))
    se = hanley_mcneil_se(auc, n_pos, n_neg)
    return {"auc": auc, "auc_se": se, "auc_ci_high": auc + 1.96 * se, "f1": f1}


MULTICLASS_METRICS = ("f1_macro", "f1_macro_ci_high", "chance_f1", "f1_macro_prior_corrected", "log_loss",
                      "prior_log_loss", "ndcg@3", "acc@1", "acc@3")


def class_priors(y: np.ndarray, k: int) -> np.ndarray:
    """Laplace-smoothed class shares of the labelled rows of y (never 0, so p / prior is finite)."""
    y = np.asarray(y, dtype=np.float64)
    counts = np.bincount(y[~np.isnan(y)].astype(np.int64), minlength=k)[:k]
    return (counts + 1.0) / (counts.sum() + k)


def _multiclass(y: np.ndarray, p: np.ndarray, k: int, rng: np.random.Generator, priors: np.ndarray | None) -> dict[str, float]:
    if len(y) == 0:
        return dict.fromkeys(MULTICLASS_METRICS, float("nan"))
    yi = y.astype(np.int64)
    if (yi != y).any() or yi.min() < 0 or yi.max() >= k:
        raise ValueError(f"multiclass labels must be class indices in [0, {k}), got values {np.unique(y)[:5]}")
    # rank of the true class, 1 = best; ties go to the lower index (as argmax and a stable sort do)
    true_p = p[np.arange(len(yi)), yi][:, None]
    idx = np.arange(k)[None, :]
    rank = 1 + (p > true_p).sum(axis=1) + ((p == true_p) & (idx < yi[:, None])).sum(axis=1)
    ndcg = np.where(rank <= TOP_K, 1.0 / np.log2(rank + 1), 0.0)
    # F1-macro from the confusion matrix; the bootstrap redraws its cells (multinomial = row resampling)
    cm = np.bincount(yi * k + p.argmax(axis=1), minlength=k * k).astype(np.float64)
    boot = rng.multinomial(len(yi), cm / len(yi), size=N_BOOT).astype(np.float64)
    f1_all = _f1_macro(np.vstack([cm, boot]), k)
    shares = np.bincount(yi, minlength=k) / len(yi)
    pi = class_priors(y, k) if priors is None else np.asarray(priors, dtype=np.float64)
    assert pi.shape == (k,) and (pi > 0).all(), f"priors must be {k} positive shares, got {pi}"
    corrected = np.bincount(yi * k + (p / pi).argmax(axis=1), minlength=k * k).astype(np.float64)
    eps = 1e-15
    return {
        "f1_macro": float(f1_all[0]),
        "f1_macro_ci_high": float(np.percentile(f1_all[1:], 97.5)),
        "chance_f1": float(shares[shares > 0].mean()),
        "f1_macro_prior_corrected": float(_f1_macro(corrected[None, :], k)[0]),
        "log_loss": float(-np.log(np.clip(p[np.arange(len(yi)), yi], eps, 1.0)).mean()),
        "prior_log_loss": float(-np.log(np.clip(pi[yi] / pi.sum(), eps, 1.0)).mean()),
        "ndcg@3": float(ndcg.mean()),
        "acc@1": float((rank == 1).mean()),
        "acc@3": float((rank <= TOP_K).mean()),
    }


def _f1_macro(cells: np.ndarray, k: int) -> np.ndarray:
    """F1-macro of each flattened confusion matrix in cells [B, k*k] (rows = true, columns = predicted),
    averaged over the classes present in the truth or the predictions (as scikit-learn does)."""
    cm = cells.reshape(-1, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(axis=2) + cm.sum(axis=1)  # true count + predicted count
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.sum(axis=1) / (denom > 0).sum(axis=1)


def _regression(y: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    if len(y) == 0:
        return dict.fromkeys(("mae", "rmse", "r2", "r2_ci_high", "normalised_mae"), float("nan"))
    err = y - p
    mae = float(np.abs(err).mean())
    spread = float(np.abs(y - y.mean()).mean())
    r2 = _r2(y[None, :], err[None, :])[0]
    # bootstrap in chunks of resamples so that a chunk holds at most ~4M gathered values
    chunk = max(1, min(N_BOOT, 4_000_000 // len(y)))
    boot = np.concatenate([
        _r2(y[i], err[i])
        for i in (rng.integers(0, len(y), size=(min(chunk, N_BOOT - s), len(y))) for s in range(0, N_BOOT, chunk))
    ])
    return {
        "mae": mae,
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(r2),
        "r2_ci_high": float(np.nanpercentile(boot, 97.5)) if np.isfinite(boot).any() else float("nan"),
        "normalised_mae": mae / spread if spread > 0 else float("nan"),
    }


def _r2(y: np.ndarray, err: np.ndarray) -> np.ndarray:
    """R^2 per row of y, err [B, N]; NaN where the target is constant."""
    sst = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    sse = (err**2).sum(axis=1)
    return 1.0 - np.divide(sse, sst, out=np.full(len(y), np.nan), where=sst > 0)


def composite(metrics_by_task: Mapping[str, Mapping[str, float]], specs: Sequence[TaskSpec]) -> float:
    """The checkpoint-selection score: the mean of the per-type terms that are available, namely
    avg AUC over binary tasks, avg NDCG@3 over multiclass tasks and 1 - avg normalised MAE over
    regression tasks clipped to [0, 1]. Tasks absent from metrics_by_task and NaN metrics (undefined
    from the data) are left out; NaN when no term is available."""
    key = {"binary": "auc", "multiclass": "ndcg@3", "regression": "normalised_mae"}
    by_type: dict[str, list[float]] = {"binary": [], "multiclass": [], "regression": []}
    for spec in specs:
        value = metrics_by_task.get(spec.name, {}).get(key[spec.type], float("nan"))
        if np.isfinite(value):
            by_type[spec.type].append(float(value))
    terms = [float(np.mean(by_type[t])) for t in ("binary", "multiclass") if by_type[t]]
    if by_type["regression"]:
        terms.append(float(np.clip(1.0 - np.mean(by_type["regression"]), 0.0, 1.0)))
    return float(np.mean(terms)) if terms else float("nan")
