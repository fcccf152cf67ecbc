"""Month-level fairness before outcomes (production_fairness): hand-checked selection rates,
Wilson intervals, DI and SPD, an absent group, and its chart without label rows."""

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import protected as prot
from finai_assets.lib import plots
from finai_assets.lib.ple.tasks import TaskSpec
from finai_assets.lib.production import selection_fairness

N = 1000


def _month():
    rng = np.random.default_rng(0)
    ids = np.arange(N)
    gender = np.where(ids < 600, "H", "V")  # 600 H, 400 V, no missing
    groups = pl.DataFrame({
        "ncodpers": ids, "gender": gender, "age_band": rng.choice(prot.DECLARED_GROUPS["age_band"], N),
        "region": rng.choice(prot.DECLARED_GROUPS["region"], N), "income_band": rng.choice(prot.DECLARED_GROUPS["income_band"], N),
        "residency": rng.choice(prot.DECLARED_GROUPS["residency"], N),
    })
    p = np.where(gender == "H", np.where(ids % 2 == 0, 0.9, 0.1), np.where(ids % 4 == 0, 0.9, 0.1))  # H 50 %, V 25 % above 0.5
    return groups, pl.DataFrame({"ncodpers": ids, "p_churn_signal": p})


def test_selection_rates_di_and_spd_match_a_hand_count():
    groups, scores = _month()
    tables = selection_fairness(groups, scores, [TaskSpec("churn_signal", "binary"), TaskSpec("spend", "regression")])
    gender = tables["groups"].filter(operating_point="threshold", attribute="gender").sort("group")
    assert gender["group"].to_list() == ["H", "V", "missing"]
    assert gender["n"].to_list() == [600, 400, 0] and gender["selected"].to_list() == [300, 100, 0]
    assert gender["selection_rate"].to_list()[:2] == [0.5, 0.25] and gender["selection_rate"][2] is None
    assert gender["rate_ci_low"][2] is None and gender["status"].to_list() == ["ok", "ok", "insufficient_data"]
    # Wilson 95 % for 300 / 600
    z, p, n = 1.959964, 0.5, 600
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert gender["rate_ci_low"][0] == pytest.approx(centre - half) and gender["rate_ci_high"][0] == pytest.approx(centre + half)
    summary = tables["summary"].filter(operating_point="threshold", attribute="gender").row(0, named=True)
    assert summary["di"] == pytest.approx(0.5) and summary["spd"] == pytest.approx(0.25)
    assert not summary["four_fifths_pass"] and summary["groups_used"] == 2  # the empty group is left out, not counted fair
    top_k = tables["groups"].filter(operating_point="top_k", attribute="gender")
    assert top_k["selected"].sum() == 100  # top 10 % of the month


def test_a_zero_selection_gives_di_0_and_an_unscored_customer_is_an_error():
    groups, scores = _month()
    none_for_v = scores.with_columns(p_churn_signal=pl.when(pl.Series(groups["gender"]) == "V").then(0.0).otherwise(pl.col("p_churn_signal")))
    summary = selection_fairness(groups, none_for_v, [TaskSpec("churn_signal", "binary")])["summary"]
    assert summary.filter(operating_point="threshold", attribute="gender")["di"].to_list() == [0.0]
    nobody = selection_fairness(groups, scores.with_columns(p_churn_signal=pl.lit(0.0)), [TaskSpec("churn_signal", "binary")])["summary"]
    row = nobody.filter(operating_point="threshold", attribute="gender").row(0, named=True)
    assert row["di"] == 0.0 and row["status"] == "no_selection" and not row["four_fifths_pass"]  # 0, never null or 1
    with pytest.raises(ValueError, match="5 customers have protected groups but no score"):
        selection_fairness(groups, scores.head(N - 5), [TaskSpec("churn_signal", "binary")])
    with pytest.raises(ValueError, match="no binary task"):
        selection_fairness(groups, scores, [TaskSpec("spend", "regression")])


def test_the_month_chart_draws_without_label_rows():
    groups, scores = _month()
    table = selection_fairness(groups, scores, [TaskSpec("churn_signal", "binary")])["groups"]
    chart = plots.fairness_figure(table.rename({"rate_ci_low": "sel_ci_low", "rate_ci_high": "sel_ci_high"}).with_columns(
        model=pl.lit("student")), "churn_signal", "churn_signal: selection rate by group (top_k)")
    assert chart.startswith("![") and "data:image/png;base64," in chart
