"""The 18 candidate labels (docs/labels.md), their registry, and the customer-level split.

Cutoff month `c` is inclusive: features see snapshots <= c and transactions with ts before the
end of day c (`cutoff_instant`). Labels come only from after it: the snapshot at c+1 and the
transaction window W = the 30 days after the cutoff instant. The population is every customer
with a snapshot at c.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl

from finai_assets.lib.schema import DEFAULT_CUTOFF, PRODUCT_COLUMNS, PRODUCT_GROUPS, PRODUCTS, SEGMENTS, month_date, month_index, product_column
from finai_assets.lib.stats import stable_hash
from finai_assets.lib.timeline import cutoff_instant

GROUPS: tuple[str, ...] = tuple(PRODUCT_GROUPS)
WINDOW = dt.timedelta(days=30)
LAST_K_BEFORE = 30  # top_mcc_shift compares W with the last 30 transactions before the cutoff
NBA_SEED = 20160428
INCOME_TIER_EDGES = (30_000.0, 80_000.0, 200_000.0)
TENURE_STAGE_EDGES = (6, 24, 60, 120)

# The time windows before the cutoff a source column can be read in (the others: "c+1", "W").
PRE_CUTOFF_WINDOWS = ("at_c", "c-5..c", "before_cutoff")


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    type: str  # binary | multiclass | regression
    classes: int | None
    group: str | None  # task group (None: not expected to be a task)
    loss: str
    sources: tuple[tuple[str, str], ...]  # (column, window)
    expected: str  # kept | dropped
    reason: str

    @property
    def pre_cutoff_only(self) -> bool:
        return all(w in PRE_CUTOFF_WINDOWS for _, w in self.sources)


def _acquire(group: str) -> Candidate:
    cols = tuple(product_column(p) for p in PRODUCT_GROUPS[group])
    return Candidate(
        f"will_acquire_{group}", "binary", 2, "consumption", "focal",
        tuple((c, "at_c") for c in cols) + tuple((c, "c+1") for c in cols),
        "kept", f"acquisition of a {group} product at c+1: a future event",
    )


FLAGS_AT = lambda window: tuple((c, window) for c in PRODUCT_COLUMNS)  # noqa: E731

REGISTRY: tuple[Candidate, ...] = (
    Candidate("churn_signal", "binary", 2, "lifecycle", "focal", FLAGS_AT("c-5..c") + FLAGS_AT("c+1"),
              "kept", "product count falls at c+1 below 0.7 x its recent mean: a future event"),
    *(_acquire(g) for g in GROUPS),
    Candidate("top_mcc_shift", "binary", 2, "engagement", "focal", (("mcc", "before_cutoff"), ("mcc", "W")),
              "kept", "modal MCC of the next 30 days differs from the recent one: future behaviour"),
    Candidate("nba_primary", "multiclass", 6, "consumption", "cross_entropy", FLAGS_AT("at_c") + FLAGS_AT("c+1"),
              "kept", "group of a product acquired at c+1 (hash tie-break), 0 = none"),
    Candidate("next_mcc", "multiclass", 50, "engagement", "cross_entropy", (("mcc", "W"), ("ts", "W")),
              "kept", "MCC of the first transaction after the cutoff"),
    Candidate("segment_prediction", "multiclass", 3, "lifecycle", "cross_entropy", (("segmento", "c+1"),),
              "kept", "segment at c+1; judged by skill over carrying the current segment forward"),
    Candidate("product_stability", "regression", None, "lifecycle", "huber", FLAGS_AT("at_c") + FLAGS_AT("c+1"),
              "kept", "share of products held at c still held at c+1"),
    Candidate("cross_sell_count", "regression", None, "consumption", "huber", FLAGS_AT("at_c") + FLAGS_AT("c+1"),
              "kept", "number of products acquired at c+1"),
    Candidate("mcc_diversity_trend", "regression", None, "value", "huber", (("mcc", "before_cutoff"), ("mcc", "W")),
              "kept", "distinct MCCs after vs before the cutoff"),
    Candidate("has_nba", "binary", 2, None, "focal", FLAGS_AT("at_c") + FLAGS_AT("c+1"),
              "dropped", "redundant: has_nba = (nba_primary != 0) = (cross_sell_count > 0)"),
    Candidate("income_tier", "multiclass", 4, None, "cross_entropy", (("renta", "at_c"),),
              "dropped", "deterministic: a bucketing of renta, itself a feature"),
    Candidate("tenure_stage", "multiclass", 5, None, "cross_entropy", (("antiguedad", "at_c"),),
              "dropped", "deterministic: a bucketing of tenure, itself a feature"),
    Candidate("spend_level", "multiclass", 4, None, "cross_entropy", (("amount", "before_cutoff"),),
              "dropped", "deterministic: a bucketing of monthly spend before c, itself a feature"),
    Candidate("engagement_score", "regression", None, None, "huber",
              (("ind_actividad_cliente", "at_c"), ("ts", "before_cutoff"), *FLAGS_AT("at_c")),
              "dropped", "deterministic: a linear mix of activity, transaction frequency and product count"),
)
CANDIDATES: dict[str, Candidate] = {c.name: c for c in REGISTRY}
assert len(CANDIDATES) == 18


def month_after(month: dt.date) -> dt.date:
    return month_date(month_index(month) + 1)


def _product_count(prefix: str = "") -> pl.Expr:
    return pl.sum_horizontal(pl.col(f"{prefix}{c}").fill_null(0) for c in PRODUCT_COLUMNS)


def candidate_labels(snapshots: pl.DataFrame, transactions: pl.DataFrame, cutoff: dt.date = DEFAULT_CUTOFF) -> pl.DataFrame:
    """One row per customer present at the cutoff: `present_next` and the 18 candidates (null
    where the label semantics say). `next_mcc` is the raw MCC code here: its class (top-49 + other) needs
    the vocabulary fitted on the train split."""
    nxt = month_after(cutoff)
    at_c = snapshots.filter(pl.col("fecha_dato") == cutoff)
    at_next = snapshots.filter(pl.col("fecha_dato") == nxt).select(
        "ncodpers", pl.col("segmento").alias("segmento_next"), *[pl.col(c).alias(f"n_{c}") for c in PRODUCT_COLUMNS]
    )
    frame = at_c.select("ncodpers", "segmento", "renta", "antiguedad", "ind_actividad_cliente", *PRODUCT_COLUMNS).join(
        at_next.with_columns(present_next=pl.lit(True)), on="ncodpers", how="left"
    ).with_columns(pl.col("present_next").fill_null(False))
    acquired = {p: (pl.col(product_column(p)).fill_null(0) == 0) & (pl.col(f"n_{product_column(p)}") == 1) for p in PRODUCTS}
    absent = ~pl.col("present_next")
    null_if_absent = lambda e: pl.when(absent).then(None).otherwise(e)  # noqa: E731
    count_c, count_next = _product_count(), _product_count("n_")
    frame = frame.with_columns(
        **{f"will_acquire_{g}": null_if_absent(pl.any_horizontal(acquired[p] for p in ps).cast(pl.Int8)) for g, ps in PRODUCT_GROUPS.items()},
        has_nba=null_if_absent(pl.any_horizontal(acquired.values()).cast(pl.Int8)),
        cross_sell_count=null_if_absent(pl.sum_horizontal(acquired.values()).cast(pl.Float64)),
        product_stability=pl.when(absent | (count_c == 0)).then(None).otherwise(
            pl.sum_horizontal((pl.col(c).fill_null(0) == 1) & (pl.col(f"n_{c}") == 1) for c in PRODUCT_COLUMNS) / count_c
        ),
        segment_prediction=pl.col("segmento_next").replace_strict({s: i for i, s in enumerate(SEGMENTS)}, default=None, return_dtype=pl.Int8),
        income_tier=pl.col("renta").cut(list(INCOME_TIER_EDGES), labels=[str(i) for i in range(4)]).cast(pl.Utf8).cast(pl.Int8),
        tenure_stage=pl.col("antiguedad").cut(list(TENURE_STAGE_EDGES), labels=[str(i) for i in range(5)], left_closed=True).cast(pl.Utf8).cast(pl.Int8),
        _count_c=count_c,
        _count_next=count_next,
    )
    frame = frame.join(_churn_history(snapshots, cutoff), on="ncodpers", how="left").with_columns(
        churn_signal=pl.when(absent | (pl.col("_months_history") < 3)).then(None).otherwise(
            ((pl.col("_count_next") < pl.col("_count_c")) & (pl.col("_count_next") < 0.7 * pl.col("_mean_history"))).cast(pl.Int8)
        )
    )
    frame = frame.join(_nba_primary(frame, acquired), on="ncodpers", how="left")
    frame = frame.join(_transaction_labels(transactions, cutoff), on="ncodpers", how="left").with_columns(
        pl.col("_spend_b", "_freq_b").fill_null(0)
    )
    # Quantile edges of the population's spend (fewer buckets when edges coincide on tiny data).
    spend_edges = sorted({frame["_spend_b"].quantile(q) for q in (1 / 3, 2 / 3, 0.9)})
    frame = frame.with_columns(
        spend_level=pl.col("_spend_b").cut(spend_edges, labels=[str(i) for i in range(len(spend_edges) + 1)])
        .cast(pl.Utf8).cast(pl.Int8),
        engagement_score=0.3 * pl.col("ind_actividad_cliente").fill_null(0)
        + 0.4 * pl.col("_freq_b") / pl.col("_freq_b").max()
        + 0.3 * pl.col("_count_c") / pl.col("_count_c").max(),
    )
    return frame.select("ncodpers", "present_next", *CANDIDATES).sort("ncodpers")


def _churn_history(snapshots: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    i = month_index(cutoff)
    months = [month_date(j) for j in range(max(0, i - 5), i + 1)]
    return (
        snapshots.filter(pl.col("fecha_dato").is_in(months))
        .group_by("ncodpers")
        .agg(_months_history=pl.len(), _mean_history=_product_count().mean())
    )


def _nba_primary(frame: pl.DataFrame, acquired: dict[str, pl.Expr]) -> pl.DataFrame:
    """Group (1-5) of one acquired product chosen by a seeded hash of (customer, product); 0 when
    nothing is acquired; null when absent at c+1. Never a fixed product priority."""
    long = frame.select("ncodpers", "present_next", *[acquired[p].alias(p) for p in PRODUCTS]).unpivot(
        index=["ncodpers", "present_next"], variable_name="product", value_name="acquired"
    ).filter(pl.col("acquired").fill_null(False))
    product_index = long["product"].replace_strict({p: i for i, p in enumerate(PRODUCTS)}, return_dtype=pl.Int64)
    group_of = {p: GROUPS.index(g) + 1 for g, ps in PRODUCT_GROUPS.items() for p in ps}
    chosen = (
        long.with_columns(
            _h=pl.Series(stable_hash(long["ncodpers"].to_numpy(), product_index.to_numpy(), seed=NBA_SEED)),
            _group=pl.col("product").replace_strict(group_of, return_dtype=pl.Int8),
        )
        .sort("ncodpers", "_h")
        .group_by("ncodpers", maintain_order=True)
        .first()
        .select("ncodpers", "_group")
    )
    return frame.select("ncodpers", "present_next").join(chosen, on="ncodpers", how="left").select(
        "ncodpers",
        nba_primary=pl.when(~pl.col("present_next")).then(None).otherwise(pl.col("_group").fill_null(0)).cast(pl.Int8),
    )


def _modal_mcc(txn: pl.DataFrame, name: str) -> pl.DataFrame:
    """Most frequent MCC per customer; ties go to the lowest MCC code."""
    return (
        txn.group_by("ncodpers", "mcc").len()
        .sort(["ncodpers", "len", "mcc"], descending=[False, True, False])
        .group_by("ncodpers", maintain_order=True).first()
        .select("ncodpers", pl.col("mcc").alias(name))
    )


def _transaction_labels(transactions: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    """top_mcc_shift, next_mcc, mcc_diversity_trend (window W after the cutoff) and the spend and
    frequency of the 30 days before it (sources of spend_level and engagement_score)."""
    cut = cutoff_instant(cutoff)
    before = transactions.filter(pl.col("ts") < cut)
    window = transactions.filter((pl.col("ts") >= cut) & (pl.col("ts") < cut + WINDOW))
    before_30d = before.filter(pl.col("ts") >= cut - WINDOW)
    last_k = before.sort("ts", descending=True).group_by("ncodpers", maintain_order=True).head(LAST_K_BEFORE)
    counts = (
        last_k.group_by("ncodpers").agg(_n_last=pl.len())
        .join(window.group_by("ncodpers").agg(_n_w=pl.len(), _distinct_w=pl.col("mcc").n_unique()), on="ncodpers", how="full", coalesce=True)
        .join(before_30d.group_by("ncodpers").agg(_distinct_b=pl.col("mcc").n_unique(), _spend_b=pl.col("amount").sum(), _freq_b=pl.len()),
              on="ncodpers", how="full", coalesce=True)
    )
    first = window.sort("ncodpers", "ts", "merchant_id").group_by("ncodpers", maintain_order=True).first().select(
        "ncodpers", next_mcc=pl.col("mcc")
    )
    out = (
        counts.join(_modal_mcc(last_k, "_mode_before"), on="ncodpers", how="left")
        .join(_modal_mcc(window, "_mode_w"), on="ncodpers", how="left")
        .join(first, on="ncodpers", how="left")
        .with_columns(pl.col("_n_last", "_n_w", "_distinct_w", "_distinct_b", "_freq_b").fill_null(0), pl.col("_spend_b").fill_null(0.0))
    )
    return out.select(
        "ncodpers",
        "next_mcc",
        "_spend_b",
        "_freq_b",
        top_mcc_shift=pl.when((pl.col("_n_last") < 3) | (pl.col("_n_w") < 3)).then(None).otherwise(
            (pl.col("_mode_w") != pl.col("_mode_before")).cast(pl.Int8)
        ),
        mcc_diversity_trend=pl.when((pl.col("_distinct_w") == 0) | (pl.col("_distinct_b") == 0)).then(None).otherwise(
            pl.col("_distinct_w") / pl.col("_distinct_b") - 1
        ),
    )


SPLITS: dict[str, float] = {"train": 0.65, "val": 0.10, "calib": 0.10, "test": 0.15}
STRATA_TASKS: tuple[str, ...] = ("churn_signal", *(f"will_acquire_{g}" for g in GROUPS))
SPLIT_SEED = 65101015


def split_assignments(labels: pl.DataFrame, shares: dict[str, float] = SPLITS, seed: int = SPLIT_SEED) -> pl.DataFrame:
    """Customer-level split, stratified on churn_signal + the five will_acquire labels (null is
    its own stratum value): inside each stratum customers are ordered by a seeded hash of their
    id and cut at the cumulative shares, so every stratum is split in the same proportions."""
    assert abs(sum(shares.values()) - 1) < 1e-9, shares
    edges = np.cumsum(list(shares.values()))
    order = stable_hash(labels["ncodpers"].to_numpy(), seed=seed)
    ranked = labels.select(
        "ncodpers",
        stratum=pl.concat_str([pl.col(t).cast(pl.Utf8).fill_null("n") for t in STRATA_TASKS]),
        _order=pl.Series(order),
    ).with_columns(
        _position=(pl.col("_order").rank("ordinal").over("stratum") - 0.5) / pl.len().over("stratum")
    )
    index = np.searchsorted(edges, ranked["_position"].to_numpy(), side="right").clip(0, len(shares) - 1)
    return ranked.select("ncodpers", "stratum", split=pl.Series(np.asarray(list(shares))[index])).sort("ncodpers")


PRODUCT_LABELS = ("churn_signal", *(f"will_acquire_{g}" for g in GROUPS), "nba_primary", "cross_sell_count", "has_nba")


def label_contract(labels: pl.DataFrame) -> list[str]:
    """Violations of the registry's types and of the absent-at-c+1 null rule (empty: all good)."""
    problems = []
    for c in REGISTRY:
        values = labels[c.name].drop_nulls()
        if c.type == "binary" and not values.is_in([0, 1]).all():
            problems.append(f"{c.name}: values outside {{0, 1}}")
        if c.type == "multiclass" and c.name != "next_mcc" and not values.is_between(0, c.classes - 1).all():
            problems.append(f"{c.name}: classes outside 0..{c.classes - 1}")
        if c.type == "regression" and not values.cast(pl.Float64).is_finite().all():
            problems.append(f"{c.name}: non-finite values")
    absent = ~labels["present_next"]
    for name in PRODUCT_LABELS:
        if not labels[name].filter(absent).is_null().all():
            problems.append(f"{name}: a value for a customer absent at c+1")
    for name in ("nba_primary", "cross_sell_count", "has_nba", *(f"will_acquire_{g}" for g in GROUPS)):
        if labels[name].filter(~absent).null_count():
            problems.append(f"{name}: null for a customer present at c+1")
    return problems


def split_balance(splits: pl.DataFrame, labels: pl.DataFrame, shares: dict[str, float] = SPLITS) -> pl.DataFrame:
    """Per split: its share vs the target, and each stratification label's positive rate vs the
    overall rate; `deviation` is the absolute difference."""
    joined = splits.join(labels.select("ncodpers", *STRATA_TASKS), on="ncodpers")
    overall = joined.select(pl.col(STRATA_TASKS).mean()).row(0, named=True)
    per_split = joined.group_by("split").agg(share=pl.len() / joined.height, **{t: pl.col(t).mean() for t in STRATA_TASKS})
    rows = [("share", s, r["share"], shares[s]) for r in per_split.iter_rows(named=True) for s in [r["split"]]]
    rows += [(t, r["split"], r[t], overall[t]) for r in per_split.iter_rows(named=True) for t in STRATA_TASKS]
    return pl.DataFrame(rows, schema=["measure", "split", "value", "target"], orient="row").with_columns(
        deviation=(pl.col("value") - pl.col("target")).abs()
    ).sort("measure", "split")


def pre_cutoff_sources(snapshots: pl.DataFrame, transactions: pl.DataFrame, cutoff: dt.date = DEFAULT_CUTOFF) -> pl.DataFrame:
    """The pre-cutoff source values the registry names, per customer present at the cutoff: what
    the screen tests the 'not a prediction task' candidates against."""
    cut = cutoff_instant(cutoff)
    before = transactions.filter((pl.col("ts") < cut) & (pl.col("ts") >= cut - WINDOW))
    spend = before.group_by("ncodpers").agg(spend_before=pl.col("amount").sum(), txn_count_before=pl.len())
    return (
        snapshots.filter(pl.col("fecha_dato") == cutoff)
        .select(
            "ncodpers", "renta", "antiguedad", "ind_actividad_cliente",
            product_count=_product_count(),
            segment_at_c=pl.col("segmento").replace_strict({s: i for i, s in enumerate(SEGMENTS)}, default=None, return_dtype=pl.Int8),
        )
        .join(spend, on="ncodpers", how="left")
        .with_columns(pl.col("spend_before", "txn_count_before").fill_null(0))
        .sort("ncodpers")
    )


# Registry sources (column, window) -> the pre_cutoff_sources column holding them.
SOURCE_COLUMNS: dict[tuple[str, str], str] = {
    ("renta", "at_c"): "renta",
    ("antiguedad", "at_c"): "antiguedad",
    ("amount", "before_cutoff"): "spend_before",
    ("ts", "before_cutoff"): "txn_count_before",
    ("ind_actividad_cliente", "at_c"): "ind_actividad_cliente",
    **{(c, "at_c"): "product_count" for c in PRODUCT_COLUMNS},
}
