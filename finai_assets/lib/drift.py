"""Population stability index (PSI) of production columns against a reference sample.

PSI = sum_b (c_b - r_b) * ln(c_b / r_b) over bins b, with r_b and c_b the reference and current
shares. Bins come from the reference only: a column with at most `bins` distinct reference values
is binned by value (a current value the reference never held gets its own bin, so new categories
show up as drift); otherwise by the reference's quantiles (the outer bins are open-ended). Nulls
are a bin of their own, so a column that goes missing drifts. Shares are floored at EPSILON so an
empty bin gives a large but finite PSI. Thresholds: 0.10 warn, 0.25 breach.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import polars as pl

EPSILON = 1e-4


@dataclasses.dataclass(frozen=True)
class DriftThresholds:
    warn: float = 0.10
    breach: float = 0.25
    bins: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.warn <= self.breach:
            raise ValueError(f"drift thresholds need 0 < warn <= breach, got warn={self.warn}, breach={self.breach}")
        if self.bins < 2:
            raise ValueError(f"drift needs at least 2 bins, got {self.bins}")


def _shares(codes: np.ndarray, n_bins: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n_bins).astype(np.float64)
    return np.maximum(counts / max(len(codes), 1), EPSILON)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of `current` against `reference` (1-D numeric arrays, NaN = null)."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.ndim != 1 or current.ndim != 1:
        raise ValueError(f"psi takes 1-D arrays, got shapes {reference.shape} and {current.shape}")
    if len(reference) == 0 or len(current) == 0:
        raise ValueError(f"psi needs rows on both sides, got {len(reference)} reference and {len(current)} current rows")
    ref_null, cur_null = np.isnan(reference), np.isnan(current)
    present = reference[~ref_null]
    values = np.unique(present)
    if len(values) <= bins:  # discrete: one bin per reference value, one for values it never held
        ref_codes = np.searchsorted(values, reference)
        pos = np.searchsorted(values, current).clip(0, max(len(values) - 1, 0))
        known = values[pos] == current if len(values) else np.zeros(len(current), dtype=bool)
        cur_codes = np.where(known, pos, len(values))
        n_value_bins = len(values) + 1
    else:  # continuous: the reference's quantile edges, open-ended outer bins
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
        ref_codes = np.searchsorted(edges, reference, side="right")
        cur_codes = np.searchsorted(edges, current, side="right")
        n_value_bins = len(edges) + 1
    null_bin = n_value_bins
    ref_codes = np.where(ref_null, null_bin, ref_codes)
    cur_codes = np.where(cur_null, null_bin, cur_codes)
    r = _shares(ref_codes, null_bin + 1)
    c = _shares(cur_codes, null_bin + 1)
    return float(((c - r) * np.log(c / r)).sum())


def _status(value: float, thresholds: DriftThresholds) -> str:
    return "breach" if value >= thresholds.breach else "warn" if value >= thresholds.warn else "ok"


def drift_table(reference: pl.DataFrame, current: pl.DataFrame, columns: Sequence[str], kind: str,
                thresholds: DriftThresholds) -> pl.DataFrame:
    """One row per column: its PSI and status, the row counts and null shares of both sides."""
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} data lack the {kind} columns {missing[:5]} (of {len(missing)}): drift compares the same "
                             "columns; rematerialize the champion or the scores from the same feature pipeline")
    rows = []
    for column in columns:
        ref = reference[column].cast(pl.Float64).fill_nan(None).to_numpy()
        cur = current[column].cast(pl.Float64).fill_nan(None).to_numpy()
        value = psi(ref, cur, thresholds.bins)
        rows.append({"column": column, "kind": kind, "psi": value, "status": _status(value, thresholds),
                     "reference_rows": len(ref), "current_rows": len(cur),
                     "reference_null_share": float(np.isnan(ref).mean()), "current_null_share": float(np.isnan(cur).mean())})
    schema = {"column": pl.Utf8, "kind": pl.Utf8, "psi": pl.Float64, "status": pl.Utf8, "reference_rows": pl.Int64,
              "current_rows": pl.Int64, "reference_null_share": pl.Float64, "current_null_share": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def drift_summary(table: pl.DataFrame, thresholds: DriftThresholds) -> dict:
    if table.is_empty():
        raise ValueError("the drift table is empty: no feature or prediction column was compared")
    worst = table.sort("psi", descending=True).row(0, named=True)
    breach = int((table["status"] == "breach").sum())
    warn = int((table["status"] == "warn").sum())
    return {"columns": table.height, "warn": warn, "breach": breach, "max_psi": float(worst["psi"]),
            "worst_column": worst["column"], "breached": breach > 0,
            "status": _status(float(worst["psi"]), thresholds)}
