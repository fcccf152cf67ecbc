"""Distilled students: the objective is the gradient of its loss, students track their teacher,
Platt calibration, reason codes, verified model files and refused inputs."""

import dataclasses
import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import r2_score, roc_auc_score

from finai_assets.lib import student_model as st
from finai_assets.lib.ple.tasks import TaskSpec

BINARY, MULTI, REG = TaskSpec("churn", "binary"), TaskSpec("segment", "multiclass", classes=3), TaskSpec("spend", "regression")
CONFIG = st.StudentConfig(max_rounds=300)
SPLITS = {"train": (0, 3000), "val": (3000, 4000), "calib": (4000, 6000), "test": (6000, 8000)}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _problem(n: int = 8000, seed: int = 0):
    """Features, hard labels (~10 % null) and a teacher that knows the true score up to noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    noise = rng.normal(size=(n, 3))
    logit = 1.5 * X[:, 0] + X[:, 1]
    scores = np.column_stack([X[:, 2], -X[:, 2] + X[:, 3], 0.5 * X[:, 3]]) * 2
    value = 2 * X[:, 4] + np.sin(2 * X[:, 5])
    hard = {
        "churn": (rng.random(n) < _sigmoid(logit)).astype(float),
        "segment": (rng.random(n)[:, None] > np.cumsum(_softmax(scores), 1)).sum(1).astype(float),
        "spend": value + 0.5 * noise[:, 0],
    }
    for y in hard.values():
        y[rng.random(n) < 0.1] = np.nan
    teacher = {
        "churn": _sigmoid(logit + 0.2 * noise[:, 1]),
        "segment": _softmax(scores + 0.2 * rng.normal(size=scores.shape)),
        "spend": value + 0.1 * noise[:, 2],
    }
    return X, hard, teacher


def _split(X, hard, teacher, task, name):
    a, b = SPLITS[name]
    return X[a:b], hard[task][a:b], teacher[task][a:b]


def _fit(spec, route, data=None, config=CONFIG):
    X, hard, teacher = data or _problem()
    tr, va, ca = (_split(X, hard, teacher, spec.name, s) for s in ("train", "val", "calib"))
    return st.fit_student(spec, route, *tr, *va, *ca[:2], config)


@pytest.fixture(scope="module")
def data():
    return _problem()


@pytest.fixture(scope="module")
def distilled(data):
    return {spec.name: _fit(spec, "distil", data) for spec in (BINARY, MULTI, REG)}


def _targets(spec, n, rng):
    if spec.type == "binary":
        return (rng.random(n) < 0.4).astype(float), rng.random(n), rng.normal(size=n) * 2
    if spec.type == "multiclass":
        return rng.integers(0, 3, n).astype(float), _softmax(rng.normal(size=(n, 3))), rng.normal(size=(n, 3)) * 2
    return rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)


@pytest.mark.parametrize("spec", [BINARY, MULTI, REG], ids=lambda s: s.type)
@pytest.mark.parametrize("alpha,temperature", [(0.3, 1.0), (0.7, 2.5), (0.0, 0.5), (1.0, 3.0)])
def test_objective_is_the_gradient_and_diagonal_hessian_of_the_loss(spec, alpha, temperature):
    n = 12
    y, soft, raw = _targets(spec, n, np.random.default_rng(1))
    grad, hess = st.distillation_objective(spec, y, soft, alpha, temperature)(raw, None)
    assert grad.shape == hess.shape == raw.shape

    def row_loss(r):  # the mean loss times n: d/d raw[i] is row i's gradient
        return n * st.distillation_loss(spec, r, y, soft, alpha, temperature)

    h = 1e-4
    flat = raw.reshape(n, -1)
    for i in range(n):
        for k in range(flat.shape[1]):
            step = np.zeros_like(flat)
            step[i, k] = h
            up, down = (flat + step).reshape(raw.shape), (flat - step).reshape(raw.shape)
            fd_grad = (row_loss(up) - row_loss(down)) / (2 * h)
            fd_hess = (row_loss(up) - 2 * row_loss(raw) + row_loss(down)) / h**2
            assert grad.reshape(n, -1)[i, k] == pytest.approx(fd_grad, abs=1e-6)
            assert hess.reshape(n, -1)[i, k] == pytest.approx(fd_hess, abs=1e-4)


@pytest.mark.parametrize("spec", [BINARY, MULTI, REG], ids=lambda s: s.type)
def test_alpha_one_is_the_hard_label_gradient_and_alpha_zero_the_soft_one(spec):
    y, soft, raw = _targets(spec, 50, np.random.default_rng(2))
    T = 2.0
    if spec.type == "regression":
        hard_grad, soft_grad = raw - y, raw - soft
    else:
        link = _sigmoid if spec.type == "binary" else _softmax
        target = y if spec.type == "binary" else np.eye(3)[y.astype(int)]
        hard_grad, soft_grad = link(raw) - target, T * (link(raw / T) - soft)  # T² · dBCE/df of σ(f/T)
    np.testing.assert_allclose(st.distillation_objective(spec, y, soft, 1.0, T)(raw, None)[0], hard_grad, atol=1e-12)
    np.testing.assert_allclose(st.distillation_objective(spec, y, soft, 0.0, T)(raw, None)[0], soft_grad, atol=1e-12)


@pytest.mark.parametrize("spec,builtin", [(BINARY, "binary"), (REG, "regression")], ids=["binary", "regression"])
def test_alpha_one_trains_the_same_booster_as_lightgbm_own_objective(spec, builtin, data):
    X, hard, teacher = data
    X_tr, y, soft = _split(X, hard, teacher, spec.name, "train")
    keep = ~np.isnan(y)
    base = {"learning_rate": 0.1, "num_leaves": 15, "deterministic": True, "force_row_wise": True, "num_threads": 1,
            "verbosity": -1, "boost_from_average": False}
    ours = lgb.train(base | {"objective": st.distillation_objective(spec, y[keep], soft[keep], 1.0, 1.0)}, lgb.Dataset(X_tr[keep], y[keep]), 30)
    theirs = lgb.train(base | {"objective": builtin}, lgb.Dataset(X_tr[keep], y[keep]), 30)
    np.testing.assert_allclose(ours.predict(X_tr, raw_score=True), theirs.predict(X_tr, raw_score=True), atol=1e-5)


def test_lightgbm_passes_multiclass_raw_scores_as_n_by_k_and_the_fit_lowers_the_loss(data):
    X, hard, teacher = data
    X_tr, y, soft = _split(X, hard, teacher, "segment", "train")
    keep = ~np.isnan(y)
    objective = st.distillation_objective(MULTI, y[keep], soft[keep], 0.3, 2.0)
    seen = []

    def spy(raw, dataset):
        seen.append(raw.shape)
        return objective(raw, dataset)

    booster = lgb.train({"objective": spy, "num_class": 3, "verbosity": -1, "num_threads": 1}, lgb.Dataset(X_tr[keep]), 20)
    assert set(seen) == {(int(keep.sum()), 3)}
    raw = booster.predict(X_tr[keep], raw_score=True)
    start = st.distillation_loss(MULTI, np.zeros_like(raw), y[keep], soft[keep], 0.3, 2.0)
    assert st.distillation_loss(MULTI, raw, y[keep], soft[keep], 0.3, 2.0) < 0.8 * start


def test_module_import_does_not_import_lightgbm():
    code = "import sys, finai_assets.lib.student_model; assert 'lightgbm' not in sys.modules, 'lightgbm imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_route_gives_its_kind_of_student(distilled, data):
    X, hard, _ = data
    X_te = X[slice(*SPLITS["test"])]
    for spec in (BINARY, MULTI, REG):
        student = distilled[spec.name]
        assert (student.route, student.task, student.model is not None) == ("distil", spec.name, True)
        assert 1 <= student.rounds < CONFIG.max_rounds  # early-stopped
        assert student.booster.num_trees() == student.rounds * spec.classes  # only the best iteration's trees are kept
        assert (student.platt is not None) == (spec.type == "binary") and student.rule is None
    hard_label = _fit(BINARY, "hard_label", data)
    assert hard_label.route == "hard_label" and hard_label.model is not None and hard_label.platt is not None
    assert roc_auc_score(*_labelled(hard["churn"][slice(*SPLITS["test"])], hard_label.predict(X_te))) > 0.75

    rules = {spec.name: _fit(spec, "rule", data) for spec in (BINARY, MULTI, REG)}
    train = {t: y[slice(*SPLITS["train"])] for t, y in hard.items()}
    assert all(r.model is None and r.platt is None and r.rounds == 0 for r in rules.values())
    np.testing.assert_allclose(rules["churn"].predict(X_te), np.nanmean(train["churn"]))
    frequencies = np.bincount(train["segment"][~np.isnan(train["segment"])].astype(int), minlength=3) / (~np.isnan(train["segment"])).sum()
    np.testing.assert_allclose(rules["segment"].predict(X_te), np.tile(frequencies, (len(X_te), 1)))
    np.testing.assert_allclose(rules["spend"].predict(X_te), np.nanmedian(train["spend"]))
    assert [r.rule["rule"] for r in rules.values()] == ["train positive rate", "train class frequencies", "train median"]
    with pytest.raises(ValueError, match="rule student has no contributing features"):
        rules["churn"].reason_codes(X_te, [f"f{i}" for i in range(6)], 2)


def _labelled(y, p):
    keep = ~np.isnan(y)
    return y[keep], p[keep]


def test_distilled_binary_student_ranks_like_its_teacher(distilled, data):
    X, hard, teacher = data
    X_te, y, p_teacher = _split(X, hard, teacher, "churn", "test")
    p_student = distilled["churn"].predict(X_te)
    assert p_student.shape == (len(X_te),) and ((p_student > 0) & (p_student < 1)).all()
    teacher_auc, student_auc = roc_auc_score(*_labelled(y, p_teacher)), roc_auc_score(*_labelled(y, p_student))
    assert student_auc > teacher_auc - 0.03
    assert spearmanr(p_student, p_teacher).statistic > 0.95


def test_distilled_multiclass_student_agrees_with_its_teacher(distilled, data):
    X, _, teacher = data
    X_te, q = X[slice(*SPLITS["test"])], teacher["segment"][slice(*SPLITS["test"])]
    p = distilled["segment"].predict(X_te)
    assert p.shape == (len(X_te), 3)
    np.testing.assert_allclose(p.sum(1), 1)
    assert (p.argmax(1) == q.argmax(1)).mean() > 0.9


def test_a_many_class_student_keeps_its_tree_budget_and_still_agrees(data):
    """K trees a round: a multiclass student gets at most max_trees trees, its rate raised to match."""
    config = dataclasses.replace(CONFIG, max_trees=60)
    assert st.boosting_budget(MULTI, config) == (20, pytest.approx(min(st.MAX_LEARNING_RATE, CONFIG.learning_rate * 300 / 20)))
    assert st.boosting_budget(BINARY, config) == (300, CONFIG.learning_rate)  # one tree a round: untouched
    student = _fit(MULTI, "distil", data, config)
    assert student.rounds <= 20 and student.booster.num_trees() <= 60
    X, _, teacher = data
    X_te, q = X[slice(*SPLITS["test"])], teacher["segment"][slice(*SPLITS["test"])]
    assert (student.predict(X_te).argmax(1) == q.argmax(1)).mean() > 0.85


def test_distilled_regression_student_tracks_its_teacher(distilled, data):
    X, _, teacher = data
    X_te, y_teacher = X[slice(*SPLITS["test"])], teacher["spend"][slice(*SPLITS["test"])]
    assert r2_score(y_teacher, distilled["spend"].predict(X_te)) > 0.95


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_alpha_weighs_the_hard_label_against_the_teacher(alpha, data):
    """Regression's optimum is α·y + (1−α)·ŷ: a teacher shifted by +3 shifts the student by (1−α)·3."""
    X, hard, teacher = data
    shifted = {**teacher, "spend": teacher["spend"] + 3}
    student = _fit(REG, "distil", (X, hard, shifted), st.StudentConfig(alpha=alpha))
    X_te, y_teacher = X[slice(*SPLITS["test"])], teacher["spend"][slice(*SPLITS["test"])]
    assert np.mean(student.predict(X_te) - y_teacher) == pytest.approx((1 - alpha) * 3, abs=0.1)


def _ece(y, p, bins: int = 10):
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return gap.sum() / count.sum()


def test_platt_recovers_a_known_logistic_calibration():
    rng = np.random.default_rng(3)
    raw = rng.normal(scale=2, size=20000)
    y = (rng.random(raw.size) < _sigmoid(0.6 * raw - 0.8)).astype(float)
    a, b = st.platt_scaling(raw, y)
    assert a == pytest.approx(0.6, abs=0.1) and b == pytest.approx(-0.8, abs=0.1)
    fresh = rng.normal(scale=2, size=20000)
    y_fresh = (rng.random(fresh.size) < _sigmoid(0.6 * fresh - 0.8)).astype(float)
    assert _ece(y_fresh, _sigmoid(a * fresh + b)) < 0.02
    assert _ece(y_fresh, _sigmoid(fresh)) > 0.1  # the uncalibrated score is off: the check can fail


def test_binary_student_platt_is_fitted_on_the_calib_rows(distilled, data):
    X, hard, teacher = data
    student = distilled["churn"]
    X_ca = X[slice(*SPLITS["calib"])]
    raw = student.raw_score(X_ca)
    rng = np.random.default_rng(4)
    y_ca = (rng.random(len(raw)) < _sigmoid(0.5 * raw + 0.7)).astype(float)
    tr, va = (_split(X, hard, teacher, "churn", s) for s in ("train", "val"))
    refit = st.fit_student(BINARY, "distil", *tr, *va, X_ca, y_ca, CONFIG)
    assert refit.model == student.model
    assert refit.platt == pytest.approx((0.5, 0.7), abs=0.15)
    assert _ece(y_ca, refit.predict(X_ca)) < 0.03


def test_a_one_class_calib_fold_is_refused(data):
    X, hard, teacher = data
    tr, va = (_split(X, hard, teacher, "churn", s) for s in ("train", "val"))
    with pytest.raises(ValueError, match="both classes in the calib rows"):
        st.fit_student(BINARY, "hard_label", *tr, *va, X[:100], np.zeros(100), CONFIG)


def test_reason_codes_name_the_feature_the_label_depends_on():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    y = (X[:, 3] > 0).astype(float)
    flip = rng.random(len(y)) < 0.05  # a little label noise
    y[flip] = 1 - y[flip]
    soft = _sigmoid(4 * X[:, 3])
    names = [f"f{i}" for i in range(6)]
    student = st.fit_student(BINARY, "distil", X[:2000], y[:2000], soft[:2000], X[2000:2500], y[2000:2500], soft[2000:2500],
                             X[2500:], y[2500:], CONFIG)
    codes = student.reason_codes(X[2500:], names, 2)
    assert codes.columns == ["reason_1", "reason_2", "contribution_1", "contribution_2"]
    assert (codes["reason_1"] == "f3").mean() > 0.95
    assert (codes["contribution_1"].abs() >= codes["contribution_2"].abs()).all()


@pytest.mark.parametrize("task", ["churn", "segment", "spend"])
def test_reason_codes_are_contributions_that_add_up_and_chunking_changes_nothing(task, distilled, data):
    student = distilled[task]
    X_te = data[0][slice(*SPLITS["test"])][:300]
    names = [f"f{i}" for i in range(6)]
    codes = student.reason_codes(X_te, names, 6)
    contrib = student.booster.predict(X_te, pred_contrib=True).reshape(len(X_te), student.classes, 7)
    raw = student.raw_score(X_te).reshape(len(X_te), -1)
    predicted = raw.argmax(1)
    bias = contrib[np.arange(len(X_te)), predicted, 6]
    init = np.asarray(student.init)[predicted if student.type == "multiclass" else 0]  # where boosting started
    total = codes.select([f"contribution_{j}" for j in range(1, 7)]).to_numpy().sum(1)
    np.testing.assert_allclose(total + bias + init, raw[np.arange(len(X_te)), predicted], atol=1e-6)
    top = codes.select([f"contribution_{j}" for j in range(1, 7)]).to_numpy()
    assert (np.abs(top[:, :-1]) >= np.abs(top[:, 1:])).all()
    assert codes.equals(student.reason_codes(X_te, names, 6, chunk_rows=7))
    assert student.reason_codes(X_te, names, 2, chunk_rows=1).equals(student.reason_codes(X_te, names, 2))


def test_reason_codes_refuse_a_wrong_feature_list_or_k(distilled, data):
    X_te = data[0][:10]
    with pytest.raises(ValueError, match="has 6 features, got 5 names"):
        distilled["churn"].reason_codes(X_te, [f"f{i}" for i in range(5)], 2)
    with pytest.raises(ValueError, match=r"k must be in \[1, 6\]"):
        distilled["churn"].reason_codes(X_te, [f"f{i}" for i in range(6)], 7)


def test_saved_model_round_trips_and_a_tampered_file_is_refused(distilled, data, tmp_path):
    student = distilled["segment"]
    path, sha = st.save_student(student, tmp_path)
    assert path.name == f"student-segment-{sha[:16]}.txt"
    reloaded = st.Student(student.task, student.type, student.classes, student.route,
                          st.load_booster_text(path, sha), student.rounds, student.platt, student.rule, student.init)
    X_te = data[0][slice(*SPLITS["test"])]
    np.testing.assert_array_equal(reloaded.predict(X_te), student.predict(X_te))

    with pytest.raises(st.StudentIntegrityError, match="refused: sha256 mismatch.*rematerialize distilled_students"):
        st.load_booster_text(path, "0" * 64)
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 1
    path.write_bytes(bytes(tampered))
    with pytest.raises(st.StudentIntegrityError, match="sha256 mismatch"):
        st.load_booster_text(path, sha)
    path.unlink()
    with pytest.raises(st.StudentIntegrityError, match="does not exist"):
        st.load_booster_text(path, sha)


def test_two_students_never_overwrite_each_other(distilled, tmp_path):
    first, first_sha = st.save_student(distilled["churn"], tmp_path)
    other = dataclasses.replace(distilled["churn"], model=distilled["spend"].model)
    second, second_sha = st.save_student(other, tmp_path)
    assert first != second and first_sha != second_sha
    assert st.load_booster_text(first, first_sha) == distilled["churn"].model
    assert st.load_booster_text(second, second_sha) == distilled["spend"].model
    with pytest.raises(ValueError, match="rule student has no model file"):
        st.save_student(st.Student("x", "binary", 1, "rule", None, 0, None, {"rule": "train positive rate", "prediction": 0.2}, None), tmp_path)


def test_bad_soft_labels_are_refused_by_name(data):
    X, hard, teacher = data
    tr, va, ca = (list(_split(X, hard, teacher, "churn", s)) for s in ("train", "val", "calib"))
    labelled_row = int(np.flatnonzero(~np.isnan(tr[1]))[0])
    nan_soft = tr[2].copy()
    nan_soft[labelled_row] = np.nan
    with pytest.raises(ValueError, match="1 labelled rows have a NaN or infinite soft label"):
        st.fit_student(BINARY, "distil", tr[0], tr[1], nan_soft, *va, *ca[:2], CONFIG)
    unlabelled_row = int(np.flatnonzero(np.isnan(tr[1]))[0])
    nan_soft = tr[2].copy()
    nan_soft[unlabelled_row] = np.nan  # a row the student does not train on: fine
    st.fit_student(BINARY, "distil", tr[0], tr[1], nan_soft, *va, *ca[:2], st.StudentConfig(max_rounds=5))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*not its logits"):
        st.fit_student(BINARY, "distil", tr[0], tr[1], tr[2] * 2 - 0.5, *va, *ca[:2], CONFIG)
    y, q, _ = _targets(MULTI, 20, np.random.default_rng(6))
    with pytest.raises(ValueError, match="do not sum to 1"):
        st.distillation_objective(MULTI, y, q * 0.9, 0.3, 1.0)
    with pytest.raises(ValueError, match="soft labels have shape"):
        st.distillation_objective(MULTI, y, q[:, :2], 0.3, 1.0)


def test_bad_inputs_are_refused_by_name(data):
    X, hard, teacher = data
    tr, va, ca = (list(_split(X, hard, teacher, "churn", s)) for s in ("train", "val", "calib"))
    with pytest.raises(ValueError, match="train rows disagree in length"):
        st.fit_student(BINARY, "distil", tr[0], tr[1][:-1], tr[2], *va, *ca[:2], CONFIG)
    with pytest.raises(ValueError, match="val rows disagree in length"):
        st.fit_student(BINARY, "hard_label", *tr, va[0][:-3], va[1], None, *ca[:2], CONFIG)
    with pytest.raises(ValueError, match="unknown route 'distill'"):
        st.fit_student(BINARY, "distill", *tr, *va, *ca[:2], CONFIG)
    with pytest.raises(ValueError, match="binary train labels must be 0, 1 or null"):
        st.fit_student(BINARY, "rule", tr[0], tr[1] * 2, None, *va, *ca[:2], CONFIG)
    with pytest.raises(ValueError, match="needs soft labels"):
        st.fit_student(BINARY, "distil", tr[0], tr[1], None, *va, *ca[:2], CONFIG)
    with pytest.raises(ValueError, match="null hard labels; pass only the labelled rows"):
        st.distillation_objective(BINARY, tr[1], tr[2], 0.3, 1.0)
    with pytest.raises(ValueError, match=r"alpha \(the hard-label weight\) must be in \[0, 1\]"):
        st.StudentConfig(alpha=1.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        st.StudentConfig(temperature=0)
    with pytest.raises(ValueError, match="num_leaves must be >= 2, got 1; max_rounds must be >= 1, got 0"):
        st.StudentConfig(num_leaves=1, max_rounds=0)
