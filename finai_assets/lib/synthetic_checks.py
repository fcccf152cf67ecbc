"""The checks every synthetic version must pass, with their default thresholds (docs/thresholds.md).

schema (raw pandera contracts) -> quality (SDMetrics vs the real profile sample) -> privacy
(distance to closest record, exact matches) -> self-replication (no column a copy or function
of another, none reproducing the ground truth) -> recipe promises (stickiness, MCC boost,
segment / acquisition / flip rates, base-rate disparate impact). Each returns a
`CheckOutcome`. sdmetrics is imported inside the function that needs it; pandas appears only at
that boundary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings

import numpy as np
import pandera.errors
import polars as pl

from finai_assets.lib.protected import DECLARED_GROUPS, SNAPSHOT_COLUMNS, disparate_impact, fit_income_edges, protected_groups
from finai_assets.lib.raw import MAX_AGE, SNAPSHOT_SCHEMA, TRANSACTION_SCHEMA
from finai_assets.lib.schema import (
    DEFAULT_CUTOFF,
    PRODUCT_COLUMNS,
    PRODUCT_GROUPS,
    product_column,
)
from finai_assets.lib.simulate import EVENTS, LATENTS
from finai_assets.lib.stats import column_codes, conditional_entropy_ratio
from finai_assets.lib.synthetic import SDV_CATEGORICAL, SDV_COLUMNS, Recipe, measured_stickiness


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    summary: str
    metadata: dict  # JSON-friendly scalars / strings, or small polars tables


@dataclasses.dataclass(frozen=True)
class SyntheticThresholds:
    """Defaults (docs/thresholds.md#synthetic-data)."""

    quality_overall: float = 0.80
    quality_column_shapes: float = 0.85
    quality_pair_trends: float = 0.70
    diagnostic: float = 1.0
    dcr_ratio: float = 0.9
    stickiness_tolerance: float = 0.03
    self_replication: float = 0.01
    di_band: tuple[float, float] = (0.5, 0.95)
    di_min_attributes: int = 3
    # Every protected group must reach the fairness minimum (100) in a 15 % test split.
    min_group_customers: int = math.ceil(100 / 0.15)


DEFAULT_THRESHOLDS = SyntheticThresholds()
QUALITY_MAX_ROWS = 2_000
MISSING = "missing"

# Valid values of each numerical profile column by definition (raw contract / construction),
# as sdmetrics column metadata. The diagnostic judges validity against these rather than the
# extremes of a 2,000-row sample (synthetic behaviour legitimately reaches past them).
PROFILE_DOMAINS: dict[str, dict] = {
    "age": {"range_min": 0, "range_max": MAX_AGE, "range_is_nullable": True},
    "renta": {"range_min": 0, "range_max": math.inf, "range_is_nullable": True},
    "antiguedad": {"range_min": 0, "range_max": math.inf, "range_is_nullable": True},
    "n_products_first": {"range_min": 0, "range_max": len(PRODUCT_COLUMNS), "range_is_nullable": False},
    "txn_per_month": {"range_min": 0, "range_max": math.inf, "range_is_nullable": False},
    "log_amount_mean": {"range_min": 0, "range_max": math.inf, "range_is_nullable": True},  # no transactions
}
assert set(PROFILE_DOMAINS) == set(SDV_COLUMNS) - set(SDV_CATEGORICAL)

# Functional dependencies the raw schema itself has (X -> Y), allowed to be deterministic.
SCHEMA_DEPENDENCIES: frozenset[tuple[str, str]] = frozenset(
    {
        ("cod_prov", "nomprov"),
        ("nomprov", "cod_prov"),
        ("pais_residencia", "indresi"),
        ("fecha_alta", "antiguedad"),
        ("antiguedad", "fecha_alta"),  # months since fecha_alta, at one fecha_dato
        ("antiguedad", "ind_nuevo"),
        ("fecha_alta", "ind_nuevo"),
        ("ind_actividad_cliente", "tiprel_1mes"),  # tiprel_1mes A / I = active / inactive
        ("tiprel_1mes", "ind_actividad_cliente"),
    }
)
REPLICATION_KEYS = ("ncodpers", "fecha_dato")
REPLICATION_FLAG_SUFFIXES = ("_missing", "_sentinel")


# ------------------------------------------------------------------ schema


def check_schema(snapshots: pl.DataFrame, transactions: pl.DataFrame) -> CheckOutcome:
    """Synthetic snapshots and transactions satisfy exactly the raw contracts."""
    errors = {}
    for name, contract, frame in (
        ("snapshots", SNAPSHOT_SCHEMA, snapshots),
        ("transactions", TRANSACTION_SCHEMA, transactions),
    ):
        try:
            contract.validate(frame)
        except (pandera.errors.SchemaError, pandera.errors.SchemaErrors) as exc:
            errors[name] = str(exc)
    summary = "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in errors.items()) or (
        f"{snapshots.height} snapshot rows and {transactions.height} transactions match the raw contracts"
    )
    return CheckOutcome(
        not errors,
        summary,
        {"snapshot_rows": snapshots.height, "transaction_rows": transactions.height,
         **{f"{k}_error": v for k, v in errors.items()}},
    )


# ------------------------------------------------------------------ quality


def _sdmetrics_frame(profiles: pl.DataFrame):
    return profiles.select(SDV_COLUMNS).with_columns(
        pl.col(c).cast(pl.Utf8) for c in SDV_CATEGORICAL
    ).with_columns(pl.col(c).cast(pl.Float64) for c in PROFILE_DOMAINS).to_pandas()


def check_quality(real_profiles: pl.DataFrame, synthetic_profiles: pl.DataFrame,
                  thresholds: SyntheticThresholds = DEFAULT_THRESHOLDS, seed: int = 0,
                  real_domain: pl.DataFrame | None = None) -> CheckOutcome:
    """SDMetrics quality and diagnostic reports on the SDV columns (<= 2,000 seeded rows each).
    The diagnostic judges category adherence against `real_domain` (the synthesizer's whole
    training set) when given: a category SDV learnt from a row outside the sample is valid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the single-table reports are deprecated
        from sdmetrics.reports.single_table import DiagnosticReport, QualityReport

    real = _sdmetrics_frame(real_profiles.sample(min(QUALITY_MAX_ROWS, real_profiles.height), seed=seed))
    synth = _sdmetrics_frame(synthetic_profiles.sample(min(QUALITY_MAX_ROWS, synthetic_profiles.height), seed=seed))
    sdtypes = {c: {"sdtype": "categorical" if c in SDV_CATEGORICAL else "numerical"} for c in SDV_COLUMNS}
    with_domains = {c: {**meta, **PROFILE_DOMAINS.get(c, {})} for c, meta in sdtypes.items()}
    quality, diagnostic = QualityReport(), DiagnosticReport()
    quality.generate(real, synth, {"columns": sdtypes}, verbose=False)
    domain = real if real_domain is None else _sdmetrics_frame(real_domain)
    diagnostic.generate(domain, synth, {"columns": with_domains}, verbose=False)
    props = dict(quality.get_properties()[["Property", "Score"]].itertuples(index=False))
    shapes = quality.get_details("Column Shapes")
    validity = diagnostic.get_details("Data Validity")
    scores = {
        "overall": float(quality.get_score()),
        "column_shapes": float(props["Column Shapes"]),
        "column_pair_trends": float(props["Column Pair Trends"]),
        "diagnostic": float(diagnostic.get_score()),
    }
    limits = {
        "overall": thresholds.quality_overall,
        "column_shapes": thresholds.quality_column_shapes,
        "column_pair_trends": thresholds.quality_pair_trends,
        "diagnostic": thresholds.diagnostic,
    }
    failed = [k for k in scores if scores[k] < limits[k]]
    worst = shapes.sort_values("Score").head(3)
    summary = ", ".join(f"{k} {v:.3f}{' < ' + str(limits[k]) if k in failed else ''}" for k, v in scores.items())
    summary += "; weakest column shapes " + ", ".join(f"{c} {s:.2f}" for c, s in zip(worst["Column"], worst["Score"]))
    return CheckOutcome(
        not failed,
        summary,
        {
            **scores,
            "real_rows": len(real),
            "synthetic_rows": len(synth),
            "column_shape_scores": pl.DataFrame({"column": shapes["Column"].tolist(), "metric": shapes["Metric"].tolist(),
                                                 "score": shapes["Score"].astype(float).tolist()}),
            "validity_scores": pl.DataFrame({"column": validity["Column"].tolist(), "metric": validity["Metric"].tolist(),
                                             "score": validity["Score"].astype(float).tolist()}),
        },
    )


# ------------------------------------------------------------------ privacy


def privacy_space(frame: pl.DataFrame, reference: pl.DataFrame, columns: tuple[str, ...] = SDV_COLUMNS) -> np.ndarray:
    """Numerics standardised on `reference` (null -> 0 plus a null indicator), categoricals
    one-hot over the reference's levels (null is a level; unseen levels are all-zero)."""
    numeric = [c for c in columns if c not in SDV_CATEGORICAL]
    stats = reference.select(
        *[pl.col(c).cast(pl.Float64).mean().alias(f"{c}_mean") for c in numeric],
        *[pl.col(c).cast(pl.Float64).std().alias(f"{c}_std") for c in numeric],
    ).row(0, named=True)
    scaled = frame.select(
        ((pl.col(c).cast(pl.Float64) - stats[f"{c}_mean"]) / (stats[f"{c}_std"] or 1.0)).fill_null(0.0) for c in numeric
    ).to_numpy()
    null = frame.select(pl.col(c).is_null() for c in numeric).to_numpy()
    one_hot = []
    for c in columns:
        if c in SDV_CATEGORICAL:
            levels = reference[c].cast(pl.Utf8).fill_null(MISSING).unique().sort().to_numpy()
            values = frame[c].cast(pl.Utf8).fill_null(MISSING).to_numpy()
            one_hot.append(values[:, None] == levels[None, :])
    return np.hstack([scaled, null, *one_hot]).astype(np.float64)


def distance_to_closest(query: np.ndarray, reference: np.ndarray, block: int = 1024) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row (blockwise)."""
    ref_sq = (reference**2).sum(1)
    out = np.empty(query.shape[0])
    for start in range(0, query.shape[0], block):
        q = query[start:start + block]
        d2 = (q**2).sum(1)[:, None] + ref_sq[None, :] - 2.0 * q @ reference.T
        out[start:start + block] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def exact_match_rate(frame: pl.DataFrame, reference: pl.DataFrame, columns: tuple[str, ...] = SDV_COLUMNS) -> float:
    """Share of `frame` rows identical (nulls equal) to some `reference` row on `columns`."""
    keys = list(columns)
    matched = frame.select(keys).join(reference.select(keys).unique(), on=keys, how="semi", nulls_equal=True)
    return matched.height / max(frame.height, 1)


def check_privacy(real_train: pl.DataFrame, real_holdout: pl.DataFrame, synthetic_profiles: pl.DataFrame,
                  thresholds: SyntheticThresholds = DEFAULT_THRESHOLDS, seed: int = 0) -> CheckOutcome:
    """Synthetic rows are no closer to the real train rows than real holdout rows are."""
    synth = synthetic_profiles.sample(min(real_holdout.height, synthetic_profiles.height), seed=seed)
    train_space = privacy_space(real_train, real_train)
    dcr_synth = distance_to_closest(privacy_space(synth, real_train), train_space)
    dcr_holdout = distance_to_closest(privacy_space(real_holdout, real_train), train_space)
    m = {
        "dcr_median_synthetic": float(np.median(dcr_synth)),
        "dcr_median_holdout": float(np.median(dcr_holdout)),
        "dcr_p5_synthetic": float(np.percentile(dcr_synth, 5)),
        "dcr_p5_holdout": float(np.percentile(dcr_holdout, 5)),
        "exact_match_synthetic": exact_match_rate(synth, real_train),
        "exact_match_holdout": exact_match_rate(real_holdout, real_train),
    }
    failed = []
    for stat in ("median", "p5"):
        if m[f"dcr_{stat}_synthetic"] < thresholds.dcr_ratio * m[f"dcr_{stat}_holdout"]:
            failed.append(f"DCR {stat} {m[f'dcr_{stat}_synthetic']:.3f} < {thresholds.dcr_ratio} x holdout "
                          f"{m[f'dcr_{stat}_holdout']:.3f}")
    if m["exact_match_synthetic"] > m["exact_match_holdout"]:
        failed.append(f"exact-match rate {m['exact_match_synthetic']:.3f} > holdout {m['exact_match_holdout']:.3f}")
    summary = "; ".join(failed) or (
        f"DCR to train: synthetic median {m['dcr_median_synthetic']:.3f} / p5 {m['dcr_p5_synthetic']:.3f} vs holdout "
        f"{m['dcr_median_holdout']:.3f} / {m['dcr_p5_holdout']:.3f}; exact matches {m['exact_match_synthetic']:.3f} "
        f"vs {m['exact_match_holdout']:.3f}"
    )
    return CheckOutcome(not failed, summary, {**m, "synthetic_rows": synth.height, "train_rows": real_train.height,
                                              "holdout_rows": real_holdout.height})


# ------------------------------------------------------------------ self-replication


def _snapshot_at(snapshots: pl.DataFrame, month: dt.date) -> pl.DataFrame:
    return snapshots.filter(pl.col("fecha_dato") == month)


def check_self_replication(snapshots: pl.DataFrame, ground_truth: pl.DataFrame,
                           thresholds: SyntheticThresholds = DEFAULT_THRESHOLDS,
                           cutoff: dt.date = DEFAULT_CUTOFF) -> CheckOutcome:
    """On the snapshot at the cutoff: no column is a copy or deterministic function of another
    (beyond SCHEMA_DEPENDENCIES), and none reproduces the persona or a binned latent."""
    snap = _snapshot_at(snapshots, cutoff)
    if snap.is_empty():
        return CheckOutcome(False, f"no synthetic snapshot at the cutoff {cutoff}", {"rows": 0})
    columns = [c for c in snap.columns if c not in REPLICATION_KEYS and not c.endswith(REPLICATION_FLAG_SUFFIXES)]
    codes = {c: column_codes(snap[c]) for c in columns}
    constant = [c for c in columns if np.unique(codes[c]).size == 1]
    varying = [c for c in columns if c not in constant]
    pairs = pl.DataFrame(
        [
            (x, y, conditional_entropy_ratio(codes[x], codes[y]), (x, y) in SCHEMA_DEPENDENCIES)
            for x in varying for y in varying if x != y
        ],
        schema={"x": pl.Utf8, "y": pl.Utf8, "ratio": pl.Float64, "allowed": pl.Boolean}, orient="row",
    )
    deterministic = pairs.filter(pl.col("ratio") <= thresholds.self_replication).sort("ratio")
    offending = deterministic.filter(~pl.col("allowed"))
    truth = snap.select("ncodpers").join(ground_truth, on="ncodpers", how="left", maintain_order="left")
    truth_codes = {"persona": column_codes(truth["persona"]), **{k: column_codes(truth[k]) for k in LATENTS}}
    truth_pairs = pl.DataFrame(
        [(x, g, conditional_entropy_ratio(codes[x], v)) for g, v in truth_codes.items() for x in varying],
        schema={"column": pl.Utf8, "ground_truth": pl.Utf8, "ratio": pl.Float64}, orient="row",
    )
    leaked = truth_pairs.filter(pl.col("ratio") <= thresholds.self_replication).sort("ratio")
    free = pairs.filter(~pl.col("allowed"))
    problems = [f"{x}->{y} ({r:.4f})" for x, y, r in offending.select("x", "y", "ratio").iter_rows()]
    problems += [f"{x} reproduces {g} ({r:.4f})" for x, g, r in leaked.iter_rows()]
    summary = ("copies / functions: " + ", ".join(problems)) if problems else (
        f"{len(varying)} columns, no pair below H(Y|X)/H(Y) {thresholds.self_replication} outside the schema's own "
        f"dependencies (lowest {free['ratio'].min():.3f}); no column reproduces the ground truth "
        f"(lowest {truth_pairs['ratio'].min():.3f})"
    )
    return CheckOutcome(
        not problems,
        summary,
        {
            "rows": snap.height,
            "columns_compared": len(varying),
            "constant_columns": ", ".join(constant),
            "allowed_dependencies_found": ", ".join(f"{x}->{y}" for x, y in deterministic.filter("allowed").select("x", "y").iter_rows()),
            "min_ratio_not_allowed": float(free["ratio"].min()),
            "min_ratio_ground_truth": float(truth_pairs["ratio"].min()),
            "offending_pairs": offending.drop("allowed"),
            "ground_truth_leaks": leaked,
        },
    )


# ------------------------------------------------------------------ recipe promises


def mcc_boost_ratios(transactions: pl.DataFrame, ground_truth: pl.DataFrame, vocabulary: pl.Series) -> pl.DataFrame:
    """Per persona: mean share of its 5 most used MCCs / mean share of the other vocabulary MCCs."""
    counts = (
        transactions.select("ncodpers", "mcc")
        .join(ground_truth.select("ncodpers", "persona"), on="ncodpers")
        .filter(pl.col("mcc").is_in(vocabulary.implode()))
        .group_by("persona", "mcc").len()
    )
    grid = counts.select("persona").unique().join(pl.DataFrame({"mcc": vocabulary.cast(counts["mcc"].dtype)}), how="cross")
    shares = grid.join(counts, on=["persona", "mcc"], how="left").with_columns(pl.col("len").fill_null(0)).with_columns(
        share=pl.col("len") / pl.col("len").sum().over("persona"),
        top=pl.col("len").rank("ordinal", descending=True).over("persona") <= 5,
    )
    return shares.group_by("persona").agg(
        boost_ratio=pl.col("share").filter(pl.col("top")).mean() / pl.col("share").filter(~pl.col("top")).mean()
    ).sort("persona")


def segment_move_rates(snapshots: pl.DataFrame) -> pl.DataFrame:
    """Per month t: share of customers with non-null segmento at t and t+1 whose segmento changed."""
    seg = snapshots.select("ncodpers", "fecha_dato", "segmento").drop_nulls("segmento")
    nxt = seg.select("ncodpers", pl.col("fecha_dato").dt.offset_by("-1mo"), segmento_next="segmento")
    return (
        seg.join(nxt, on=["ncodpers", "fecha_dato"])
        .group_by("fecha_dato")
        .agg(customers=pl.len(), rate=(pl.col("segmento") != pl.col("segmento_next")).mean())
        .sort("fecha_dato")
    )


def acquisitions(snapshots: pl.DataFrame) -> pl.DataFrame:
    """Per customer present at months t and t+1: whether it acquired (flag 0 / null -> 1) at
    least one product of each group, and of any product."""
    flags = snapshots.select("ncodpers", "fecha_dato", *PRODUCT_COLUMNS)
    nxt = flags.select("ncodpers", pl.col("fecha_dato").dt.offset_by("-1mo"), *[pl.col(c).alias(f"{c}_next") for c in PRODUCT_COLUMNS])
    acquired = {c: (pl.col(c).fill_null(0) == 0) & (pl.col(f"{c}_next").fill_null(0) == 1) for c in PRODUCT_COLUMNS}
    return flags.join(nxt, on=["ncodpers", "fecha_dato"]).select(
        "ncodpers",
        "fecha_dato",
        *[pl.any_horizontal(acquired[product_column(p)] for p in products).alias(g) for g, products in PRODUCT_GROUPS.items()],
        any_product=pl.any_horizontal(acquired.values()),
    )


def group_acquisition_rates(snapshots: pl.DataFrame) -> pl.DataFrame:
    """Per month t (rows) and product group (columns): monthly acquisition rate."""
    return acquisitions(snapshots).group_by("fecha_dato").agg(
        customers=pl.len(), **{g: pl.col(g).mean() for g in PRODUCT_GROUPS}
    ).sort("fecha_dato")


def flip_rates(ground_truth: pl.DataFrame) -> pl.DataFrame:
    """Per event: flipped rows / (2 x realised positives). The ground truth keeps no outcome,
    so realised positives are the expected count, the sum of `p_<event>`."""
    return pl.DataFrame(
        {
            "event": EVENTS,
            "flipped": [ground_truth[f"flipped_{e}"].sum() for e in EVENTS],
            "expected_positives": [ground_truth[f"p_{e}"].sum() for e in EVENTS],
        }
    ).with_columns(flip_rate=pl.col("flipped") / (2 * pl.col("expected_positives")))


def base_rate_disparate_impact(snapshots: pl.DataFrame, ground_truth: pl.DataFrame,
                               cutoff: dt.date = DEFAULT_CUTOFF) -> pl.DataFrame:
    """Per group of each protected attribute (customers present at the cutoff and the month
    after): the true base rate of the post-cutoff 'acquires anything' event (mean of the ground
    truth's `p_acquire_any`, free of sampling noise in small groups) beside the realised rate."""
    outcome = acquisitions(snapshots).filter(pl.col("fecha_dato") == cutoff).select("ncodpers", "any_product")
    snap = _snapshot_at(snapshots, cutoff).select(SNAPSHOT_COLUMNS)
    joined = (
        protected_groups(snap, fit_income_edges(snap["renta"]))
        .join(outcome, on="ncodpers")
        .join(ground_truth.select("ncodpers", "p_acquire_any"), on="ncodpers")
    )
    return pl.concat(
        joined.group_by(attribute).agg(
            customers=pl.len(), rate=pl.col("p_acquire_any").mean(), realised_rate=pl.col("any_product").mean()
        )
        .select(attribute=pl.lit(attribute), group=pl.col(attribute), customers="customers", rate="rate",
                realised_rate="realised_rate")
        for attribute in DECLARED_GROUPS
    ).sort("attribute", "group")


def _within(value: float, band: tuple[float, float]) -> bool:
    return band[0] <= value <= band[1]


def check_recipe(snapshots: pl.DataFrame, transactions: pl.DataFrame, ground_truth: pl.DataFrame, recipe: Recipe,
                 thresholds: SyntheticThresholds = DEFAULT_THRESHOLDS, cutoff: dt.date = DEFAULT_CUTOFF,
                 mcc_vocabulary: pl.Series | None = None) -> CheckOutcome:
    """Every promise of `recipe` holds on the generated data. The MCC vocabulary defaults to the
    codes the transactions use (the generator draws only from the calibration's vocabulary)."""
    stickiness = measured_stickiness(transactions)
    vocabulary = transactions["mcc"].unique() if mcc_vocabulary is None else mcc_vocabulary
    boost = mcc_boost_ratios(transactions, ground_truth, vocabulary)
    boost_median = float(boost["boost_ratio"].median())
    segment = segment_move_rates(snapshots)
    acquisition = group_acquisition_rates(snapshots)
    flips = flip_rates(ground_truth)
    flip_rate = float(flips["flip_rate"].mean())
    rates = base_rate_disparate_impact(snapshots, ground_truth, cutoff)
    spread = rates.group_by("attribute").agg(low=pl.col("rate").min(), high=pl.col("rate").max())
    ratios = dict(zip(spread["attribute"], disparate_impact(spread["low"].to_numpy(), spread["high"].to_numpy())))
    di = {a: float(ratios[a]) for a in DECLARED_GROUPS}
    di_inside = [a for a, v in di.items() if _within(v, thresholds.di_band)]
    promises = {
        "stickiness": (abs(stickiness - recipe.mcc_stickiness) <= thresholds.stickiness_tolerance,
                       f"stickiness {stickiness:.3f} vs {recipe.mcc_stickiness} +- {thresholds.stickiness_tolerance}"),
        "mcc_boost": (_within(boost_median, recipe.mcc_boost_band),
                      f"median MCC boost ratio {boost_median:.2f} vs band {recipe.mcc_boost_band}"),
        "segment_moves": (segment["rate"].is_between(*recipe.segment_band).all(),
                          f"monthly segment move rate {segment['rate'].min():.3f}-{segment['rate'].max():.3f} vs band "
                          f"{recipe.segment_band}"),
        "flip_rate": (_within(flip_rate, recipe.flip_band), f"flip rate {flip_rate:.4f} vs band {recipe.flip_band}"),
        "disparate_impact": (len(di_inside) >= thresholds.di_min_attributes,
                             f"{len(di_inside)} attributes with DI in {thresholds.di_band} ("
                             + ", ".join(f"{a} {v:.2f}" for a, v in di.items()) + f"), need {thresholds.di_min_attributes}"),
    }
    smallest = rates.sort("customers").row(0, named=True)
    promises["protected_group_sizes"] = (
        smallest["customers"] >= thresholds.min_group_customers,
        f"smallest protected group {smallest['attribute']}={smallest['group']} has {smallest['customers']} customers "
        f"(minimum {thresholds.min_group_customers})",
    )
    group_rates = acquisition.select(*PRODUCT_GROUPS).to_numpy()
    if recipe.acquisition_band is not None:
        lo, hi = recipe.acquisition_band
        promises["acquisition"] = (bool(((group_rates >= lo) & (group_rates <= hi)).all()),
                                   f"monthly group acquisition rate {group_rates.min():.3f}-{group_rates.max():.3f} "
                                   f"vs band {recipe.acquisition_band}")
    broken = [text for ok, text in promises.values() if not ok]
    return CheckOutcome(
        not broken,
        ("broken: " + "; ".join(broken)) if broken else "; ".join(text for _, text in promises.values()),
        {
            "recipe": recipe.name,
            **{f"{name}_passed": bool(ok) for name, (ok, _) in promises.items()},
            "stickiness": stickiness,
            "mcc_boost_median": boost_median,
            "segment_rate_min": float(segment["rate"].min()),
            "segment_rate_max": float(segment["rate"].max()),
            "acquisition_rate_min": float(group_rates.min()),
            "acquisition_rate_max": float(group_rates.max()),
            "flip_rate": flip_rate,
            **{f"di_{a}": v for a, v in di.items()},
            "mcc_boost_by_persona": boost,
            "segment_rates": segment,
            "acquisition_rates": acquisition,
            "flip_rates": flips,
            "group_rates": rates,
        },
    )

