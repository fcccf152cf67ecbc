"""Checkpoint save and verified load for the PLE teacher.

A checkpoint is one torch file holding only tensors and plain Python values:
    {"state_dict": {name: Tensor}, "config": dict, "metrics": dict,
     "feature_columns": [str], "tasks": [dict]}
so `torch.load(weights_only=True)` reads it without running any pickled code. `save_checkpoint`
writes it atomically with a `.sha256` sidecar (sha256sum format) and returns the hash, which the
caller records in the asset metadata. `load_checkpoint` trusts that recorded hash, never the
sidecar: a tampered file, a pickled object, or a feature/task schema other than the caller's is
refused with a `CheckpointError` that says what differs and how to fix it.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

FIX = "rematerialize ple_teacher"
KEYS = ("state_dict", "config", "metrics", "feature_columns", "tasks")
SHOW = 5  # names shown per kind of difference


class CheckpointError(RuntimeError):
    """A checkpoint that must not be used: wrong hash, unsafe content or a schema mismatch."""


def save_checkpoint(
    path: Path, *, state_dict, config: dict, metrics: dict, feature_columns: list[str], tasks: list[dict]
) -> str:
    path = Path(path)
    payload = _plain({
        "state_dict": dict(state_dict), "config": config, "metrics": metrics,
        "feature_columns": list(feature_columns), "tasks": list(tasks),
    }, "checkpoint")
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    _write_atomic(path, data)
    _write_atomic(path.with_suffix(".sha256"), f"{digest}  {path.name}\n".encode())
    return digest


def load_checkpoint(
    path: Path, *, expected_sha256: str, feature_columns: list[str] | None = None, tasks: list[dict] | None = None
) -> dict:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist; {FIX}") from None
    actual = hashlib.sha256(data).hexdigest()
    expected = expected_sha256.strip().lower()
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {path}: sha256 {actual} does not match the expected {expected} recorded in the "
            f"ple_teacher metadata; the file was modified or replaced after training; {FIX}"
        )
    try:  # hash and load the same bytes: the file cannot change in between
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {path}: refused by torch.load(weights_only=True): {e}; {FIX}") from e
    if not isinstance(payload, dict) or set(payload) != set(KEYS):
        got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path}: expected the keys {list(KEYS)}, found {got}; {FIX}")
    if feature_columns is not None:
        diff = _column_diff(payload["feature_columns"], list(feature_columns))
        if diff:
            raise CheckpointError(
                f"checkpoint {path}: feature schema mismatch: {diff}; load the feature table version the "
                f"checkpoint was trained on, or {FIX} on the current feature table"
            )
    if tasks is not None:
        diff = _task_diff(payload["tasks"], list(tasks))
        if diff:
            raise CheckpointError(
                f"checkpoint {path}: task schema mismatch: {diff}; use the task specs the checkpoint was "
                f"trained on, or {FIX} with the current task specs"
            )
    return payload


def _plain(obj, where: str):
    """A copy of obj made of CPU tensors and plain Python values only; numpy scalars become Python ones."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: dict keys must be str, got {bad[0]!r}")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"{where}: {type(obj).__name__} cannot be saved in a weights-only checkpoint")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _column_diff(saved: list[str], given: list[str]) -> str:
    """'' when equal, else the columns missing from the caller, the extra ones, or the first reordering."""
    given_set, saved_set = set(given), set(saved)
    parts = []
    missing = [c for c in saved if c not in given_set]
    extra = [c for c in given if c not in saved_set]
    if missing:
        parts.append(f"{len(missing)} column(s) the checkpoint needs are missing: {missing[:SHOW]}")
    if extra:
        parts.append(f"{len(extra)} extra column(s) the checkpoint was not trained on: {extra[:SHOW]}")
    if not parts and saved != given:
        i = next(i for i, (a, b) in enumerate(zip(saved, given)) if a != b)
        parts.append(f"columns reordered: position {i} is {saved[i]!r} in the checkpoint but {given[i]!r} given")
    return "; ".join(parts)


def _task_diff(saved: list[dict], given: list[dict]) -> str:
    """'' when equal, else the missing / extra task names, the first differing fields, or the reordering."""
    s, g = {t["name"]: t for t in saved}, {t["name"]: t for t in given}
    parts = []
    missing = [n for n in s if n not in g]
    extra = [n for n in g if n not in s]
    if missing:
        parts.append(f"tasks in the checkpoint but not given: {missing[:SHOW]}")
    if extra:
        parts.append(f"tasks given but not in the checkpoint: {extra[:SHOW]}")
    for name in (n for n in s if n in g):
        for field in sorted(set(s[name]) | set(g[name])):
            if s[name].get(field) != g[name].get(field):
                parts.append(f"task {name!r}: {field} is {s[name].get(field)!r} in the checkpoint but {g[name].get(field)!r} given")
    if not parts and list(s) != list(g):
        parts.append(f"task order differs: {list(s)} in the checkpoint, {list(g)} given")
    return "; ".join(parts[: 2 * SHOW])
