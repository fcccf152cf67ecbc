"""The fidelity gate on constructed teachers and students (lib.fidelity)."""

import numpy as np
import pytest

from finai_assets.lib import fidelity as fid
from finai_assets.lib.ple.tasks import TaskSpec

BINARY, MULTI, REG = TaskSpec("b", "binary"), TaskSpec("m", "multiclass", 4), TaskSpec("r", "regression")
N = 4000


def _binary_world(seed: int = 0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=N)
    truth = 1 / (1 + np.exp(-(2 * signal - 1)))
    y = (rng.random(N) < truth).astype(float)
    return y, truth, signal


def _tables(spec, y, student, teacher, route="distil", th=fid.FidelityThresholds()):
    return fid.fidelity_tables([spec], {spec.name: route}, {spec.name: y}, {spec.name: student}, {spec.name: teacher}, th)


def test_a_student_better_than_its_teacher_passes_tier1():
    y, truth, signal = _binary_world()
    rng = np.random.default_rng(1)
    teacher = 1 / (1 + np.exp(-(2 * (signal + rng.normal(scale=1.5, size=N)) - 1)))  # a noisy teacher
    tables = _tables(BINARY, y, truth, teacher)
    auc = tables["tier1"].filter(criterion="auc_gap").row(0, named=True)
    assert auc["student"] > auc["teacher"] + 0.05 and auc["gap"] < 0 and auc["passed"]
    assert tables["summary"]["verdict"].to_list() == ["pass"]
    # the same gap the other way round fails: the check is one-sided, not |gap|
    worse = _tables(BINARY, y, teacher, truth)["tier1"].filter(criterion="auc_gap").row(0, named=True)
    assert worse["gap"] > 0.05 and not worse["passed"]


def test_a_constant_student_fails_the_guard_whatever_its_gaps():
    y, truth, _ = _binary_world()
    rng = np.random.default_rng(2)
    teacher = np.full(N, y.mean()) + rng.normal(scale=1e-3, size=N)  # a near-constant teacher
    student = np.full(N, y.mean())
    tables = _tables(BINARY, y, student, teacher)
    assert tables["guard"]["passed"].to_list() == [False]
    summary = tables["summary"].row(0, named=True)
    assert summary["verdict"] == "fail" and "constant_student_guard" in summary["reason"]
    # a faithful, varying student passes the guard
    assert _tables(BINARY, y, truth, truth)["guard"]["passed"].to_list() == [True]


def test_an_uncalibrated_student_fails_on_ece_even_with_the_teachers_ranking():
    y, truth, _ = _binary_world()
    squashed = 0.5 + (truth - 0.5) * 0.2  # same order, probabilities pulled towards 0.5
    tables = _tables(BINARY, y, squashed, truth)
    rows = {r["criterion"]: r for r in tables["tier1"].iter_rows(named=True)}
    assert rows["auc_gap"]["passed"] and abs(rows["auc_gap"]["gap"]) < 1e-12
    assert rows["student_ece"]["student"] > 0.05 and not rows["student_ece"]["passed"]
    assert abs(fid.expected_calibration_error(y, truth)) < 0.03


def test_ece_by_hand():
    y = np.array([0, 1, 1, 0, 1.0])
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55])
    # bins: [0,.1): p .05,.05 y 0,1 -> |0.05-0.5|*2 ; [.5,.6): |.55-1| ; [.9,1]: |.95-.5|*2
    want = (2 * 0.45 + 0.45 + 2 * 0.45) / 5
    assert fid.expected_calibration_error(y, p) == pytest.approx(want)


def test_multiclass_and_regression_gaps_are_one_sided_and_relative():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, N).astype(float)
    good = np.full((N, 4), 0.1)
    good[np.arange(N), y.astype(int)] = 0.7
    noisy = rng.dirichlet(np.ones(4), N)
    assert _tables(MULTI, y, good, noisy)["summary"]["verdict"].to_list() == ["pass"]
    assert _tables(MULTI, y, noisy, good)["summary"]["verdict"].to_list() == ["fail"]

    target = rng.normal(size=N)
    teacher = target + rng.normal(scale=0.5, size=N)
    student = target + rng.normal(scale=0.5 * 1.04, size=N)  # MAE about 4 % worse
    rows = {r["criterion"]: r for r in _tables(REG, target, student, teacher)["tier1"].iter_rows(named=True)}
    assert rows["mae_gap_relative"]["gap"] == pytest.approx((rows["mae_gap_relative"]["student"] - rows["mae_gap_relative"]["teacher"]) / rows["mae_gap_relative"]["teacher"])
    assert 0 < rows["mae_gap_relative"]["gap"] < 0.05 and rows["mae_gap_relative"]["passed"]
    much_worse = target + rng.normal(scale=0.8, size=N)
    assert _tables(REG, target, much_worse, teacher)["summary"]["verdict"].to_list() == ["fail"]


def test_only_distilled_tasks_are_judged():
    y, truth, _ = _binary_world()
    tables = _tables(BINARY, y, np.full(N, 0.3), truth, route="hard_label")
    assert tables["tier1"].is_empty() and tables["guard"].is_empty()
    assert tables["summary"].row(0, named=True)["verdict"] == "not_judged"
    with pytest.raises(ValueError, match="no routing decision"):
        fid.fidelity_tables([BINARY], {}, {"b": y}, {"b": truth}, {"b": truth})


def test_tier2_agreement_rank_and_jsd():
    y, truth, _ = _binary_world()
    t2 = _tables(BINARY, y, truth, truth)["tier2"].row(0, named=True)
    assert t2["agreement"] == 1 and t2["top_k_agreement"] == 1 and t2["rank_correlation"] == pytest.approx(1) and t2["jsd"] == pytest.approx(0, abs=1e-9)
    flipped = _tables(BINARY, y, 1 - truth, truth)["tier2"].row(0, named=True)
    assert flipped["rank_correlation"] == pytest.approx(-1) and flipped["top_k_agreement"] == 0 and flipped["jsd"] > 0.05


def test_mismatched_rows_are_an_error():
    y, truth, _ = _binary_world()
    with pytest.raises(ValueError, match="same test rows"):
        _tables(BINARY, y, truth[:-1], truth)
