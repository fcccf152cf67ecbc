"""One distilled student per task: LightGBM on the teacher's soft labels.

One student per task, on the rows whose hard label is not null (the teacher's loss population),
by the route `teacher.routing_decisions` chose:
- "distil": LightGBM with a Hinton-form custom objective, grad = α·grad_hard + (1−α)·T²·grad_soft
  (binary: BCE on σ(f) and σ(f/T); multiclass: softmax cross-entropy; regression: MSE, no T²),
  early-stopped on the same loss over the validation rows;
- "hard_label": LightGBM on the hard labels with the standard objective, early-stopped on val;
- "rule": no model, the train prior (see `fit_student`).
Binary model students are Platt-calibrated on the calib rows. A student's model is LightGBM text,
saved content-addressed with its sha256; loading trusts only the hash the caller recorded.
lightgbm is imported inside the functions that need it.

LightGBM 4.x custom-objective convention: the objective and `feval` receive raw scores, [N] for
one output and [N, K] for multiclass, and the objective returns grad and hess of the same shape.
A distilled student's boosting starts from the prior of its blended target (`Student.init`:
binary logit, multiclass log class shares, regression mean), which LightGBM does not store in
the model text, so it is kept beside it and added back by `raw_score`. Starting from 0 instead
cost a 50-class student ~500 rounds just to learn the class prior (a 90 MB model).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from finai_assets.lib.ple.tasks import TaskSpec, TaskType
from finai_assets.lib.storage import atomic_write_bytes

ROUTES = ("distil", "hard_label", "rule")
FIX = "rematerialize distilled_students"
PROB_TOL = 1e-4  # a teacher class-probability row must sum to 1 within this
CONTRIB_CHUNK_BYTES = 200 * 2**20  # pred_contrib memory per chunk of rows
MAX_LEARNING_RATE = 0.3


class StudentIntegrityError(ValueError):
    """A student model file that must not be used: missing, or not the bytes whose hash was recorded."""


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    alpha: float = 0.3  # hard-label weight; 1 − alpha on the teacher's soft label
    temperature: float = 1.0
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    max_rounds: int = 500
    early_stopping: int = 30
    # A multiclass student grows K trees a round; it gets at most max_trees trees (rounds <=
    # max_trees / K) and a learning rate raised to keep rounds x rate (capped at MAX_LEARNING_RATE).
    max_trees: int = 2500
    seed: int = 0
    threads: int = 1
    reason_codes: int = 3  # top contributing features kept per prediction

    def __post_init__(self) -> None:
        _check_alpha_temperature(self.alpha, self.temperature)
        minimum = {"num_leaves": 2, "min_child_samples": 1, "max_rounds": 1, "early_stopping": 1, "threads": 1, "reason_codes": 1,
                   "max_trees": 1}
        broken = [f"{name} must be >= {low}, got {getattr(self, name)}" for name, low in minimum.items() if getattr(self, name) < low]
        if not self.learning_rate > 0:
            broken.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if broken:
            raise ValueError(f"StudentConfig: {'; '.join(broken)}")


def _check_alpha_temperature(alpha: float, temperature: float) -> None:
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha (the hard-label weight) must be in [0, 1], got {alpha}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


# --- the distillation loss and its LightGBM objective -------------------------------------------

def distillation_loss(spec: TaskSpec, raw: np.ndarray, y_hard: np.ndarray, soft: np.ndarray, alpha: float,
                      temperature: float) -> float:
    """Mean over rows of the loss whose per-row gradient `distillation_objective` returns:
    binary α·BCE(y, σ(f)) + (1−α)·T²·BCE(p, σ(f/T)); multiclass the same with softmax
    cross-entropy; regression ½α(f−y)² + ½(1−α)(f−ŷ). The soft terms are cross-entropies (the
    teacher's entropy, constant in f, is left out)."""
    y_hard, soft = _checked_targets(spec, y_hard, soft)
    _check_alpha_temperature(alpha, temperature)
    raw, T = _checked_raw(spec, raw, len(y_hard)), temperature
    if spec.type == "regression":
        return float(np.mean(0.5 * alpha * (raw - y_hard) ** 2 + 0.5 * (1 - alpha) * (raw - soft) ** 2))
    if spec.type == "binary":
        hard = np.logaddexp(0, raw) - y_hard * raw
        soft_term = np.logaddexp(0, raw / T) - soft * raw / T
    else:
        hard = _logsumexp(raw) - np.take_along_axis(raw, y_hard.astype(np.int64)[:, None], 1)[:, 0]
        soft_term = _logsumexp(raw / T) - (soft * raw / T).sum(1)
    return float(np.mean(alpha * hard + (1 - alpha) * T**2 * soft_term))


def distillation_objective(spec: TaskSpec, y_hard: np.ndarray, soft: np.ndarray, alpha: float,
                           temperature: float) -> Callable[[np.ndarray, object], tuple[np.ndarray, np.ndarray]]:
    """LightGBM custom objective `(raw, dataset) -> (grad, hess)` of `distillation_loss` (per row,
    diagonal Hessian for multiclass): α·(link(f) − y) + (1−α)·T·(link(f/T) − soft), Hessian
    α·link(f)(1−link(f)) + (1−α)·link(f/T)(1−link(f/T)); regression α(f−y) + (1−α)(f−ŷ), Hessian 1.
    `y_hard` and `soft` are the training rows, all labelled."""
    y_hard, soft = _checked_targets(spec, y_hard, soft)
    _check_alpha_temperature(alpha, temperature)
    T = temperature

    def objective(raw: np.ndarray, dataset: object) -> tuple[np.ndarray, np.ndarray]:
        raw = _checked_raw(spec, raw, len(y_hard))
        if spec.type == "regression":
            return alpha * (raw - y_hard) + (1 - alpha) * (raw - soft), np.ones_like(raw)
        link = _sigmoid if spec.type == "binary" else _softmax
        target = y_hard if spec.type == "binary" else np.eye(spec.classes)[y_hard.astype(np.int64)]
        p_hard, p_soft = link(raw), link(raw / T)
        grad = alpha * (p_hard - target) + (1 - alpha) * T * (p_soft - soft)
        hess = alpha * p_hard * (1 - p_hard) + (1 - alpha) * p_soft * (1 - p_soft)
        return grad, hess

    return objective


def _checked_raw(spec: TaskSpec, raw: np.ndarray, n: int) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    want = (n, spec.classes) if spec.type == "multiclass" else (n,)
    if raw.shape != want:
        raise ValueError(f"task {spec.name!r}: raw scores have shape {raw.shape}, expected {want} (one per labelled row)")
    return raw


def _checked_targets(spec: TaskSpec, y_hard: np.ndarray, soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hard labels (all non-null) and the teacher's soft labels of the same rows, validated."""
    y_hard = _checked_hard(spec, y_hard, "hard labels")
    if np.isnan(y_hard).any():
        raise ValueError(f"task {spec.name!r}: {int(np.isnan(y_hard).sum())} null hard labels; pass only the labelled rows")
    soft = np.asarray(soft, dtype=np.float64)
    want = (len(y_hard), spec.classes) if spec.type == "multiclass" else (len(y_hard),)
    if soft.shape != want:
        raise ValueError(f"task {spec.name!r}: soft labels have shape {soft.shape}, expected {want} (one per labelled row)")
    bad_rows = ~np.isfinite(soft).reshape(len(soft), -1).all(1)
    if bad_rows.any():
        raise ValueError(f"task {spec.name!r}: {int(bad_rows.sum())} labelled rows have a NaN or infinite soft label; "
                         "the teacher's predictions must cover every labelled row: rematerialize teacher_predictions")
    if spec.type != "regression" and ((soft < 0) | (soft > 1)).any():
        raise ValueError(f"task {spec.name!r}: soft labels are probabilities and must lie in [0, 1], found "
                         f"[{soft.min():.4g}, {soft.max():.4g}]; pass the teacher's probabilities, not its logits")
    if spec.type == "multiclass":
        off = np.abs(soft.sum(1) - 1) > PROB_TOL
        if off.any():
            raise ValueError(f"task {spec.name!r}: {int(off.sum())} rows of teacher class probabilities do not sum to 1 "
                             f"(within {PROB_TOL}); pass the softmax of the teacher's {spec.classes} class scores")
    return y_hard, soft


def _checked_hard(spec: TaskSpec, y: np.ndarray, what: str) -> np.ndarray:
    """A label vector (NaN = null): binary 0/1, multiclass class indices, regression finite."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"task {spec.name!r}: {what} must be one value per row, got shape {y.shape}")
    k = y[~np.isnan(y)]
    if spec.type == "binary" and not np.isin(k, (0.0, 1.0)).all():
        raise ValueError(f"task {spec.name!r}: binary {what} must be 0, 1 or null")
    if spec.type == "multiclass" and ((k != np.round(k)) | (k < 0) | (k >= spec.classes)).any():
        raise ValueError(f"task {spec.name!r}: multiclass {what} must be class indices in [0, {spec.classes}) or null")
    if spec.type == "regression" and not np.isfinite(k).all():
        raise ValueError(f"task {spec.name!r}: regression {what} must be finite or null (NaN)")
    return y


# --- students --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Student:
    """One task's student. `model` is LightGBM model text (None for a rule); `rounds` its boosting
    rounds (the best iteration); `platt` (a, b) with P(y=1) = σ(a·raw + b) for binary model
    students; `rule` the prior a rule student predicts (see `fit_student`)."""

    task: str
    type: TaskType
    classes: int
    route: str
    model: str | None
    rounds: int
    platt: tuple[float, float] | None
    rule: dict | None
    init: list[float] | None  # the raw score boosting started from (one per class for multiclass); None: 0

    @functools.cached_property
    def booster(self):
        import lightgbm as lgb

        if self.model is None:
            raise ValueError(f"task {self.task!r}: a rule student has no model; use predict()")
        return lgb.Booster(model_str=self.model)

    @functools.cached_property
    def class_boosters(self) -> list:
        """Multiclass: one single-output booster per class holding that class's trees (the model
        text's tree k, k + K, k + 2K, ...), so a class's contributions cost 1/K of the full model's."""
        import lightgbm as lgb

        start, end = self.model.index("\nTree=0\n") + 1, self.model.index("\nend of trees")
        header, body, tail = self.model[:start], self.model[start:end], self.model[end:]
        for key, value in (("num_class", "1"), ("num_tree_per_iteration", "1"), ("objective", "regression")):
            header = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", header)
        header = re.sub(r"(?m)^tree_sizes=.*\n", "", header)  # sizes of the full model's trees; optional
        trees = re.split(r"(?m)^Tree=\d+\n", body)[1:]
        return [lgb.Booster(model_str=header + "".join(f"Tree={j}\n{t}" for j, t in enumerate(trees[k::self.classes])) + tail)
                for k in range(self.classes)]

    def raw_score(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        """The student's raw score, init included: [N] for one output, [N, K] for multiclass.
        `threads`: LightGBM's prediction threads (0: OpenMP's default)."""
        raw = np.asarray(self.booster.predict(X, raw_score=True, num_threads=threads))
        if self.init is None:
            return raw
        init = np.asarray(self.init)
        return raw + (init if self.type == "multiclass" else init[0])

    def predict(self, X: np.ndarray, threads: int = 0) -> np.ndarray:
        """binary -> calibrated P(y = 1) [N]; multiclass -> class probabilities [N, K]; regression -> value [N]."""
        if self.rule is not None:
            prior = np.asarray(self.rule["prediction"], dtype=np.float64)
            return np.broadcast_to(prior, (len(X), *prior.shape)).copy()
        raw = self.raw_score(X, threads)
        if self.type == "binary":
            if self.platt is None:
                raise ValueError(f"task {self.task!r}: a binary model student needs its Platt (a, b); {FIX}")
            a, b = self.platt
            return _sigmoid(a * raw + b)
        return _softmax(raw) if self.type == "multiclass" else raw

    def reason_codes(self, X: np.ndarray, feature_names: list[str], k: int, chunk_rows: int | None = None,
                     threads: int = 0) -> pl.DataFrame:
        """Per row, the k features with the largest absolute LightGBM `pred_contrib` contribution
        to the raw score (multiclass: to the predicted class's raw score, from that class's trees
        alone), largest first: `reason_1..k` (feature names) and `contribution_1..k`. Computed in
        chunks of rows so one chunk's contributions stay within ~200 MB."""
        if self.model is None:
            raise ValueError(f"task {self.task!r}: a rule student has no contributing features; reason codes exist only for model students")
        n_features = self.booster.num_feature()
        if len(feature_names) != n_features or X.shape[1] != n_features:
            raise ValueError(f"task {self.task!r}: the student has {n_features} features, got {len(feature_names)} names "
                             f"and {X.shape[1]} columns; pass the feature columns it was trained on")
        if not 1 <= k <= n_features:
            raise ValueError(f"task {self.task!r}: k must be in [1, {n_features}], got {k}")
        chunk_rows = chunk_rows or max(1, CONTRIB_CHUNK_BYTES // (8 * (n_features + 1)))
        if self.type == "multiclass":  # explain the predicted class with that class's trees only
            predicted = self.raw_score(X, threads).argmax(1)
            models = [(self.class_boosters[c], np.flatnonzero(predicted == c)) for c in range(self.classes)]
        else:
            models = [(self.booster, np.arange(len(X)))]
        top = np.empty((len(X), k), dtype=np.int64)
        value = np.empty((len(X), k), dtype=np.float64)
        for booster, rows in models:
            for start in range(0, len(rows), chunk_rows):
                chunk = rows[start:start + chunk_rows]
                contrib = np.asarray(booster.predict(X[chunk], pred_contrib=True, num_threads=threads))[:, :n_features]  # the last column is the bias
                best = np.argpartition(-np.abs(contrib), k - 1, axis=1)[:, :k]
                order = np.argsort(-np.abs(np.take_along_axis(contrib, best, 1)), axis=1, kind="stable")
                top[chunk] = np.take_along_axis(best, order, 1)
                value[chunk] = np.take_along_axis(contrib, top[chunk], 1)
        names = np.asarray(feature_names, dtype=object)
        return pl.DataFrame(
            [pl.Series(f"reason_{j + 1}", names[top[:, j]], dtype=pl.Utf8) for j in range(k)]
            + [pl.Series(f"contribution_{j + 1}", value[:, j]) for j in range(k)]
        )


def fit_student(spec: TaskSpec, route: str, X_train: np.ndarray, y_train: np.ndarray, soft_train: np.ndarray | None,
                X_val: np.ndarray, y_val: np.ndarray, soft_val: np.ndarray | None,
                X_calib: np.ndarray | None, y_calib: np.ndarray | None, config: StudentConfig) -> Student:
    """The task's student by `route`, on the labelled rows of each split (labels NaN = null).

    - "distil": LightGBM with `distillation_objective` (α, T of the config), early-stopped on
      `distillation_loss` over the labelled validation rows; needs the soft labels.
    - "hard_label": LightGBM on the hard labels with the standard objective, early-stopped on val.
    - "rule": no model; the documented prior of the train rows: binary the positive rate,
      multiclass the class frequencies, regression the median. Its `rule` records which and the
      prediction it serves to every row.
    Binary model students get Platt calibration on the labelled calib rows (`platt_scaling`); the
    test split is never an argument. Soft labels of routes that do not use them are ignored.
    """
    if route not in ROUTES:
        raise ValueError(f"task {spec.name!r}: unknown route {route!r}; the route must be one of {ROUTES}")
    y_train = _checked_hard(spec, y_train, "train labels")
    labelled = ~np.isnan(y_train)
    if not labelled.any():
        raise ValueError(f"task {spec.name!r}: no labelled train rows; a student needs some")
    if route == "rule":
        return Student(spec.name, spec.type, spec.classes, route, None, 0, None, _prior_rule(spec, y_train[labelled]), None)

    if route == "distil" and (soft_train is None or soft_val is None):
        raise ValueError(f"task {spec.name!r}: the distil route needs soft labels for train and val; pass the teacher's predictions")
    train = _labelled_rows(spec, "train", X_train, y_train, soft_train if route == "distil" else None)
    val = _labelled_rows(spec, "val", X_val, y_val, soft_val if route == "distil" else None)
    booster, init = _fit_distilled(spec, train, val, config) if route == "distil" else (_fit_hard_label(spec, train, val, config), None)
    student = Student(spec.name, spec.type, spec.classes, route, booster.model_to_string(num_iteration=booster.best_iteration),
                      booster.best_iteration, None, None, init)
    if spec.type == "binary":
        if X_calib is None or y_calib is None:
            raise ValueError(f"task {spec.name!r}: a binary student needs the calib rows for Platt calibration")
        X_ca, y_ca, _ = _labelled_rows(spec, "calib", X_calib, y_calib, None)
        student.platt = platt_scaling(student.raw_score(X_ca, config.threads), y_ca)
    return student


def _labelled_rows(spec: TaskSpec, split: str, X: np.ndarray, y: np.ndarray, soft: np.ndarray | None):
    """(X, y, soft) of the split's rows with a hard label; soft validated there when given."""
    y = _checked_hard(spec, y, f"{split} labels")
    lengths = {"X": len(X), "labels": len(y)} | ({} if soft is None else {"soft labels": len(soft)})
    if len(set(lengths.values())) != 1:
        raise ValueError(f"task {spec.name!r}: {split} rows disagree in length ({lengths}); pass aligned arrays of one split")
    keep = ~np.isnan(y)
    if not keep.any():
        raise ValueError(f"task {spec.name!r}: no labelled {split} rows; every split a student uses needs some")
    if soft is None:
        return X[keep], y[keep], None
    return (X[keep], *_checked_targets(spec, y[keep], np.asarray(soft)[keep]))


def boosting_budget(spec: TaskSpec, config: StudentConfig) -> tuple[int, float]:
    """(max rounds, learning rate): the config's, except for a multiclass task whose K trees per
    round would pass `max_trees`: rounds drop to max_trees // K and the rate rises by the same
    factor (rounds x rate kept, at most MAX_LEARNING_RATE). A 50-class student at 500 rounds was
    25,000 trees, a 90 MB model that took 70 s to score 20,000 rows."""
    if spec.type != "multiclass":
        return config.max_rounds, config.learning_rate
    rounds = max(1, min(config.max_rounds, config.max_trees // spec.classes))
    raised = min(MAX_LEARNING_RATE, config.learning_rate * config.max_rounds / rounds)
    return rounds, max(config.learning_rate, raised)


def _lightgbm_params(spec: TaskSpec, config: StudentConfig) -> dict:
    params = {
        "learning_rate": boosting_budget(spec, config)[1],
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "seed": config.seed,
        "num_threads": config.threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    if spec.type == "multiclass":
        params["num_class"] = spec.classes
    return params


def distillation_init(spec: TaskSpec, y_hard: np.ndarray, soft: np.ndarray, alpha: float) -> list[float]:
    """The raw score of the blended target's prior, alpha * hard + (1 - alpha) * soft, over the
    training rows: binary its logit, multiclass the log class shares, regression the mean."""
    if spec.type == "binary":
        rate = np.clip(alpha * y_hard.mean() + (1 - alpha) * soft.mean(), 1e-6, 1 - 1e-6)
        return [float(np.log(rate / (1 - rate)))]
    if spec.type == "multiclass":
        hard = np.bincount(y_hard.astype(np.int64), minlength=spec.classes) / len(y_hard)
        share = np.clip(alpha * hard + (1 - alpha) * soft.mean(0), 1e-6, None)
        return np.log(share / share.sum()).tolist()
    return [float(alpha * y_hard.mean() + (1 - alpha) * soft.mean())]


def _fit_distilled(spec: TaskSpec, train, val, config: StudentConfig):
    """(booster, init): LightGBM on the distillation objective, boosting from `distillation_init`."""
    import lightgbm as lgb

    (X_tr, y_tr, p_tr), (X_va, y_va, p_va) = train, val
    a, T = config.alpha, config.temperature
    params = _lightgbm_params(spec, config) | {"objective": distillation_objective(spec, y_tr, p_tr, a, T), "metric": "None"}
    init = distillation_init(spec, y_tr, p_tr, a)
    start = lambda n: np.tile(init, (n, 1)) if spec.type == "multiclass" else np.full(n, init[0])  # noqa: E731

    def val_loss(raw: np.ndarray, dataset: object) -> tuple[str, float, bool]:
        return "distillation_loss", distillation_loss(spec, raw, y_va, p_va, a, T), False

    # the objective and val_loss hold the targets; the label is unused; raw scores include init
    train_set = lgb.Dataset(X_tr, y_tr, init_score=start(len(X_tr)), params=params)
    val_set = lgb.Dataset(X_va, y_va, init_score=start(len(X_va)), reference=train_set, params=params)
    booster = lgb.train(params, train_set, num_boost_round=boosting_budget(spec, config)[0], valid_sets=[val_set], feval=val_loss,
                        callbacks=[lgb.early_stopping(config.early_stopping, verbose=False)])
    return booster, init


def _fit_hard_label(spec: TaskSpec, train, val, config: StudentConfig):
    import lightgbm as lgb

    from finai_assets.lib.ple.baselines import OBJECTIVE

    (X_tr, y_tr, _), (X_va, y_va, _) = train, val
    params = _lightgbm_params(spec, config) | {"objective": OBJECTIVE[spec.type]}
    train_set = lgb.Dataset(X_tr, y_tr, params=params)
    val_set = lgb.Dataset(X_va, y_va, reference=train_set, params=params)
    return lgb.train(params, train_set, num_boost_round=boosting_budget(spec, config)[0], valid_sets=[val_set],
                     callbacks=[lgb.early_stopping(config.early_stopping, verbose=False)])


def _prior_rule(spec: TaskSpec, y: np.ndarray) -> dict:
    if spec.type == "binary":
        return {"rule": "train positive rate", "prediction": float(y.mean())}
    if spec.type == "multiclass":
        counts = np.bincount(y.astype(np.int64), minlength=spec.classes)
        return {"rule": "train class frequencies", "prediction": (counts / counts.sum()).tolist()}
    return {"rule": "train median", "prediction": float(np.median(y))}


def platt_scaling(raw: np.ndarray, y: np.ndarray, max_steps: int = 100) -> tuple[float, float]:
    """(a, b) of P(y=1) = σ(a·raw + b), by Newton steps on the log-loss with Platt's (1999) smoothed
    targets (N₊+1)/(N₊+2) and 1/(N₋+2), which keep (a, b) finite on separable scores."""
    raw, y = np.asarray(raw, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"Platt calibration needs both classes in the calib rows, got {n_pos} positives and {n_neg} "
                         "negatives; use a larger calib split or route the task to a rule")
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    Z = np.column_stack([raw, np.ones_like(raw)])

    def loss(w: np.ndarray) -> float:
        z = Z @ w
        return float(np.mean(np.logaddexp(0, z) - target * z))

    w = np.zeros(2)
    for _ in range(max_steps):
        p = _sigmoid(Z @ w)
        step = np.linalg.lstsq((Z * (p * (1 - p))[:, None]).T @ Z, Z.T @ (p - target), rcond=None)[0]
        shrink = 1.0
        while loss(w - shrink * step) > loss(w) and shrink > 1e-6:  # backtrack an overshooting step
            shrink /= 2
        w = w - shrink * step
        if np.abs(shrink * step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


# --- model files -------------------------------------------------------------------------------------

def save_student(student: Student, folder: Path) -> tuple[Path, str]:
    """The model text as `student-<task>-<sha16>.txt` (content-addressed: a new model never
    overwrites the file an earlier materialization points to), written atomically; returns the
    path and the sha256 of its bytes, which the caller records."""
    if student.model is None:
        raise ValueError(f"task {student.task!r}: a rule student has no model file; record its rule instead")
    data = student.model.encode()
    sha = hashlib.sha256(data).hexdigest()
    path = Path(folder) / f"student-{student.task}-{sha[:16]}.txt"
    atomic_write_bytes(path, data)
    return path, sha


def load_booster_text(path: Path, expected_sha256: str) -> str:
    """The model text of `path` if its bytes hash to `expected_sha256` (recorded by the caller at
    save time, never read from beside the file); else `StudentIntegrityError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StudentIntegrityError(f"student model {path} refused: the file does not exist; {FIX}") from None
    actual, expected = hashlib.sha256(data).hexdigest(), expected_sha256.strip().lower()
    if actual != expected:
        raise StudentIntegrityError(
            f"student model {path} refused: sha256 mismatch, the file hashes to {actual} but {expected} was recorded "
            f"when it was saved; the file was modified or replaced; {FIX}"
        )
    return data.decode()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(1)
    return m + np.log(np.exp(z - m[:, None]).sum(1))
