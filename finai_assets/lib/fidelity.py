"""How faithfully each distilled student reproduces its teacher (the `fidelity_report` asset).

Only tasks routed to `distil` are judged: a hard-label or rule student never saw the teacher, so a
gap to it says nothing (docs/defects.md#fidelity-on-undistilled). All
numbers are on the test split (never used for training, early stopping or calibration).

Tier 1 (blocking), one-sided - a student may beat its teacher:
- binary      AUC gap = AUC(teacher) - AUC(student) <= 0.02, and the student's ECE <= 0.05;
- multiclass  F1-macro gap = F1(teacher) - F1(student) <= 0.05;
- regression  (MAE(student) - MAE(teacher)) / MAE(teacher) <= 5 %, the same for RMSE <= 10 %.
Tier 2 (informational): agreement (binary: same decision at 0.5; multiclass: same argmax;
regression: same quartile of the teacher's predictions), agreement within the top-k % (overlap of
the two top-k % sets / its size), Spearman rank correlation, Jensen-Shannon divergence (binary and
multiclass: mean per-row JSD of the predicted distributions; regression: JSD of the two prediction
histograms on shared bins).
The constant-student guard fails a student whose prediction std is below 1e-3 x the teacher's,
whatever its gaps: high fidelity is reachable by imitating a constant on a near-constant teacher.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from finai_assets.lib.ple.tasks import TaskSpec

ECE_BINS = 10


@dataclasses.dataclass(frozen=True)
class FidelityThresholds:
    auc_gap: float = 0.02
    ece: float = 0.05
    f1_gap: float = 0.05
    mae_gap_relative: float = 0.05
    rmse_gap_relative: float = 0.10
    constant_std_ratio: float = 1e-3
    top_k_percent: float = 10.0


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width probability bins of (bin share) x |mean p - mean y|."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return float(gap.sum() / count.sum())


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row JSD (natural log, in [0, ln 2]) of distributions in the last axis."""
    p, q = np.clip(p, 1e-12, 1.0), np.clip(q, 1e-12, 1.0)
    m = (p + q) / 2
    return 0.5 * (p * np.log(p / m)).sum(-1) + 0.5 * (q * np.log(q / m)).sum(-1)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def _top_k_overlap(student: np.ndarray, teacher: np.ndarray, percent: float) -> float:
    k = max(1, int(round(len(teacher) * percent / 100)))
    top = lambda s: np.argsort(-s, kind="stable")[:k]  # noqa: E731
    return len(np.intersect1d(top(student), top(teacher))) / k


def tier2(spec: TaskSpec, student: np.ndarray, teacher: np.ndarray, th: FidelityThresholds) -> dict[str, float]:
    if spec.type == "binary":
        dist = lambda p: np.stack([1 - p, p], axis=-1)  # noqa: E731
        return {"agreement": float(((student >= 0.5) == (teacher >= 0.5)).mean()),
                "top_k_agreement": _top_k_overlap(student, teacher, th.top_k_percent),
                "rank_correlation": _spearman(student, teacher),
                "jsd": float(jensen_shannon(dist(student), dist(teacher)).mean())}
    if spec.type == "multiclass":
        return {"agreement": float((student.argmax(1) == teacher.argmax(1)).mean()),
                "top_k_agreement": math.nan,
                "rank_correlation": _spearman(student.ravel(), teacher.ravel()),
                "jsd": float(jensen_shannon(student, teacher).mean())}
    quartiles = np.quantile(teacher, [0.25, 0.5, 0.75])
    edges = np.unique(np.quantile(np.concatenate([student, teacher]), np.linspace(0, 1, 21)))
    hist = lambda v: np.histogram(v, edges)[0] / len(v)  # noqa: E731
    return {"agreement": float((np.searchsorted(quartiles, student) == np.searchsorted(quartiles, teacher)).mean()),
            "top_k_agreement": _top_k_overlap(student, teacher, th.top_k_percent),
            "rank_correlation": _spearman(student, teacher),
            "jsd": float(jensen_shannon(hist(student), hist(teacher)))}


def tier1(spec: TaskSpec, y: np.ndarray, student: np.ndarray, teacher: np.ndarray, th: FidelityThresholds) -> list[tuple]:
    """(criterion, teacher value, student value, gap, limit, passed) on the labelled rows."""
    from finai_assets.lib.ple.metrics import task_metrics

    s, t = task_metrics(spec, y, student), task_metrics(spec, y, teacher)
    labelled = ~np.isnan(y)
    if spec.type == "binary":
        ece = expected_calibration_error(y[labelled], student[labelled])
        rows = [("auc_gap", t["auc"], s["auc"], t["auc"] - s["auc"], th.auc_gap),
                ("student_ece", math.nan, ece, ece, th.ece)]
    elif spec.type == "multiclass":
        rows = [("f1_macro_gap", t["f1_macro"], s["f1_macro"], t["f1_macro"] - s["f1_macro"], th.f1_gap)]
    else:
        rows = [(f"{m}_gap_relative", t[m], s[m], (s[m] - t[m]) / t[m], limit)
                for m, limit in (("mae", th.mae_gap_relative), ("rmse", th.rmse_gap_relative))]
    # NaN gaps fail: an undefined metric is no evidence of fidelity.
    return [(c, tv, sv, gap, limit, bool(gap <= limit)) for c, tv, sv, gap, limit in rows]


def constant_guard(student: np.ndarray, teacher: np.ndarray, th: FidelityThresholds) -> tuple[float, float, bool]:
    """(student std, teacher std, passed): fails when std(student) < ratio x std(teacher)."""
    s_std, t_std = float(np.std(student)), float(np.std(teacher))
    return s_std, t_std, bool(s_std >= th.constant_std_ratio * t_std and s_std > 0)


def fidelity_tables(specs: Sequence[TaskSpec], routes: Mapping[str, str], y: Mapping[str, np.ndarray],
                    student: Mapping[str, np.ndarray], teacher: Mapping[str, np.ndarray],
                    th: FidelityThresholds = FidelityThresholds()) -> dict[str, pl.DataFrame]:
    """Test-split arrays per task (labels with NaN = null, predictions in the prediction-frame
    shapes) -> `tier1` (one row per criterion), `tier2`, `guard` and `summary` (one row per task,
    distilled or not; tasks not distilled are `not_judged`)."""
    missing = [s.name for s in specs if s.name not in routes]
    if missing:
        raise ValueError(f"no routing decision for {missing}; rematerialize teacher_evaluation")
    t1, t2, guard, summary = [], [], [], []
    for spec in specs:
        route = routes[spec.name]
        if route != "distil":
            summary.append((spec.name, spec.type, route, "not_judged", None, None, f"routed to {route}: no teacher to be faithful to"))
            continue
        s_pred, t_pred = np.asarray(student[spec.name], dtype=np.float64), np.asarray(teacher[spec.name], dtype=np.float64)
        if s_pred.shape != t_pred.shape:
            raise ValueError(f"task {spec.name!r}: student predictions {s_pred.shape} vs teacher {t_pred.shape}; both must cover the same test rows")
        criteria = tier1(spec, y[spec.name], s_pred, t_pred, th)
        t1 += [(spec.name, *c) for c in criteria]
        t2.append({"task": spec.name, **tier2(spec, s_pred, t_pred, th)})
        s_std, t_std, guard_ok = constant_guard(s_pred, t_pred, th)
        guard.append((spec.name, s_std, t_std, s_std / t_std if t_std > 0 else math.nan, guard_ok))
        failed = [c[0] for c in criteria if not c[-1]] + ([] if guard_ok else ["constant_student_guard"])
        summary.append((spec.name, spec.type, route, "fail" if failed else "pass", all(c[-1] for c in criteria), guard_ok,
                        ", ".join(failed) if failed else "every tier-1 criterion and the guard pass"))
    tables = {
        "tier1": pl.DataFrame(t1, schema=["task", "criterion", "teacher", "student", "gap", "limit", "passed"], orient="row"),
        "tier2": pl.DataFrame(t2, schema=["task", "agreement", "top_k_agreement", "rank_correlation", "jsd"]),
        "guard": pl.DataFrame(guard, schema=["task", "student_std", "teacher_std", "std_ratio", "passed"], orient="row"),
        "summary": pl.DataFrame(summary, schema=["task", "type", "route", "verdict", "tier1_passed", "guard_passed", "reason"], orient="row"),
    }
    return tables
