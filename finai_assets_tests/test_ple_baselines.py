"""Per-task LightGBM baselines: they learn, they are deterministic, null-label rows are unused."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, r2_score, roc_auc_score

from finai_assets.lib.ple.baselines import fit_lightgbm_baselines, predict_lightgbm
from finai_assets.lib.ple.tasks import TaskSpec

TASKS = [TaskSpec("churn", "binary"), TaskSpec("segment", "multiclass", classes=3), TaskSpec("spend", "regression")]


def _problem(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    noise = rng.normal(size=(3, n))
    labels = {
        "churn": (X[:, 0] + 0.5 * X[:, 1] + 0.7 * noise[0] > 0).astype(float),
        "segment": np.digitize(X[:, 2] - X[:, 3] + 0.5 * noise[1], [-0.7, 0.7]).astype(float),
        "spend": 2 * X[:, 4] + np.sin(2 * X[:, 5]) + 0.5 * noise[2],
    }
    for y in labels.values():  # ~15 % nulls per task, different rows per task
        y[rng.random(n) < 0.15] = np.nan
    return X, labels


def _split(X, labels, a, b):
    return X[a:b], {k: v[a:b] for k, v in labels.items()}


@pytest.fixture(scope="module")
def fitted():
    X, labels = _problem()
    Xtr, ltr = _split(X, labels, 0, 2000)
    Xva, lva = _split(X, labels, 2000, 2500)
    Xte, lte = _split(X, labels, 2500, 3000)
    boosters = fit_lightgbm_baselines(Xtr, ltr, Xva, lva, TASKS, seed=0)
    return boosters, Xtr, ltr, Xva, lva, Xte, lte


def test_baselines_learn_each_task_type_on_held_out_rows(fitted):
    boosters, *_, Xte, lte = fitted
    pred = predict_lightgbm(boosters, Xte, TASKS)
    assert pred["churn"].shape == (500,) and pred["segment"].shape == (500, 3) and pred["spend"].shape == (500,)
    assert np.allclose(pred["segment"].sum(axis=1), 1.0)
    m = {k: ~np.isnan(v) for k, v in lte.items()}
    assert roc_auc_score(lte["churn"][m["churn"]], pred["churn"][m["churn"]]) > 0.75
    y_seg = lte["segment"][m["segment"]]
    chance = 1 / len(np.unique(y_seg))  # F1-macro of a prior-following random predictor
    assert f1_score(y_seg, pred["segment"][m["segment"]].argmax(1), average="macro") > chance + 0.2
    assert r2_score(lte["spend"][m["spend"]], pred["spend"][m["spend"]]) > 0.5
    assert all(0 < b.best_iteration < 500 for b in boosters.values())  # early stopping acted


def test_same_seed_gives_identical_predictions(fitted):
    boosters, Xtr, ltr, Xva, lva, Xte, _ = fitted
    again = predict_lightgbm(fit_lightgbm_baselines(Xtr, ltr, Xva, lva, TASKS, seed=0), Xte, TASKS)
    first = predict_lightgbm(boosters, Xte, TASKS)
    for name in first:
        assert np.array_equal(first[name], again[name])


def test_null_label_rows_are_not_used(fitted):
    boosters, Xtr, ltr, Xva, lva, *_ = fitted
    # rows null for every task get garbage features, in train and validation: the boosters must not change
    garbage = np.random.default_rng(9)
    Xtr2, Xva2 = Xtr.copy(), Xva.copy()
    ltr2, lva2 = {k: v.copy() for k, v in ltr.items()}, {k: v.copy() for k, v in lva.items()}
    for X2, lab in ((Xtr2, ltr2), (Xva2, lva2)):
        rows = np.arange(0, len(X2), 7)
        for y in lab.values():
            y[rows] = np.nan
        X2[rows] = garbage.normal(scale=1e3, size=(len(rows), X2.shape[1]))
    base = fit_lightgbm_baselines(Xtr, ltr2, Xva, lva2, TASKS, seed=0)
    dirty = fit_lightgbm_baselines(Xtr2, ltr2, Xva2, lva2, TASKS, seed=0)
    for spec in TASKS:
        assert base[spec.name].model_to_string() == dirty[spec.name].model_to_string()
    # control: the same garbage on labelled rows does change the boosters
    Xtr3 = Xtr.copy()
    Xtr3[np.arange(1, len(Xtr3), 7)] = garbage.normal(scale=1e3, size=(len(range(1, len(Xtr3), 7)), Xtr3.shape[1]))
    touched = fit_lightgbm_baselines(Xtr3, ltr2, Xva, lva2, TASKS, seed=0)
    assert base["churn"].model_to_string() != touched["churn"].model_to_string()


def test_bad_multiclass_labels_and_missing_validation_labels_are_refused():
    X, labels = _problem(200)
    bad = {**labels, "segment": labels["segment"] + 0.5}
    with pytest.raises(ValueError, match="class indices in"):
        fit_lightgbm_baselines(X, bad, X, labels, TASKS)
    empty = {**labels, "churn": np.full(200, np.nan)}
    with pytest.raises(ValueError, match="'churn': .* 0 labelled validation rows"):
        fit_lightgbm_baselines(X, labels, X, empty, TASKS)
