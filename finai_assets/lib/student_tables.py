"""From warehouse tables to distilled students and back, around `lib.student_model`.

The teacher's soft labels aligned with the design matrix (in-sample by default, or a K-fold
cross-fit of the teacher on the train rows), one student per kept task as `teacher_evaluation`
routed it, the content-addressed model files and their manifest, predictions for every customer in
the teacher's table format, reason codes, and the verified reload every consumer goes through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from finai_assets.lib import student_model as st
from finai_assets.lib.ple.tasks import TaskSpec
from finai_assets.lib.teacher import Design, frame_predictions, prediction_frame

MANIFEST_COLUMNS = ["task", "type", "classes", "route", "reason", "model_file", "sha256", "model_bytes", "rounds", "platt_a", "platt_b",
                    "init", "rule", "soft_labels"]


def aligned(frame: pl.DataFrame, ncodpers: np.ndarray, specs: Sequence[TaskSpec], what: str) -> dict[str, np.ndarray]:
    """Predictions of `frame` (prediction-table format) in the order of `ncodpers`; a customer
    the frame lacks is an error (the two tables come from different builds)."""
    joined = pl.DataFrame({"ncodpers": ncodpers}).join(frame, on="ncodpers", how="left", maintain_order="left")
    lacking = joined.select(pl.exclude("ncodpers").is_null().any()).row(0)
    if any(lacking):
        n = int(joined.select(pl.any_horizontal(pl.exclude("ncodpers").is_null()).sum()).item())
        raise ValueError(f"{what} lacks predictions for {n} customers of the feature table; rematerialize {what} from the same feature_table")
    return frame_predictions(joined, specs)


def routes(routing: pl.DataFrame, specs: Sequence[TaskSpec]) -> dict[str, str]:
    decided = dict(routing.select("task", "route").iter_rows())
    missing = [s.name for s in specs if s.name not in decided]
    if missing:
        raise ValueError(f"teacher_evaluation has no routing decision for {missing}; rematerialize teacher_evaluation for this partition")
    return {s.name: decided[s.name] for s in specs}


def train_students(data: Design, soft: Mapping[str, np.ndarray], route_of: Mapping[str, str], specs: Sequence[TaskSpec],
                   config: st.StudentConfig, log: Callable[[str], None]) -> dict[str, st.Student]:
    """One student per task on the train rows (early stopping on val, Platt on calib; the test
    split is never read)."""
    masks = {s: data.split == s for s in ("train", "val", "calib")}
    out = {}
    for spec in specs:
        y, p = data.targets[spec.name], soft[spec.name]
        parts = [a for s in ("train", "val", "calib") for a in (data.X[masks[s]], y[masks[s]], p[masks[s]])]
        X_tr, y_tr, p_tr, X_va, y_va, p_va, X_ca, y_ca, _ = parts
        out[spec.name] = st.fit_student(spec, route_of[spec.name], X_tr, y_tr, p_tr, X_va, y_va, p_va, X_ca, y_ca, config)
        log(f"student {spec.name}: route {route_of[spec.name]}, {out[spec.name].rounds} rounds")
    return out


def save_students(students: Mapping[str, st.Student], folder: Path, root: Path, routing: pl.DataFrame, soft_labels: str) -> pl.DataFrame:
    """Model files (content-addressed, paths relative to the data folder) and the manifest that
    records their sha256, calibration and rule."""
    reasons = dict(routing.select("task", "reason").iter_rows())
    rows = []
    for task, student in students.items():
        path, sha, size = None, None, 0
        if student.model is not None:
            file, sha = st.save_student(student, folder)
            path, size = str(file.relative_to(root)), file.stat().st_size
        a, b = student.platt if student.platt is not None else (None, None)
        rows.append((task, student.type, student.classes, student.route, reasons.get(task, ""), path, sha, size,
                     student.rounds, a, b, _json(student.init), _json(student.rule), soft_labels))
    return pl.DataFrame(rows, schema=MANIFEST_COLUMNS, orient="row")


def _json(value) -> str | None:
    return None if value is None else json.dumps(value)


def _unjson(text: str | None):
    return None if text is None else json.loads(text)


def load_students(manifest: pl.DataFrame, root: Path) -> dict[str, st.Student]:
    """The students of a manifest, every model file verified against its recorded sha256."""
    out = {}
    for row in manifest.iter_rows(named=True):
        model = None if row["model_file"] is None else st.load_booster_text(root / row["model_file"], row["sha256"])
        platt = None if row["platt_a"] is None else (row["platt_a"], row["platt_b"])
        out[row["task"]] = st.Student(task=row["task"], type=row["type"], classes=row["classes"], route=row["route"], model=model,
                                      rounds=row["rounds"], platt=platt, rule=_unjson(row["rule"]), init=_unjson(row["init"]))
    return out


def predict_students(students: Mapping[str, st.Student], X: np.ndarray, specs: Sequence[TaskSpec],
                     threads: int = 0) -> dict[str, np.ndarray]:
    missing = [s.name for s in specs if s.name not in students]
    if missing:
        raise ValueError(f"no student for {missing}; rematerialize distilled_students")
    return {s.name: students[s.name].predict(X, threads) for s in specs}


def student_frame(students: Mapping[str, st.Student], data: Design, specs: Sequence[TaskSpec], threads: int = 0) -> pl.DataFrame:
    return prediction_frame(data.ncodpers, predict_students(students, data.X, specs, threads), specs)


def reason_codes(students: Mapping[str, st.Student], data: Design, k: int, split: str = "test", threads: int = 0) -> pl.DataFrame:
    """Long table: ncodpers, task, reason_1..k, contribution_1..k for the customers of `split` (by
    default the test split, whose decisions the fidelity and fairness reports judge; TreeSHAP
    costs ~1-2 ms per row and task on one core) and every task served by a model (a rule has no
    contributing features)."""
    rows = data.split == split
    X, ncodpers = data.X[rows], data.ncodpers[rows]
    parts = []
    for task, student in students.items():
        if student.model is None:
            continue
        codes = student.reason_codes(X, data.columns, k, threads=threads)
        parts.append(codes.with_columns(ncodpers=pl.Series(ncodpers), task=pl.lit(task)).select("ncodpers", "task", *codes.columns))
    return pl.concat(parts) if parts else pl.DataFrame(schema={"ncodpers": pl.Int64, "task": pl.Utf8})
