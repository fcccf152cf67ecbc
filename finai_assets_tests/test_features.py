"""The feature pipeline and table: train-only fitting, time isolation, schema and policy."""

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import feature_isolation as iso
from finai_assets.lib import features as feat
from finai_assets.lib.schema import DEFAULT_CUTOFF
from finai_assets.lib.storage import content_hash
from finai_assets.lib.timeline import cutoff_instant

CUT = cutoff_instant(DEFAULT_CUTOFF)


@pytest.fixture(scope="module")
def v3(build):
    wh = build.warehouse
    raw = wh.read("synthetic_customers", "v3")
    return {
        "snapshots": raw["snapshots"], "transactions": raw["transactions"],
        "splits": wh.read("split_assignments", "v3"),
        "pipeline": wh.read("feature_pipeline", "v3"),
        "table": wh.read("feature_table", "v3"),
    }


def test_feature_table_materialized_for_every_customer_at_the_cutoff(build, v3):
    features = v3["table"]["features"]
    at_c = v3["snapshots"].filter(pl.col("fecha_dato") == DEFAULT_CUTOFF)
    assert features.height == at_c.height and features["ncodpers"].is_unique().all()
    assert features.null_count().sum_horizontal()[0] == 0
    assert all(build.results[v].success for v in ("v2", "v3", "v4"))


def test_post_cutoff_perturbation_leaves_the_feature_table_byte_identical(v3):
    snaps, txn = v3["snapshots"], v3["transactions"]
    perturbed_snaps, perturbed_txn = iso.perturb_after_cutoff(snaps, txn, DEFAULT_CUTOFF)
    assert content_hash(perturbed_txn) != content_hash(txn) and content_hash(perturbed_snaps) != content_hash(snaps)
    original = feat.transform(snaps, txn, v3["pipeline"])
    assert content_hash(original) == content_hash(v3["table"]["features"])
    assert content_hash(feat.transform(perturbed_snaps, perturbed_txn, v3["pipeline"])) == content_hash(original)
    assert v3["table"]["isolation"]["identical"].all() and v3["table"]["isolation"].height == 2


def test_val_and_test_perturbation_leaves_the_pipeline_identical(v3):
    splits = v3["splits"]
    fitted = {k: v for k, v in v3["pipeline"].items() if k != "isolation"}
    config = feat.pipeline_config(fitted)
    held_out = splits.filter(pl.col("split").is_in(["val", "test"]))["ncodpers"]
    refit = feat.fit_pipeline(*iso.perturb_customers(v3["snapshots"], v3["transactions"], held_out), splits, config)
    assert content_hash(refit) == content_hash(fitted)
    # ...while touching train customers changes it: the comparison can fail.
    train = splits.filter(pl.col("split") == "train")["ncodpers"]
    moved = feat.fit_pipeline(*iso.perturb_customers(v3["snapshots"], v3["transactions"], train), splits, config)
    assert content_hash(moved) != content_hash(fitted)


def test_chunking_by_customer_changes_neither_the_pipeline_nor_the_table(v3, monkeypatch):
    snaps, txn, splits = v3["snapshots"], v3["transactions"], v3["splits"]
    fitted = {k: v for k, v in v3["pipeline"].items() if k != "isolation"}
    monkeypatch.setattr(feat, "CHUNK_TRANSACTIONS", txn.height // 7)  # 7+ customer chunks
    chunked = feat.fit_pipeline(snaps, txn, splits, feat.pipeline_config(fitted))
    assert content_hash(chunked) == content_hash(fitted)
    assert content_hash(feat.transform(snaps, txn, chunked)) == content_hash(v3["table"]["features"])


def test_schema_routes_every_column_and_excludes_protected_attributes(v3):
    schema = v3["table"]["schema"]
    features = v3["table"]["features"]
    assert schema["column"].to_list() == features.columns[1:]
    assert set(schema["group"]) == set(feat.FEATURE_GROUPS)
    assert not {"gender_male", "foreign", "sexo", "indext", "pais_residencia"} & set(features.columns)
    forbidden = ("label", "will_acquire", "churn", "persona_", "wealth", "p_acquire")
    leaked = [c for c in features.columns if c.startswith(forbidden) and not c.startswith("persona_p")]
    assert not leaked


def test_the_policy_switch_adds_the_protected_columns(v3):
    config = dataclasses.replace(feat.pipeline_config(v3["pipeline"]), excluded_protected=())
    pipeline = feat.fit_pipeline(v3["snapshots"], v3["transactions"], v3["splits"], config)
    table = feat.transform(v3["snapshots"], v3["transactions"], pipeline)
    assert {"gender_male", "foreign"} <= set(table.columns)


def test_persistence_pairs_match_a_hand_computation():
    births, deaths = feat.persistence_pairs(np.array([[3.0, 1.0, 4.0, 0.0, 5.0, 2.0, 6.0]]))
    pairs = sorted((b, d) for b, d in zip(births[0], deaths[0]) if not np.isnan(b))
    assert pairs == [(0.0, 6.0), (1.0, 4.0), (2.0, 5.0)]
    flat_births, _ = feat.persistence_pairs(np.zeros((2, 5)))
    assert np.isfinite(flat_births).sum() == 2  # one basin per constant series


def test_sequence_holds_the_last_k_transactions_newest_first(v3):
    k = feat.pipeline_config(v3["pipeline"]).sequence_length
    features = v3["table"]["features"]
    before = v3["transactions"].filter(pl.col("ts") < CUT)
    present = features.select("ncodpers")
    customer = before.join(present, on="ncodpers").group_by("ncodpers").len().filter(pl.col("len") > k).sort("ncodpers")["ncodpers"][0]
    row = features.filter(pl.col("ncodpers") == customer).row(0, named=True)
    newest = before.filter(pl.col("ncodpers") == customer).sort("ts", descending=True).head(k)
    assert [row[f"seq_{s:02d}_amount"] for s in range(k)] == pytest.approx(np.log1p(newest["amount"].to_numpy()))
    assert all(row[f"seq_{s:02d}_mask"] == 1.0 for s in range(k))


def _elder_rule_pairs(series: np.ndarray) -> list[tuple[float, float]]:
    """Reference 0-dim sublevel persistence: union-find, points added in (value, position)
    order; where two basins meet, the younger one (higher minimum, or later) dies."""
    parent: dict[int, int] = {}
    order = lambda k: (series[k], k)  # noqa: E731

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    pairs = []
    for i in sorted(range(len(series)), key=order):
        roots = sorted({root(j) for j in (i - 1, i + 1) if j in parent}, key=order)
        parent[i] = roots[0] if roots else i  # no neighbour yet: a new basin born at series[i]
        if len(roots) == 2:
            pairs.append((series[roots[1]], series[i]))
            parent[roots[1]] = roots[0]
    oldest = root(0)
    return sorted(pairs + [(series[oldest], series.max())])


def test_persistence_pairs_follow_the_elder_rule_on_series_with_ties():
    rng = np.random.default_rng(0)
    series = rng.integers(0, 4, size=(200, 9)).astype(float)  # small integers: many equal minima
    births, deaths = feat.persistence_pairs(series)
    for row, b, d in zip(series, births, deaths):
        assert sorted((x, y) for x, y in zip(b, d) if not np.isnan(x)) == _elder_rule_pairs(row)
    # zero-spend months separated by spending: one essential basin, the others die at the barrier
    births, deaths = feat.persistence_pairs(np.array([[0.0, 5.0, 0.0, 4.0, 0.0]]))
    assert sorted(zip(births[0][~np.isnan(births[0])], deaths[0][~np.isnan(deaths[0])])) == [(0, 4), (0, 5), (0, 5)]


# A monthly log-spend series over the 16 months up to the cutoff (Jan 2015 .. Apr 2016), the
# months with 0 having no transaction. By hand (0-dim sublevel persistence, elder rule), its
# local minima at months 0, 2, 4, 6, 9, 11, 14 are born and die at:
#   m0  (0, 7) the global minimum: death = the series maximum
#   m2  (0, 2) meets the elder m0 over the 2 of m1
#   m4  (1, 3) reaches m6's 0 over the 3 of m5 (cheaper than m2 over the 5)
#   m6  (0, 5) reaches m2's 0 (elder: same value, earlier) over max(3, 1, 5)
#   m9  (2, 4) reaches m7's 0 over the 4 of m8
#   m11 (1, 6) reaches m7's 0 over max(6, 2, 4); nothing lower on its right
#   m14 (3, 7) reaches m12's 1 over the 7 of m13
KNOWN_SERIES = [0, 2, 0, 5, 1, 3, 0, 0, 4, 2, 6, 1, 1, 7, 3, 5]
# lifetime descending, ties by birth ascending, one padding slot
KNOWN_DIAGRAM = [(0, 7), (0, 5), (1, 6), (3, 7), (0, 2), (1, 3), (2, 4)]


def known_series_transactions(series=KNOWN_SERIES, customer: int = 1) -> pl.DataFrame:
    """Transactions whose monthly log1p spend is `series` (two per spending month, summed)."""
    rows = []
    for month, level in enumerate(series):
        if level > 0:
            day = dt.datetime(2015 + month // 12, month % 12 + 1, 10)
            total = np.expm1(level)
            rows += [(customer, day, total / 3), (customer, day + dt.timedelta(days=5), 2 * total / 3)]
    return pl.DataFrame(rows, schema={"ncodpers": pl.Int64, "ts": pl.Datetime("us"), "amount": pl.Float64}, orient="row")


def test_diagram_points_of_a_known_series_match_a_hand_computation():
    txn = pl.concat([known_series_transactions(), known_series_transactions([0] * 5 + [2] + [0] * 10, customer=2)])
    out = feat._persistence(txn, DEFAULT_CUTOFF).sort("ncodpers")
    p = feat.DIAGRAM_POINTS
    assert [c for c in out.columns if c.startswith("pd_")] == [f"pd_{i:02d}_{f}" for i in range(p) for f in ("birth", "death", "mask")]
    first, second = out.row(0, named=True), out.row(1, named=True)
    points = [(first[f"pd_{i:02d}_birth"], first[f"pd_{i:02d}_death"]) for i in range(p)]
    np.testing.assert_allclose(points, KNOWN_DIAGRAM + [(0, 0)], atol=1e-9)
    assert [first[f"pd_{i:02d}_mask"] for i in range(p)] == [1.0] * 7 + [0.0]
    assert first["pers_max"] == pytest.approx(7) and first["pers_total"] == pytest.approx(7 + 5 + 5 + 4 + 2 + 2 + 2)
    # one spending month: two basins of zero months, both dying at its level; the rest padding
    points = [(second[f"pd_{i:02d}_birth"], second[f"pd_{i:02d}_death"], second[f"pd_{i:02d}_mask"]) for i in range(p)]
    np.testing.assert_allclose(points, [(0, 2, 1), (0, 2, 1)] + [(0, 0, 0)] * (p - 2), atol=1e-9)


def test_diagram_points_order_pad_and_truncate():
    nan = np.nan
    births = np.array([[nan, 1.0, nan, 0.0, 2.0, 0.5], [nan] * 6, [3.0, nan, nan, nan, nan, nan]])
    deaths = np.array([[nan, 4.0, nan, 3.0, 3.0, 9.0], [nan] * 6, [3.0, nan, nan, nan, nan, nan]])
    birth, death, mask = feat.diagram_points(births, deaths, 3)
    # lifetimes 3, 3, 1, 8.5: 8.5 first, the two 3s by birth (0 before 1), the 1 cut off at p = 3
    assert birth.tolist() == [[0.5, 0.0, 1.0], [0, 0, 0], [3.0, 0, 0]]
    assert death.tolist() == [[9.0, 3.0, 4.0], [0, 0, 0], [3.0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 0], [1, 0, 0]]  # a zero-lifetime point is a real point
    assert feat.diagram_points(births, deaths, 8)[2].sum(1).tolist() == [4, 0, 1]  # p > series length: padded


def test_diagram_columns_are_unscaled_zero_filled_and_routed_to_persistence(v3):
    features, scaler = v3["table"]["features"], v3["pipeline"]["scaler"]
    pd_cols = [c for c in features.columns if c.startswith("pd_")]
    assert len(pd_cols) == 3 * feat.DIAGRAM_POINTS
    assert not [c for c in scaler["feature"] if c.startswith(("pd_", "seq_"))] and "pers_max" in scaler["feature"].to_list()
    schema = v3["table"]["schema"]
    assert set(schema.filter(pl.col("column").is_in(pd_cols))["group"]) == {"persistence"}
    masks = features.select(pl.col("^pd_.._mask$")).to_numpy()
    assert set(np.unique(masks)) <= {0.0, 1.0} and (np.diff(masks, axis=1) <= 0).all()  # real points first
    births, deaths = features.select(pl.col("^pd_.._birth$")).to_numpy(), features.select(pl.col("^pd_.._death$")).to_numpy()
    assert (np.diff(deaths - births, axis=1)[masks[:, 1:] == 1] <= 1e-12).all()  # lifetimes descending
    # the top point's lifetime is the (unscaled) pers_max
    mean, std = scaler.filter(pl.col("feature") == "pers_max").select("mean", "std").row(0)
    has = masks[:, 0] == 1
    assert (deaths - births)[has, 0] == pytest.approx(features["pers_max"].to_numpy()[has] * std + mean, abs=1e-6)
    # customers without a transaction before the cutoff have an empty (all-zero) diagram
    active = v3["transactions"].filter(pl.col("ts") < CUT)["ncodpers"].unique()
    empty = features.filter(~pl.col("ncodpers").is_in(active.implode())).select(pd_cols)
    assert empty.height > 0 and empty.to_numpy().max() == 0 and empty.to_numpy().min() == 0
