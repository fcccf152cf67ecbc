"""Per-task hard-label LightGBM baselines for the PLE teacher (the `baseline_models` asset).

One booster per task, trained on the rows whose label is not null (labels are float arrays with
NaN for null; multiclass labels are class indices stored as floats), early-stopped on the
validation rows of that task, deterministic for a given seed and thread count.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

from finai_assets.lib.ple.tasks import TaskSpec

OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}  # regression = l2


def fit_lightgbm_baselines(
    X_train: np.ndarray,
    labels_train: dict[str, np.ndarray],
    X_val: np.ndarray,
    labels_val: dict[str, np.ndarray],
    specs: Sequence[TaskSpec],
    *,
    seed: int = 0,
    threads: int = 1,
    max_rounds: int = 500,
    early_stopping: int = 30,
) -> dict[str, lgb.Booster]:
    assert X_train.ndim == 2 and X_val.ndim == 2 and X_train.shape[1] == X_val.shape[1], (X_train.shape, X_val.shape)
    boosters = {}
    for spec in specs:
        y_tr, y_va = _labels(spec, labels_train, len(X_train)), _labels(spec, labels_val, len(X_val))
        m_tr, m_va = ~np.isnan(y_tr), ~np.isnan(y_va)
        if not m_tr.any() or not m_va.any():
            raise ValueError(f"task {spec.name!r}: {int(m_tr.sum())} labelled train rows and {int(m_va.sum())} "
                             "labelled validation rows; both must be > 0")
        params = {
            "objective": OBJECTIVE[spec.type],
            "learning_rate": 0.05,
            "num_leaves": 31,
            "seed": seed,
            "num_threads": threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if spec.type == "multiclass":
            params["num_class"] = spec.classes
        train = lgb.Dataset(X_train[m_tr], y_tr[m_tr], params=params)
        val = lgb.Dataset(X_val[m_va], y_va[m_va], reference=train, params=params)
        boosters[spec.name] = lgb.train(
            params, train, num_boost_round=max_rounds, valid_sets=[val],
            callbacks=[lgb.early_stopping(early_stopping, verbose=False)],
        )
    return boosters


def predict_lightgbm(boosters: dict[str, lgb.Booster], X: np.ndarray, specs: Sequence[TaskSpec]) -> dict[str, np.ndarray]:
    """binary -> P(y = 1) [N]; multiclass -> class probabilities [N, K]; regression -> value [N]."""
    out = {}
    for spec in specs:
        if spec.name not in boosters:
            raise KeyError(f"no LightGBM baseline for task {spec.name!r}; have {sorted(boosters)}")
        booster = boosters[spec.name]
        pred = np.asarray(booster.predict(X, num_iteration=booster.best_iteration))
        want = (len(X), spec.classes) if spec.type == "multiclass" else (len(X),)
        assert pred.shape == want, f"task {spec.name!r}: prediction {pred.shape}, expected {want}"
        out[spec.name] = pred
    return out


def _labels(spec: TaskSpec, labels: dict[str, np.ndarray], n: int) -> np.ndarray:
    y = np.asarray(labels[spec.name], dtype=np.float64)
    assert y.shape == (n,), f"task {spec.name!r}: labels {y.shape}, expected {(n,)}"
    if spec.type == "multiclass":
        k = y[~np.isnan(y)]
        if ((k != np.round(k)) | (k < 0) | (k >= spec.classes)).any():
            raise ValueError(f"task {spec.name!r}: multiclass labels must be class indices in [0, {spec.classes})")
    return y
