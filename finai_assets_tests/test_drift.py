"""PSI drift (thresholds: docs/thresholds.md#drift): hand-computed values, reference-only bins, nulls and
unseen values as drift, and the errors a mismatched table gets."""

import math

import numpy as np
import polars as pl
import pytest

from finai_assets.lib.drift import EPSILON, DriftThresholds, drift_summary, drift_table, psi


def test_psi_of_a_discrete_column_equals_the_hand_computed_value():
    reference = np.array([0.0] * 50 + [1.0] * 50)
    current = np.array([0.0] * 80 + [1.0] * 20)
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)  # unseen and null bins: both EPSILON
    assert psi(reference, current) == pytest.approx(expected, rel=1e-12)
    assert psi(reference, reference) == 0.0


def test_continuous_bins_are_the_reference_quantiles():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    assert psi(reference, rng.normal(size=20_000)) < 0.01  # same distribution
    shifted = psi(reference, rng.normal(0.5, 1.0, size=20_000))
    assert 0.10 < shifted < 0.25  # half a standard deviation: a warning, not a breach
    assert psi(reference, rng.normal(1.5, 1.0, size=20_000)) > 0.25
    # a current sample entirely above the reference range lands in the open top bin (share 0.1 -> 1.0)
    top = (1.0 - 0.1) * math.log(1.0 / 0.1) + 9 * (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    assert psi(reference, np.full(1000, 99.0)) == pytest.approx(top, rel=1e-3)


def test_nulls_and_values_the_reference_never_held_are_drift():
    reference = np.array([1.0, 2.0, 3.0] * 100)
    assert psi(reference, np.array([1.0, 2.0, 3.0, np.nan] * 75)) > 0.25  # a quarter of the column went missing
    assert psi(reference, np.array([1.0, 2.0, 3.0, 7.0] * 75)) > 0.25  # a new category
    with_nulls = np.array([1.0, np.nan] * 100)
    assert psi(with_nulls, with_nulls[::-1].copy()) == 0.0  # nulls at the same share are no drift
    with pytest.raises(ValueError, match="rows on both sides"):
        psi(reference, np.array([]))


def test_drift_table_status_and_summary():
    rng = np.random.default_rng(1)
    reference = pl.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000), "c": rng.integers(0, 3, 5000)})
    current = pl.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(2.0, 1.0, size=5000),
                            "c": pl.Series(rng.integers(0, 3, 5000)).cast(pl.Float64).scatter([0, 1, 2], None)})
    th = DriftThresholds()
    table = drift_table(reference, current, ["a", "b", "c"], "feature", th)
    by_column = {r["column"]: r for r in table.iter_rows(named=True)}
    assert by_column["a"]["status"] == "ok" and by_column["b"]["status"] == "breach"
    assert by_column["c"]["current_null_share"] == pytest.approx(3 / 5000)
    assert by_column["c"]["reference_null_share"] == 0.0
    assert table.columns == ["column", "kind", "psi", "status", "reference_rows", "current_rows", "reference_null_share",
                             "current_null_share"]
    summary = drift_summary(table, th)
    assert summary["worst_column"] == "b" and summary["breached"] and summary["breach"] == 1
    assert summary["status"] == "breach" and summary["max_psi"] == by_column["b"]["psi"]


def test_mismatched_columns_and_bad_thresholds_are_errors():
    frame = pl.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"the current data lack the prediction columns \['p_churn'\]"):
        drift_table(frame.with_columns(p_churn=pl.lit(0.1)), frame, ["p_churn"], "prediction", DriftThresholds())
    with pytest.raises(ValueError, match="warn <= breach"):
        DriftThresholds(warn=0.3, breach=0.2)
    with pytest.raises(ValueError, match="empty"):
        drift_summary(drift_table(frame, frame, [], "feature", DriftThresholds()), DriftThresholds())
