"""Candidate labels (docs/labels.md) on constructed customers, and the stratified split."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import labels as lab
from finai_assets.lib.schema import PRODUCT_COLUMNS, SNAPSHOT_MONTHS, product_column
from finai_assets.lib.stats import conditional_entropy_ratio, stable_hash

C = dt.date(2016, 4, 28)
NEXT = dt.date(2016, 5, 28)
CUT = dt.datetime(2016, 4, 29)


def _snap(customer: int, month: dt.date, products=(), segmento="02 - PARTICULARES", renta=50_000.0, antiguedad=30):
    row = {
        "fecha_dato": month, "ncodpers": customer, "segmento": segmento, "renta": renta, "antiguedad": antiguedad,
        "ind_actividad_cliente": 1, **{c: 0 for c in PRODUCT_COLUMNS},
    }
    row.update({product_column(p): 1 for p in products})
    return row


def _history(customer: int, products_by_month: dict[dt.date, tuple], **kw) -> list[dict]:
    return [_snap(customer, m, ps, **kw) for m, ps in products_by_month.items()]


def _months(k: int) -> list[dt.date]:
    """The k months up to and including the cutoff."""
    i = SNAPSHOT_MONTHS.index(C)
    return list(SNAPSHOT_MONTHS[i - k + 1: i + 1])


def _txn(customer: int, ts: dt.datetime, mcc: int, merchant: int = 1, amount: float = 10.0) -> dict:
    return {"ncodpers": customer, "ts": ts, "amount": amount, "mcc": mcc, "merchant_id": merchant}


def _frames(snapshot_rows: list[dict], txn_rows: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    snaps = pl.DataFrame(snapshot_rows).with_columns(pl.col(PRODUCT_COLUMNS).cast(pl.Int8), pl.col("ncodpers").cast(pl.Int64))
    schema = {"ncodpers": pl.Int64, "ts": pl.Datetime("us"), "amount": pl.Float64, "mcc": pl.Int16, "merchant_id": pl.Int64}
    return snaps, pl.DataFrame(txn_rows, schema=schema)


@pytest.fixture(scope="module")
def constructed() -> pl.DataFrame:
    rows = []
    # 1: holds cco + recibo, acquires deco (deposits) and fond (investments) at c+1.
    rows += _history(1, {m: ("cco", "recibo") for m in _months(6)})
    rows.append(_snap(1, NEXT, ("cco", "recibo", "deco", "fond")))
    # 2: absent at c+1.
    rows += _history(2, {m: ("cco",) for m in _months(6)})
    # 3: only two months of history, drops everything.
    rows += _history(3, {m: ("cco", "ctop") for m in _months(2)})
    rows.append(_snap(3, NEXT, ()))
    # 4: four products for six months, keeps one at c+1: churn.
    rows += _history(4, {m: ("cco", "ctop", "recibo", "tjcr") for m in _months(6)})
    rows.append(_snap(4, NEXT, ("cco",)))
    # 5: holds nothing at c, segment unknown at c+1.
    rows += _history(5, {m: () for m in _months(6)})
    rows.append(_snap(5, NEXT, (), segmento=None))
    txns = [
        # customer 1: last 30 before the cutoff tie 5411 x3 / 5812 x3 -> 5411; W mode 5812 -> shift.
        *[_txn(1, CUT - dt.timedelta(days=d), 5411) for d in (1, 2, 3)],
        *[_txn(1, CUT - dt.timedelta(days=d), 5812) for d in (4, 5, 6)],
        _txn(1, CUT - dt.timedelta(seconds=1), 5812),  # 23:59:59 on the cutoff day: still before
        _txn(1, CUT, 4111, merchant=9),  # first in W (ties on ts broken by merchant id)
        _txn(1, CUT, 7011, merchant=3),
        *[_txn(1, CUT + dt.timedelta(days=d), 5812) for d in (2, 3, 4)],
        _txn(1, CUT + dt.timedelta(days=30), 9999),  # 30 days after: outside W
        # customer 4: two transactions in W only -> top_mcc_shift null, diversity null (none before)
        _txn(4, CUT + dt.timedelta(days=1), 5411), _txn(4, CUT + dt.timedelta(days=2), 5411),
    ]
    snaps, txn = _frames(rows, txns)
    return lab.candidate_labels(snaps, txn, C).sort("ncodpers")


def _row(frame: pl.DataFrame, customer: int) -> dict:
    return frame.filter(pl.col("ncodpers") == customer).row(0, named=True)


def test_acquisitions_and_their_derived_labels(constructed):
    r = _row(constructed, 1)
    assert (r["will_acquire_deposits"], r["will_acquire_investments"]) == (1, 1)
    assert (r["will_acquire_lending"], r["will_acquire_payments"], r["will_acquire_accounts"]) == (0, 0, 0)
    assert r["has_nba"] == 1 and r["cross_sell_count"] == 2
    assert r["nba_primary"] in (1, 2)  # deposits or investments, by the (customer, product) hash
    assert r["product_stability"] == 1.0 and r["churn_signal"] == 0
    assert r["segment_prediction"] == 1


def test_absent_at_c_plus_1_nulls_every_product_label(constructed):
    r = _row(constructed, 2)
    assert not r["present_next"]
    for name in lab.PRODUCT_LABELS + ("product_stability", "segment_prediction"):
        assert r[name] is None, name


def test_churn_needs_three_months_of_history(constructed):
    assert _row(constructed, 3)["churn_signal"] is None
    r = _row(constructed, 4)
    assert r["churn_signal"] == 1 and r["product_stability"] == 0.25


def test_no_product_at_c_nulls_stability_and_unknown_segment_nulls_segment(constructed):
    r = _row(constructed, 5)
    assert r["product_stability"] is None and r["segment_prediction"] is None
    assert r["nba_primary"] == 0 and r["has_nba"] == 0 and r["cross_sell_count"] == 0


def test_transaction_windows_modes_ties_and_first_mcc(constructed):
    r = _row(constructed, 1)
    # before: 5411 x3, 5812 x4 (the 23:59:59 one counts) -> 5812; W: 5812 x3, 4111, 7011 -> 5812: no shift
    assert r["top_mcc_shift"] == 0
    assert r["next_mcc"] == 7011  # same ts as 4111, lower merchant id first
    assert r["mcc_diversity_trend"] == pytest.approx(3 / 2 - 1)  # {4111, 7011, 5812} / {5411, 5812}
    r4 = _row(constructed, 4)
    assert r4["top_mcc_shift"] is None and r4["mcc_diversity_trend"] is None and r4["next_mcc"] == 5411


def test_mode_ties_go_to_the_lowest_code():
    rows = _history(7, {m: ("cco",) for m in _months(3)}) + [_snap(7, NEXT, ("cco",))]
    txns = [_txn(7, CUT - dt.timedelta(days=d), m) for d, m in zip(range(1, 7), (5812, 5411, 5812, 5411, 7011, 7011))]
    txns += [_txn(7, CUT + dt.timedelta(days=d), m) for d, m in zip(range(1, 5), (7011, 5812, 5812, 7011))]
    labels = lab.candidate_labels(*_frames(rows, txns), C)
    # before: a three-way tie -> 5411; W: 7011 / 5812 tie -> 5812: shift
    assert labels["top_mcc_shift"].to_list() == [1]


def test_nba_primary_hash_tie_break_is_no_fixed_priority(build):
    labels = build.warehouse.read("candidate_labels", "v4")
    acquire = [f"will_acquire_{g}" for g in lab.GROUPS]
    several = labels.filter(pl.sum_horizontal(acquire) >= 2)
    assert several.height > 100
    # For each pair of groups acquired together, the chosen class takes both values.
    for i, a in enumerate(acquire):
        for b in acquire[i + 1:]:
            both = several.filter((pl.col(a) == 1) & (pl.col(b) == 1))
            if both.height >= 20:
                assert set(both["nba_primary"].unique()) >= {i + 1, acquire.index(b) + 1}, (a, b)
    present = labels.filter(pl.col("present_next"))
    nba = present["nba_primary"].to_numpy()
    for a in acquire:
        assert conditional_entropy_ratio(nba, present[a].to_numpy()) > 0.01, a


def test_stable_hash_is_fixed():
    assert stable_hash(np.array([1, 2]), np.array([3, 4]), seed=7).tolist() == stable_hash(
        np.array([1, 2]), np.array([3, 4]), seed=7
    ).tolist()
    assert stable_hash(np.array([1]), seed=7)[0] != stable_hash(np.array([1]), seed=8)[0]


def test_label_contract_flags_violations(build):
    labels = build.warehouse.read("candidate_labels", "v3")
    assert lab.label_contract(labels) == []
    absent = labels.filter(~pl.col("present_next"))["ncodpers"][0]
    broken = labels.with_columns(
        pl.when(pl.col("ncodpers") == absent).then(1).otherwise(pl.col("will_acquire_lending")).cast(pl.Int8).alias("will_acquire_lending"),
        pl.when(pl.col("ncodpers") == labels["ncodpers"][0]).then(7).otherwise(pl.col("segment_prediction")).cast(pl.Int8).alias("segment_prediction"),
    )
    problems = lab.label_contract(broken)
    assert "will_acquire_lending: a value for a customer absent at c+1" in problems
    assert "segment_prediction: classes outside 0..2" in problems


@pytest.mark.parametrize("version", ["v2", "v3", "v4"])
def test_labels_and_splits_materialize_with_checks_passing(build, version):
    result = build.results[version]
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations["label_contract"] and evaluations["stratified"]
    splits = build.warehouse.read("split_assignments", version)
    shares = dict(splits["split"].value_counts(normalize=True).iter_rows())
    for name, target in lab.SPLITS.items():
        assert abs(shares[name] - target) < 0.005, name


def test_split_is_stratified_deterministic_and_order_free(build):
    labels = build.warehouse.read("candidate_labels", "v4")
    splits = lab.split_assignments(labels)
    assert lab.split_balance(splits, labels)["deviation"].max() < 0.01
    shuffled = lab.split_assignments(labels.sample(fraction=1.0, shuffle=True, seed=3))
    assert shuffled.equals(splits)
    other = lab.split_assignments(labels, seed=1)
    assert (other["split"] != splits["split"]).mean() > 0.3
