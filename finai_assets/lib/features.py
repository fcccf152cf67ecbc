"""The feature pipeline (fitted on the train split only) and the feature table it produces.

`fit_pipeline` learns every data-dependent piece from train customers and pre-cutoff data:
scalers, vocabularies (channels, MCCs), the MCC hierarchy embedding, customer-product graph
embeddings of the products, and GMM personas. `transform` applies it to any customer, reading
only snapshots <= c and transactions before the end of day c, so perturbing anything after the
cutoff cannot change a feature. Every column belongs to a group, and every group is routed to
the experts that read it (`FEATURE_GROUPS`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl

from finai_assets.lib.schema import (
    DEFAULT_CUTOFF,
    PRODUCT_COLUMNS,
    PRODUCT_GROUPS,
    PROVINCES,
    REGIONS,
    SEGMENTS,
    month_date,
    month_index,
    product_column,
)
from finai_assets.lib.stats import gmm_posterior, gmm_table
from finai_assets.lib.timeline import cutoff_instant

# group -> experts that read it (the PLE teacher routes by group, never by column name).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "demographics": ("deepfm", "causal", "optimal_transport"),
    "holdings": ("deepfm", "causal", "optimal_transport", "lightgcn"),
    "txn_windows": ("deepfm", "temporal", "causal", "optimal_transport"),
    "sequence": ("temporal",),
    "mcc": ("deepfm", "hgcn"),
    "graph": ("lightgcn",),
    "persistence": ("perslay",),
    "persona": ("deepfm", "causal", "optimal_transport"),
}
WINDOWS_DAYS = (7, 30, 90, 180)
N_MCC_SHARES = 20
N_CHANNELS = 12
N_PERSONAS = 6
GRAPH_DIM = 8
HISTORY_MONTHS = 6
SERIES_MONTHS = 16  # the spend series behind the persistence features: the last 16 months up to the cutoff
DIAGRAM_POINTS = 8  # the P most persistent diagram points kept per customer (pd_ columns)
UNSCALED_PREFIXES = ("seq_", "pd_")  # columns kept as computed (codes, masks, raw levels)
CHUNK_TRANSACTIONS = 15_000_000  # transactions per customer chunk in _raw_features


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    cutoff: dt.date = DEFAULT_CUTOFF
    sequence_length: int = 16  # the last K transactions (K <= 32)
    # Protected-attribute policy: these raw columns never become model inputs.
    excluded_protected: tuple[str, ...] = ("sexo", "indext", "pais_residencia", "indresi")
    seed: int = 0

    def __post_init__(self) -> None:
        assert 1 <= self.sequence_length <= 32


# ------------------------------------------------------------------ pre-cutoff views


def _history(snapshots: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    return snapshots.filter(pl.col("fecha_dato") <= cutoff)


def _before(transactions: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    return transactions.filter(pl.col("ts") < cutoff_instant(cutoff))


def _mcc_tree(mccs: list[int]) -> pl.DataFrame:
    """A Poincare-disc embedding of the MCC hierarchy: each first-digit category sits at radius
    0.5 on its own angle, each MCC at radius 0.85 within its category's angular sector."""
    frame = pl.DataFrame({"mcc": mccs}).with_columns(l1=(pl.col("mcc") // 1000).cast(pl.Int64)).sort("mcc")
    categories = sorted(frame["l1"].unique().to_list())
    width = 2 * np.pi / max(len(categories), 1)
    rank = frame.with_columns(
        k=pl.col("l1").replace_strict({c: i for i, c in enumerate(categories)}, return_dtype=pl.Int64),
        j=pl.int_range(pl.len()).over("l1"), n=pl.len().over("l1"),
    )
    angle = rank["k"].to_numpy() * width + (rank["j"].to_numpy() + 0.5) / rank["n"].to_numpy() * width * 0.8 - 0.4 * width
    return frame.with_columns(x=pl.Series(0.85 * np.cos(angle)), y=pl.Series(0.85 * np.sin(angle)))


# ------------------------------------------------------------------ fit


def fit_pipeline(snapshots: pl.DataFrame, transactions: pl.DataFrame, splits: pl.DataFrame,
                 config: FeatureConfig = FeatureConfig()) -> dict[str, pl.DataFrame]:
    """Every fitted piece, learnt on train customers and pre-cutoff data only."""
    from sklearn.mixture import GaussianMixture

    train_ids = splits.filter(pl.col("split") == "train").select("ncodpers")
    at_c = snapshots.filter(pl.col("fecha_dato") == config.cutoff).join(train_ids, on="ncodpers", how="semi")
    channels = at_c["canal_entrada"].drop_nulls().value_counts(sort=True).head(N_CHANNELS)["canal_entrada"]
    mcc_counts = (
        transactions.lazy().filter(pl.col("ts") < cutoff_instant(config.cutoff))
        .join(train_ids.lazy(), on="ncodpers", how="semi")
        .group_by("mcc").len("count").sort(["count", "mcc"], descending=[True, False]).collect()
    )
    vocabulary = mcc_counts["mcc"].head(N_MCC_SHARES)
    tables = {
        "channel_vocabulary": pl.DataFrame({"canal_entrada": channels, "code": pl.int_range(channels.len(), eager=True)}),
        "mcc_vocabulary": pl.DataFrame({"mcc": vocabulary, "code": pl.int_range(vocabulary.len(), eager=True)}),
        "mcc_tree": _mcc_tree(mcc_counts["mcc"].to_list()),
        "product_embedding": _product_embedding(at_c),
    }
    partial = _raw_features(snapshots, transactions, tables, config, population=train_ids["ncodpers"])
    numeric = [c for c in partial.columns if c != "ncodpers" and not c.startswith(UNSCALED_PREFIXES)]
    stats = partial.select(
        *[pl.col(c).cast(pl.Float64).mean().alias(f"{c}__mean") for c in numeric],
        *[pl.col(c).cast(pl.Float64).std().alias(f"{c}__std") for c in numeric],
    ).row(0, named=True)
    tables["scaler"] = pl.DataFrame(
        {"feature": numeric, "mean": [stats[f"{c}__mean"] or 0.0 for c in numeric],
         "std": [stats[f"{c}__std"] or 1.0 for c in numeric]}
    ).with_columns(pl.when(pl.col("std") > 0).then(pl.col("std")).otherwise(1.0).alias("std"))
    z = _scaled(partial, tables["scaler"]).select(_persona_inputs(numeric)).to_numpy()
    gmm = GaussianMixture(N_PERSONAS, covariance_type="full", random_state=config.seed, reg_covar=1e-3).fit(z)
    tables["persona_gmm"] = gmm_table(gmm.weights_, gmm.means_, gmm.covariances_)
    tables["persona_inputs"] = pl.DataFrame({"feature": _persona_inputs(numeric)})
    tables["config"] = pl.DataFrame(
        {"cutoff": [config.cutoff], "sequence_length": [config.sequence_length], "seed": [config.seed],
         "excluded_protected": [list(config.excluded_protected)]}
    )
    return tables


def pipeline_config(pipeline: dict[str, pl.DataFrame]) -> FeatureConfig:
    row = pipeline["config"].row(0, named=True)
    return FeatureConfig(row["cutoff"], row["sequence_length"], tuple(row["excluded_protected"]), row["seed"])


def _persona_inputs(numeric: list[str]) -> list[str]:
    wanted = ("age", "log_renta", "antiguedad", "product_count", "txn_30d_count", "txn_90d_log_sum", "mcc_distinct_90d")
    return [c for c in wanted if c in numeric]


def _product_embedding(at_c: pl.DataFrame) -> pl.DataFrame:
    """Products embedded by a truncated SVD of the normalised train co-holding matrix."""
    held = at_c.select(pl.col(PRODUCT_COLUMNS).fill_null(0).cast(pl.Float64)).to_numpy()
    co = held.T @ held
    degree = np.sqrt(np.maximum(co.diagonal(), 1.0))
    normalised = co / degree[:, None] / degree[None, :]
    u, s, _ = np.linalg.svd(normalised)
    vectors = u[:, :GRAPH_DIM] * np.sqrt(s[:GRAPH_DIM])
    vectors *= np.where(vectors.sum(0) < 0, -1.0, 1.0)  # a fixed sign per dimension
    return pl.DataFrame({"product": list(PRODUCT_COLUMNS), **{f"e{k}": vectors[:, k] for k in range(GRAPH_DIM)}})


# ------------------------------------------------------------------ transform


def transform(snapshots: pl.DataFrame, transactions: pl.DataFrame, pipeline: dict[str, pl.DataFrame],
              cutoff: dt.date | None = None) -> pl.DataFrame:
    """Features of every customer present at the cutoff (scaled; sequence slots and diagram
    points unscaled), with the configuration the pipeline was fitted with. `cutoff` scores
    another month with the same fitted pipeline (a production month); default: the fitted one."""
    config = pipeline_config(pipeline)
    raw = _raw_features(snapshots, transactions, pipeline, config if cutoff is None else dataclasses.replace(config, cutoff=cutoff))
    scaled = _scaled(raw, pipeline["scaler"])
    z = scaled.select(pipeline["persona_inputs"]["feature"].to_list()).to_numpy()
    persona = gmm_posterior(pipeline["persona_gmm"], z)
    return scaled.with_columns(
        # no transaction before the cutoff: an empty sequence and an empty diagram
        *[pl.col(c).fill_null(0.0) for c in scaled.columns if c.startswith(UNSCALED_PREFIXES)],
        *[pl.Series(f"persona_p{k}", persona[:, k]) for k in range(persona.shape[1])],
    ).sort("ncodpers")


def _scaled(frame: pl.DataFrame, scaler: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        ((pl.col(f).cast(pl.Float64) - m) / s).fill_null(0.0).alias(f) for f, m, s in scaler.iter_rows()
    )


def _raw_features(snapshots: pl.DataFrame, transactions: pl.DataFrame, pipeline: dict[str, pl.DataFrame],
                  config: FeatureConfig, population: pl.Series | None = None) -> pl.DataFrame:
    """Unscaled features of the customers present at the cutoff (only those of `population`
    when given). Every feature is a function of one customer's own rows, so large inputs are
    processed in chunks of customers (by id range) of about CHUNK_TRANSACTIONS transactions each,
    which bounds the memory of the intermediate frames; the result does not depend on chunking."""
    c = config.cutoff
    ids = snapshots.filter(pl.col("fecha_dato") == c)["ncodpers"]
    if population is not None:
        ids = ids.filter(ids.is_in(population.implode()))
    ids = ids.unique().sort()
    chunks = max(1, min(ids.len(), -(-transactions.height // CHUNK_TRANSACTIONS)))
    bounds = [(ids[int(ch[0])], ids[int(ch[-1])]) for ch in np.array_split(np.arange(ids.len()), chunks)] if chunks > 1 else [None]
    parts = []
    for bound in bounds:
        mine = None if bound is None else pl.col("ncodpers").is_between(*bound)
        snaps = _history(snapshots if mine is None else snapshots.filter(mine), c)
        txn = _before(transactions if mine is None else transactions.filter(mine), c)
        at_c = snaps.filter((pl.col("fecha_dato") == c) & pl.col("ncodpers").is_in(ids.implode()))
        parts.append(_customer_features(snaps, at_c, txn, pipeline, config))
    return pl.concat(parts, how="vertical_relaxed").sort("ncodpers")


def _customer_features(snaps: pl.DataFrame, at_c: pl.DataFrame, txn: pl.DataFrame, pipeline: dict[str, pl.DataFrame],
                       config: FeatureConfig) -> pl.DataFrame:
    c = config.cutoff
    frame = _demographics(at_c, pipeline, config.excluded_protected)
    for part in (
        _holdings(snaps, at_c, c),
        _txn_windows(txn, c),
        _sequence(txn, c, pipeline, config.sequence_length),
        _mcc(txn, c, pipeline),
        _graph(at_c, pipeline),
        _persistence(txn, c),
    ):
        frame = frame.join(part, on="ncodpers", how="left")
    return frame  # nulls are filled after scaling: a missing value sits at the train mean


def _demographics(at_c: pl.DataFrame, pipeline: dict[str, pl.DataFrame], excluded: tuple[str, ...]) -> pl.DataFrame:
    channels = dict(pipeline["channel_vocabulary"].iter_rows())
    region = {code: REGIONS.index(reg) for code, (_, reg) in PROVINCES.items()}
    # Protected attributes enter only when the policy does not exclude their columns.
    optional = {}
    if "sexo" not in excluded:
        optional["gender_male"] = (pl.col("sexo") == "V").cast(pl.Float64)
    if not {"indext", "pais_residencia"} & set(excluded):
        optional["foreign"] = ((pl.col("indext") == "S") | (pl.col("pais_residencia") != "ES")).cast(pl.Float64)
    return at_c.select(
        "ncodpers",
        **optional,
        age=pl.col("age").cast(pl.Float64),
        log_renta=pl.col("renta").log1p(),
        renta_missing=pl.col("renta").is_null().cast(pl.Float64),
        antiguedad=pl.col("antiguedad").cast(pl.Float64),
        antiguedad_unknown=(pl.col("antiguedad").is_null()).cast(pl.Float64),
        is_active=pl.col("ind_actividad_cliente").cast(pl.Float64),
        is_new=pl.col("ind_nuevo").cast(pl.Float64),
        **{f"segment_{i}": (pl.col("segmento") == s).fill_null(False).cast(pl.Float64) for i, s in enumerate(SEGMENTS)},
        channel_code=pl.col("canal_entrada").replace_strict(channels, default=len(channels), return_dtype=pl.Int64).cast(pl.Float64),
        region_code=pl.col("cod_prov").replace_strict(region, default=len(REGIONS), return_dtype=pl.Int64).cast(pl.Float64),
    )


def _holdings(snaps: pl.DataFrame, at_c: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    recent = snaps.filter(pl.col("fecha_dato") >= month_date(max(0, month_index(cutoff) - HISTORY_MONTHS))).sort("ncodpers", "fecha_dato")
    flag = lambda col: pl.col(col).fill_null(0)  # noqa: E731
    changes = recent.select(
        "ncodpers",
        acquired=pl.sum_horizontal(((flag(col) == 1) & (flag(col).shift(1).over("ncodpers") == 0)).cast(pl.Int32) for col in PRODUCT_COLUMNS),
        dropped=pl.sum_horizontal(((flag(col) == 0) & (flag(col).shift(1).over("ncodpers") == 1)).cast(pl.Int32) for col in PRODUCT_COLUMNS),
    ).group_by("ncodpers").agg(acquisitions_6m=pl.col("acquired").sum(), drops_6m=pl.col("dropped").sum())
    tenure = snaps.group_by("ncodpers").agg(
        months_observed=pl.len(),
        products_ever=pl.sum_horizontal(pl.col(col).fill_null(0).max() for col in PRODUCT_COLUMNS),
        product_count_mean=pl.sum_horizontal(flag(col) for col in PRODUCT_COLUMNS).mean(),
    )
    return at_c.select(
        "ncodpers",
        *[flag(col).cast(pl.Float64).alias(f"hold_{col}") for col in PRODUCT_COLUMNS],
        product_count=pl.sum_horizontal(flag(col) for col in PRODUCT_COLUMNS).cast(pl.Float64),
        **{f"group_count_{g}": pl.sum_horizontal(flag(product_column(p)) for p in ps).cast(pl.Float64) for g, ps in PRODUCT_GROUPS.items()},
    ).join(changes, on="ncodpers", how="left").join(tenure, on="ncodpers", how="left")


def _txn_windows(txn: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    cut = cutoff_instant(cutoff)
    parts = []
    for days in WINDOWS_DAYS:
        w = txn.filter(pl.col("ts") >= cut - dt.timedelta(days=days))
        parts.append(
            w.group_by("ncodpers").agg(
                **{
                    f"txn_{days}d_count": pl.len().cast(pl.Float64),
                    f"txn_{days}d_log_sum": pl.col("amount").sum().log1p(),
                    f"txn_{days}d_mean": pl.col("amount").mean(),
                    f"txn_{days}d_std": pl.col("amount").std().fill_null(0.0),
                    f"txn_{days}d_days_active": pl.col("ts").dt.date().n_unique().cast(pl.Float64),
                }
            )
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.join(p, on="ncodpers", how="full", coalesce=True)
    counts = [c for c in out.columns if c.endswith(("_count", "_days_active", "_log_sum"))]
    return out.with_columns(pl.col(counts).fill_null(0.0))


def _sequence(txn: pl.DataFrame, cutoff: dt.date, pipeline: dict[str, pl.DataFrame], k: int) -> pl.DataFrame:
    """The last k transactions, newest first: amount, MCC code, hour, days before the cutoff, and
    a mask (0 for padding)."""
    cut = cutoff_instant(cutoff)
    codes = dict(pipeline["mcc_vocabulary"].iter_rows())
    last = (
        txn.sort("ncodpers", "ts", descending=[False, True])
        .group_by("ncodpers", maintain_order=True).head(k)
        .with_columns(slot=pl.int_range(pl.len()).over("ncodpers"))
        .select(
            "ncodpers", "slot",
            amount=pl.col("amount").log1p(),
            mcc=pl.col("mcc").replace_strict(codes, default=len(codes), return_dtype=pl.Int64).cast(pl.Float64) + 1,
            hour=pl.col("hour").cast(pl.Float64),
            age_days=((pl.lit(cut) - pl.col("ts")).dt.total_seconds() / 86400),
            mask=pl.lit(1.0),
        )
    )
    wide = last.pivot(on="slot", index="ncodpers", values=["amount", "mcc", "hour", "age_days", "mask"])
    names = {f"{f}_{s}": f"seq_{s:02d}_{f}" for f in ("amount", "mcc", "hour", "age_days", "mask") for s in range(k)}
    wide = wide.rename({old: new for old, new in names.items() if old in wide.columns})
    missing = [n for n in names.values() if n not in wide.columns]
    return wide.with_columns(pl.lit(0.0).alias(m) for m in missing).select("ncodpers", pl.col(sorted(names.values())).fill_null(0.0))


def _mcc(txn: pl.DataFrame, cutoff: dt.date, pipeline: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """MCC shares over the train vocabulary (90 days), first-digit category shares, and the
    share-weighted position in the Poincare hierarchy embedding."""
    recent = txn.filter(pl.col("ts") >= cutoff_instant(cutoff) - dt.timedelta(days=90))
    totals = recent.group_by("ncodpers").agg(_n=pl.len(), mcc_distinct_90d=pl.col("mcc").n_unique().cast(pl.Float64))
    vocabulary = pipeline["mcc_vocabulary"]["mcc"].to_list()
    shares = (
        recent.filter(pl.col("mcc").is_in(vocabulary)).group_by("ncodpers", "mcc").len()
        .pivot(on="mcc", index="ncodpers", values="len")
    )
    shares = shares.rename({str(m): f"mcc_share_{m}" for m in vocabulary if str(m) in shares.columns})
    share_cols = [f"mcc_share_{m}" for m in vocabulary]
    category = recent.with_columns(l1=pl.col("mcc") // 1000).group_by("ncodpers", "l1").len().pivot(on="l1", index="ncodpers", values="len")
    category = category.rename({c: f"mcc_l1_share_{c}" for c in category.columns if c != "ncodpers"})
    l1_cols = [f"mcc_l1_share_{d}" for d in range(10)]
    tree = pipeline["mcc_tree"].select("mcc", "x", "y")
    position = recent.join(tree, on="mcc", how="inner").group_by("ncodpers").agg(
        mcc_tree_x=pl.col("x").mean(), mcc_tree_y=pl.col("y").mean()
    )
    out = totals.join(shares, on="ncodpers", how="left").join(category, on="ncodpers", how="left").join(position, on="ncodpers", how="left")
    out = out.with_columns(pl.lit(None, pl.UInt32).alias(c) for c in share_cols + l1_cols if c not in out.columns)
    return out.select(
        "ncodpers", "mcc_distinct_90d",
        *[(pl.col(c).fill_null(0) / pl.col("_n")).alias(c) for c in share_cols + l1_cols],
        "mcc_tree_x", "mcc_tree_y",
    )


def _graph(at_c: pl.DataFrame, pipeline: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Inductive customer embedding: the mean of the train-learnt embeddings of its products."""
    emb = pipeline["product_embedding"]
    vectors = emb.select([f"e{k}" for k in range(GRAPH_DIM)]).to_numpy()
    held = at_c.select(pl.col(PRODUCT_COLUMNS).fill_null(0).cast(pl.Float64)).to_numpy()
    mean = held @ vectors / np.maximum(held.sum(1, keepdims=True), 1.0)
    return pl.DataFrame({"ncodpers": at_c["ncodpers"], **{f"graph_e{k}": mean[:, k] for k in range(GRAPH_DIM)}})


def persistence_pairs(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-dim sublevel-set persistence of each row of `series` (customers x time): for every local
    minimum its birth (value) and death (the lowest level at which it merges with a deeper
    basin; the global minimum never dies: death = its row maximum). Equal minima follow the
    elder rule: the earlier one counts as deeper. Vectorised over rows."""
    n, length = series.shape
    births = np.full((n, length), np.nan)
    deaths = np.full((n, length), np.nan)
    padded = np.pad(series, ((0, 0), (1, 1)), constant_values=np.inf)
    for i in range(length):
        value = series[:, i]
        is_min = (value < padded[:, i]) & (value <= padded[:, i + 2])
        death = np.full(n, np.inf)
        for direction in (-1, 1):
            running = np.full(n, -np.inf)
            found = np.zeros(n, dtype=bool)
            j = i + direction
            while 0 <= j < length:
                running = np.where(found, running, np.maximum(running, series[:, j]))
                # deeper: lower, or equal and earlier (the elder rule breaks ties by position)
                found |= (series[:, j] <= value) if direction < 0 else (series[:, j] < value)
                j += direction
            death = np.minimum(death, np.where(found, running, np.inf))
        death = np.where(np.isinf(death), series.max(1), death)
        births[:, i] = np.where(is_min, value, np.nan)
        deaths[:, i] = np.where(is_min, death, np.nan)
    return births, deaths


def _persistence(txn: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    """Persistence summaries of the monthly log-spend series up to the cutoff, and its
    DIAGRAM_POINTS most persistent diagram points (`pd_{i:02d}_birth/death/mask`)."""
    end = month_index(cutoff)
    months = [month_date(i) for i in range(max(0, end - SERIES_MONTHS + 1), end + 1)]
    monthly = txn.with_columns(month=pl.col("ts").dt.date().dt.month_start()).group_by("ncodpers", "month").agg(spend=pl.col("amount").sum())
    grid = monthly.select("ncodpers").unique().join(pl.DataFrame({"month": [m.replace(day=1) for m in months]}), how="cross")
    series = (
        grid.join(monthly, on=["ncodpers", "month"], how="left").with_columns(pl.col("spend").fill_null(0.0).log1p())
        .sort("ncodpers", "month").group_by("ncodpers", maintain_order=True).agg("spend")
    )
    values = np.stack(series["spend"].to_numpy()) if series.height else np.zeros((0, len(months)))
    births, deaths = persistence_pairs(values)
    life = np.nan_to_num(deaths - births)
    scale = np.maximum(values.max(1) - values.min(1), 1e-9) if series.height else np.zeros(0)
    birth, death, mask = diagram_points(births, deaths, DIAGRAM_POINTS)
    return pl.DataFrame(
        {
            "ncodpers": series["ncodpers"],
            "pers_total": life.sum(1),
            "pers_max": life.max(1) if series.height else np.zeros(0),
            "pers_count": (life > 0.1 * scale[:, None]).sum(1).astype(np.float64),
            "pers_entropy": _entropy_rows(life),
            **{name: column for i in range(DIAGRAM_POINTS) for name, column in
               ((f"pd_{i:02d}_birth", birth[:, i]), (f"pd_{i:02d}_death", death[:, i]), (f"pd_{i:02d}_mask", mask[:, i]))},
        }
    )


def diagram_points(births: np.ndarray, deaths: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The p most persistent points of each row of (births, deaths) (NaN where no point), by
    lifetime descending, ties by birth ascending, then by position; padded with birth = death =
    0 and mask 0 where a row has fewer than p points. Returns three [n, p] float64 arrays."""
    real = ~np.isnan(births)
    life = np.where(real, deaths - births, -np.inf)
    order = np.lexsort((np.where(real, births, np.inf), -life), axis=-1)[:, :p]  # last key sorts first
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    mask = take(real)
    birth, death = np.where(mask, take(births), 0.0), np.where(mask, take(deaths), 0.0)
    pad = ((0, 0), (0, p - order.shape[1]))  # series shorter than p: fewer candidate slots
    out = np.pad(birth, pad), np.pad(death, pad), np.pad(mask.astype(np.float64), pad)
    assert all(a.shape == (births.shape[0], p) for a in out)
    return out


def _entropy_rows(life: np.ndarray) -> np.ndarray:
    total = life.sum(1, keepdims=True)
    p = np.divide(life, total, out=np.zeros_like(life), where=total > 0)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)


def feature_schema(columns: list[str]) -> pl.DataFrame:
    """column -> group -> experts, for every feature column."""
    def group(c: str) -> str:
        if c.startswith("seq_"):
            return "sequence"
        if c.startswith("mcc_"):
            return "mcc"
        if c.startswith("graph_"):
            return "graph"
        if c.startswith(("pers_", "pd_")):
            return "persistence"
        if c.startswith("persona_"):
            return "persona"
        if c.startswith("txn_"):
            return "txn_windows"
        if c.startswith(("hold_", "group_count_")) or c in ("product_count", "acquisitions_6m", "drops_6m", "months_observed", "products_ever", "product_count_mean"):
            return "holdings"
        return "demographics"

    rows = [(c, group(c)) for c in columns if c != "ncodpers"]
    return pl.DataFrame(rows, schema=["column", "group"], orient="row").with_columns(
        experts=pl.col("group").replace_strict({g: ", ".join(e) for g, e in FEATURE_GROUPS.items()})
    )
