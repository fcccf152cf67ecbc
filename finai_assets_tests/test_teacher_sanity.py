"""The teacher's sanity verdict: what blocks the chain (NaN anywhere, a distilled task below
chance) and what is only reported (a below-chance task the students never learn from), and the
multiclass metrics it shows (log-loss against the class-prior log-loss, prior-corrected F1)."""

import math

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import teacher as tl
from finai_assets.lib.ple.metrics import class_priors, task_metrics
from finai_assets.lib.ple.tasks import TaskSpec

BIN = TaskSpec("churn_signal", "binary", 1, "lifecycle")
MC = TaskSpec("nba_primary", "multiclass", 6, "consumption")
REG = TaskSpec("product_stability", "regression", 1, "lifecycle")


def _test_table(auc_high: float, f1_high: float, r2_high: float, chance_f1: float = 1 / 6) -> pl.DataFrame:
    rows = [("churn_signal", "auc", 0.5), ("churn_signal", "auc_ci_high", auc_high),
            ("nba_primary", "f1_macro", f1_high - 0.01), ("nba_primary", "f1_macro_ci_high", f1_high),
            ("nba_primary", "chance_f1", chance_f1), ("nba_primary", "log_loss", 1.9),
            ("nba_primary", "prior_log_loss", 1.7), ("nba_primary", "f1_macro_prior_corrected", 0.2),
            ("product_stability", "r2", r2_high - 0.01), ("product_stability", "r2_ci_high", r2_high)]
    return pl.DataFrame([(t, "teacher", m, v) for t, m, v in rows], schema=["task", "model", "metric", "value"], orient="row")


def _routing(**routes: str) -> pl.DataFrame:
    return pl.DataFrame({"task": list(routes), "route": list(routes.values())})


def test_below_chance_tasks_routed_away_from_the_teacher_warn_but_do_not_block():
    test = _test_table(auc_high=0.55, f1_high=0.161, r2_high=-0.0009)  # the v2 failure of the default run
    table = tl.sanity(test, _routing(churn_signal="distil", nba_primary="hard_label", product_stability="rule"),
                      [BIN, MC, REG])
    assert table["passed"].all()
    assert table.filter(pl.col("weak"))["task"].to_list() == ["nba_primary", "product_stability"]
    mc = table.filter(pl.col("task") == "nba_primary").row(0, named=True)
    assert (mc["log_loss"], mc["prior_log_loss"], mc["f1_macro_prior_corrected"]) == (1.9, 1.7, 0.2)
    assert "hard_label" in mc["reason"]


def test_a_distilled_task_below_chance_blocks():
    test = _test_table(auc_high=0.49, f1_high=0.3, r2_high=0.1)
    table = tl.sanity(test, _routing(churn_signal="distil", nba_primary="distil", product_stability="distil"), [BIN, MC, REG])
    assert table.filter(~pl.col("passed"))["task"].to_list() == ["churn_signal"]
    assert not table["weak"].any()


def test_a_nan_metric_blocks_whatever_the_route():
    test = _test_table(auc_high=math.nan, f1_high=0.3, r2_high=0.1)
    table = tl.sanity(test, _routing(churn_signal="rule", nba_primary="distil", product_stability="distil"), [BIN, MC, REG])
    row = table.filter(pl.col("task") == "churn_signal").row(0, named=True)
    assert not row["passed"] and row["reason"] == "metric is NaN"


def test_prior_corrected_decisions_recover_a_minority_class_that_argmax_never_picks():
    rng = np.random.default_rng(0)
    y = rng.choice(3, size=6000, p=[0.8, 0.15, 0.05]).astype(float)
    # a calibrated-looking model that raises the true class a little but never above the majority
    pred = np.tile([0.8, 0.15, 0.05], (len(y), 1))
    pred[np.arange(len(y)), y.astype(int)] *= 1.6
    pred /= pred.sum(1, keepdims=True)
    m = task_metrics(TaskSpec("t", "multiclass", 3, "g"), y, pred, priors=np.array([0.8, 0.15, 0.05]))
    assert m["f1_macro"] == pytest.approx(np.mean([2 * 0.8 / 1.8, 0, 0]), abs=0.01)  # argmax: always class 0
    assert m["f1_macro_prior_corrected"] > m["f1_macro"] + 0.3
    assert m["log_loss"] < m["prior_log_loss"]  # informative model beats the prior
    constant = task_metrics(TaskSpec("t", "multiclass", 3, "g"), y, np.tile([0.8, 0.15, 0.05], (len(y), 1)),
                            priors=np.array([0.8, 0.15, 0.05]))
    assert constant["log_loss"] == pytest.approx(constant["prior_log_loss"])


def test_class_priors_are_smoothed_shares_of_the_labelled_rows():
    pri = class_priors(np.array([0, 0, 1, np.nan]), 3)
    assert pri == pytest.approx([3 / 6, 2 / 6, 1 / 6])
