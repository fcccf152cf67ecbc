"""The promotion ladder (thresholds: docs/thresholds.md#promotion): every rung, the paired bootstrap on
per-sample predictions of the same rows (docs/defects.md#significance-never-ran)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from finai_assets.lib.ple.tasks import TaskSpec
from finai_assets.lib.promotion import Decision, PromotionConfig, Scored, decide, paired_bootstrap_auc

TASKS = [TaskSpec("churn", "binary"), TaskSpec("cross_sell", "binary"), TaskSpec("next_mcc", "multiclass", classes=3),
         TaskSpec("spend", "regression")]


def _world(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = {"churn": (rng.random(n) < 0.3).astype(float), "cross_sell": (rng.random(n) < 0.4).astype(float),
         "next_mcc": rng.integers(0, 3, n).astype(float), "spend": rng.gamma(2.0, 50.0, n)}
    y["cross_sell"][:50] = np.nan  # unlabelled rows are left out of that task only
    return y, rng


def _model(y, rng, noise: float, mcc_skill: float = 0.7, spend_noise: float = 20.0) -> Scored:
    n = len(y["churn"])
    binary = {t: 1 / (1 + np.exp(-(np.nan_to_num(y[t]) * 2 - 1 + rng.normal(0, noise, n)))) for t in ("churn", "cross_sell")}
    right = rng.random(n) < mcc_skill
    guess = np.where(right, y["next_mcc"], rng.integers(0, 3, n)).astype(int)
    mcc = np.full((n, 3), 0.1)
    mcc[np.arange(n), guess] = 0.8
    return Scored({**binary, "next_mcc": mcc, "spend": y["spend"] + rng.normal(0, spend_noise, n)})


def _secondary_of(model: Scored, other: Scored) -> Scored:
    """`model` with `other`'s multiclass and regression predictions: only the binary tasks differ."""
    return Scored({**model.predictions, "next_mcc": other.predictions["next_mcc"], "spend": other.predictions["spend"]})


def _decide(y, challenger, champion, fidelity=0, fairness=0, **config) -> Decision:
    return decide(TASKS, y, challenger, champion, fidelity, fairness, PromotionConfig(resamples=500, **config))


def test_force_promote_wins_over_every_gate():
    y, rng = _world(1000)
    champion, worse = _model(y, rng, 1.0), _model(y, rng, 3.0)
    decision = _decide(y, worse, champion, fidelity=2, fairness=1, force_promote=True)
    assert (decision.decision, decision.promoted, decision.rung, decision.significance) == ("force_promote", True, "force", None)


def test_without_a_champion_the_first_candidate_is_the_bootstrap_champion():
    y, rng = _world(1000)
    decision = _decide(y, _model(y, rng, 1.0), None, fidelity=0)
    assert (decision.decision, decision.promoted, decision.rung) == ("bootstrap", True, "bootstrap")
    assert decision.comparison.filter(task="churn")["champion"].to_list() == [None]


def test_a_tier1_fidelity_failure_rejects_even_a_much_better_challenger():
    y, rng = _world(2000)
    champion, better = _model(y, rng, 2.0), _model(y, rng, 0.5)
    decision = _decide(y, better, champion, fidelity=1)
    assert (decision.decision, decision.promoted, decision.rung) == ("reject", False, "fidelity_fairness")
    assert "1 tier-1 fidelity" in decision.reason
    blocked = _decide(y, better, champion, fairness=3)
    assert (blocked.decision, blocked.rung) == ("reject", "fidelity_fairness") and "3 blocking fairness" in blocked.reason


def test_a_significantly_better_challenger_is_eligible_and_promoted_only_with_auto_promote():
    y, rng = _world(3000)
    champion = _model(y, rng, 2.0)
    better = _secondary_of(_model(y, rng, 1.0), champion)
    decision = _decide(y, better, champion)
    assert (decision.decision, decision.promoted, decision.rung) == ("eligible", False, "competition")
    assert "auto_promote is off" in decision.reason
    sig = decision.significance
    assert sig["p_value"] < 0.05 and sig["delta"] > 0 and sig["ci_low"] > 0 and sig["rows"] == 3000
    gain = decision.comparison.filter(metric="mean_auc").row(0, named=True)
    assert gain["passes"] and gain["relative_change"] >= 0.005
    auto = _decide(y, better, champion, auto_promote=True)
    assert (auto.decision, auto.promoted) == ("promote", True)


def test_a_gain_that_is_not_significant_is_rejected():
    y, rng = _world(300, seed=0)  # a 2 % relative gain on 300 rows: p = 0.25
    champion = _model(y, rng, 1.6)
    challenger = _secondary_of(_model(y, rng, 1.5), champion)
    decision = _decide(y, challenger, champion)
    gain = decision.comparison.filter(metric="mean_auc").row(0, named=True)
    assert gain["relative_change"] >= 0.005 and gain["passes"]  # the point estimate clears the 0.5 % bar ...
    assert decision.significance["p_value"] >= 0.05  # ... but the paired bootstrap does not
    assert (decision.decision, decision.promoted, decision.rung) == ("reject", False, "competition")
    assert "not significant" in decision.reason


def test_secondary_metrics_more_than_2_percent_worse_reject():
    y, rng = _world(3000)
    champion = _model(y, rng, 2.0, mcc_skill=0.8, spend_noise=10.0)
    challenger = _model(y, rng, 1.0, mcc_skill=0.5, spend_noise=40.0)
    decision = _decide(y, challenger, champion)
    assert decision.decision == "reject" and decision.significance["p_value"] < 0.05
    assert "mean_f1_macro" in decision.reason and "mean_normalised_mae" in decision.reason
    assert "mean_auc" not in decision.reason


def test_paired_bootstrap_equals_a_naive_loop_over_the_same_resampled_rows():
    y, rng = _world(400)
    a, b = _model(y, rng, 1.5), _model(y, rng, 1.2)
    tasks = ("churn", "cross_sell")
    result = paired_bootstrap_auc({t: y[t] for t in tasks}, {t: a.predictions[t] for t in tasks},
                                  {t: b.predictions[t] for t in tasks}, resamples=200, seed=7)
    draws = np.random.default_rng(7).integers(0, 400, size=(200, 400))

    def mean_auc(model, rows):
        aucs = []
        for t in tasks:
            keep = rows[~np.isnan(y[t][rows])]
            aucs.append(roc_auc_score(y[t][keep], model.predictions[t][keep]))
        return np.mean(aucs)

    deltas = np.array([mean_auc(b, rows) - mean_auc(a, rows) for rows in draws])
    assert result["delta"] == pytest.approx(mean_auc(b, np.arange(400)) - mean_auc(a, np.arange(400)), abs=1e-12)
    assert result["p_value"] == pytest.approx((1 + (deltas <= 0).sum()) / 201)
    assert result["ci_low"] == pytest.approx(np.percentile(deltas, 2.5), abs=1e-12)
    same = paired_bootstrap_auc({"churn": y["churn"]}, {"churn": a.predictions["churn"]}, {"churn": a.predictions["churn"]}, 200, 0)
    assert (same["delta"], same["p_value"]) == (0.0, 1.0)  # a model never beats itself


def test_predictions_of_other_rows_or_missing_tasks_are_errors():
    y, rng = _world(500)
    champion = _model(y, rng, 1.0)
    short = Scored({t: p[:-1] for t, p in champion.predictions.items()})
    with pytest.raises(ValueError, match=r"per-sample values of the same rows"):
        paired_bootstrap_auc({"churn": y["churn"]}, {"churn": champion.predictions["churn"]}, {"churn": short.predictions["churn"]}, 200, 0)
    with pytest.raises(ValueError, match=r"no per-sample predictions of \['spend'\]"):
        _decide(y, Scored({t: p for t, p in champion.predictions.items() if t != "spend"}), champion)
    with pytest.raises(ValueError, match="at least 100 resamples"):
        PromotionConfig(resamples=10)
