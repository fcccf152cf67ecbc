"""PLE per-task metrics and the checkpoint-selection composite."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, r2_score, roc_auc_score

from finai_assets.lib.ple.metrics import composite, hanley_mcneil_se, task_metrics
from finai_assets.lib.ple.tasks import TaskSpec

BIN = TaskSpec("churn", "binary")
MC = TaskSpec("next_product", "multiclass", classes=4)
REG = TaskSpec("spend", "regression")


def test_binary_auc_matches_sklearn_and_ignores_nan_rows():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(float)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    m = task_metrics(BIN, y, p)
    assert m["rows"] == 500
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(y, p >= 0.5), abs=1e-12)
    assert m["auc_ci_high"] == pytest.approx(m["auc"] + 1.96 * m["auc_se"])
    # NaN-labelled rows with adversarial predictions change nothing
    y_nan = np.concatenate([y, np.full(200, np.nan)])
    p_nan = np.concatenate([p, np.where(rng.random(200) < 0.5, 0.0, 1.0)])
    assert task_metrics(BIN, y_nan, p_nan) == m


def test_hanley_mcneil_se_on_a_hand_case():
    # positives score 0.9, 0.4; negatives 0.5, 0.1 -> 3 of 4 pairs ordered, AUC 0.75
    m = task_metrics(BIN, np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.9, 0.4, 0.5, 0.1]))
    assert m["auc"] == 0.75
    # Q1 = .75/1.25 = .6, Q2 = 2*.5625/1.75 = .642857; var = (.1875 + (.6-.5625) + (.642857-.5625)) / 4
    assert m["auc_se"] == pytest.approx(np.sqrt((0.1875 + 0.0375 + 0.0803571428571) / 4), rel=1e-9)
    assert m["auc_se"] == pytest.approx(0.276295, abs=1e-6)
    assert hanley_mcneil_se(0.8, 10, 20) == pytest.approx(0.0935712, abs=1e-6)


def test_constant_prediction_gives_auc_one_half_and_one_class_gives_nan():
    y = np.array([0, 1, 0, 1, 1, 0, 0], dtype=float)
    assert task_metrics(BIN, y, np.full(7, 0.3))["auc"] == 0.5
    assert np.isnan(task_metrics(BIN, np.ones(5), np.full(5, 0.3))["auc"])


def test_non_finite_predictions_on_labelled_rows_are_an_error():
    with pytest.raises(ValueError, match="1 of 3 labelled rows"):
        task_metrics(BIN, np.array([0.0, 1.0, 0.0, np.nan]), np.array([0.1, np.nan, 0.2, np.nan]))


def test_ndcg_at_3_and_accuracy_on_a_hand_case():
    spec = TaskSpec("t", "multiclass", classes=4)
    y = np.array([0.0, 2.0, 3.0])
    pred = np.array([
        [0.7, 0.1, 0.1, 0.1],  # true class ranked 1 -> 1
        [0.4, 0.3, 0.2, 0.1],  # true class ranked 3 -> 1/log2(4) = 0.5
        [0.4, 0.3, 0.2, 0.1],  # true class ranked 4 -> 0
    ])
    m = task_metrics(spec, y, pred)
    assert m["ndcg@3"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["acc@1"] == pytest.approx(1 / 3) and m["acc@3"] == pytest.approx(2 / 3)


def test_f1_macro_matches_sklearn_and_its_bootstrap_bound_is_above_it_and_seeded():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 800).astype(float)
    logits = rng.normal(size=(800, 4)) + 1.5 * np.eye(4)[y.astype(int)]
    pred = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = task_metrics(MC, y, pred)
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred.argmax(1), average="macro"), abs=1e-12)
    assert m["f1_macro"] < m["f1_macro_ci_high"] < m["f1_macro"] + 0.1
    assert task_metrics(MC, y, pred) == m
    assert task_metrics(MC, y, pred, seed=1)["f1_macro_ci_high"] != m["f1_macro_ci_high"]


def test_chance_f1_equals_simulated_prior_following_random_predictors():
    rng = np.random.default_rng(2)
    priors = np.array([0.6, 0.25, 0.1, 0.05])
    y = rng.choice(4, size=5000, p=priors)
    m = task_metrics(MC, y.astype(float), np.full((5000, 4), 0.25))
    emp = np.bincount(y, minlength=4) / len(y)
    simulated = [f1_score(y, rng.choice(4, size=len(y), p=emp), average="macro") for _ in range(200)]
    assert m["chance_f1"] == pytest.approx(np.mean(simulated), abs=0.01)
    assert m["chance_f1"] == pytest.approx(0.25)  # = 1 / classes present, whatever the priors
    # a class absent from y does not count
    assert task_metrics(MC, np.array([0.0, 0.0, 1.0]), np.full((3, 4), 0.25))["chance_f1"] == pytest.approx(0.5)


def test_regression_metrics_match_sklearn_and_hand_values():
    rng = np.random.default_rng(3)
    y = rng.normal(size=400)
    p = y + rng.normal(scale=0.5, size=400)
    m = task_metrics(REG, np.concatenate([y, [np.nan] * 10]), np.concatenate([p, [1e6] * 10]))
    assert m["rows"] == 400
    assert m["r2"] == pytest.approx(r2_score(y, p), abs=1e-12)
    assert m["mae"] == pytest.approx(np.abs(y - p).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((y - p) ** 2).mean()))
    assert m["normalised_mae"] == pytest.approx(m["mae"] / np.abs(y - y.mean()).mean())
    assert m["r2"] < m["r2_ci_high"] < m["r2"] + 0.1
    # predicting the mean: normalised MAE exactly 1 and R^2 exactly 0
    flat = task_metrics(REG, y, np.full(400, y.mean()))
    assert flat["normalised_mae"] == pytest.approx(1.0) and flat["r2"] == pytest.approx(0.0, abs=1e-12)


def test_composite_on_a_hand_case():
    specs = [BIN, TaskSpec("b2", "binary"), MC, REG, TaskSpec("r2", "regression"), TaskSpec("absent", "binary")]
    metrics = {
        "churn": {"auc": 0.8}, "b2": {"auc": 0.6},             # binary term 0.7
        "next_product": {"ndcg@3": 0.5},                        # multiclass term 0.5
        "spend": {"normalised_mae": 0.6}, "r2": {"normalised_mae": 0.8},  # 1 - 0.7 = 0.3
    }
    assert composite(metrics, specs) == pytest.approx((0.7 + 0.5 + 0.3) / 3)
    # regression term clipped at 0; a NaN AUC is left out of the binary average
    metrics["spend"]["normalised_mae"] = 1.6
    metrics["b2"]["auc"] = float("nan")
    assert composite(metrics, specs) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert composite({"churn": {"auc": 0.8}}, specs) == pytest.approx(0.8)
    assert np.isnan(composite({}, specs))
