"""Calibration on the raw data, the version recipes, and the synthetic generator chain.

profile (SDV GaussianCopula) -> persona (calibration GMM posterior) -> five latents
(decoupled `coupling` / 1 - `coupling` from observables) -> 17 monthly snapshots + card
transactions in the raw schemas (`simulate.simulate`). Heavy libraries (sdv, sklearn) are
imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from finai_assets.lib.schema import PRODUCT_COLUMNS, PRODUCTS, PROVINCES, SEGMENTS, SNAPSHOT_MONTHS
from finai_assets.lib.simulate import EVENTS, GROUPS, LATENTS, PRODUCT_GROUP_INDEX, World, simulate, zscore
from finai_assets.lib.stats import gmm_posterior, gmm_table

N_PERSONAS = 6
N_MCC = 50
PERSONA_FEATURES = (
    "log_renta", "age", "antiguedad", "n_products_first", "txn_per_month", "log_amount_mean",
    "ind_actividad_cliente",
)
SDV_COLUMNS = (
    "sexo", "age", "renta", "segmento", "cod_prov", "pais_residencia", "indext", "canal_entrada",
    "ind_empleado", "antiguedad", "ind_actividad_cliente", "first_month", "n_products_first",
    "txn_per_month", "log_amount_mean",
)
SDV_CATEGORICAL = (
    "sexo", "segmento", "cod_prov", "pais_residencia", "indext", "canal_entrada", "ind_empleado",
    "ind_actividad_cliente", "first_month",
)


# ------------------------------------------------------------------ recipes


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a version promises; each field is checked on the generated data."""

    name: str
    latent_coupling: float  # share of a latent's variance explained by observables
    flip_rate: float  # share of post-cutoff event positives swapped (rate-preserving)
    flip_band: tuple[float, float]
    mcc_boost: float  # fresh-draw weight of a persona's 5 favourite MCCs vs the others (1 = uniform)
    mcc_boost_band: tuple[float, float]
    mcc_stickiness: float  # P(same MCC as previous) - sum p(mcc)^2
    persona_amounts: bool  # amounts depend on persona (else one lognormal for all)
    group_acquisition_rates: tuple[float, ...] | None  # monthly, per group; None = calibrated
    acquisition_band: tuple[float, float] | None
    segment_move_rate: float = 0.05
    segment_band: tuple[float, float] = (0.03, 0.08)
    mcc_shift_rate: float = 0.35


V2 = Recipe(
    name="v2", latent_coupling=0.7, flip_rate=0.07, flip_band=(0.06, 0.08), mcc_boost=1.0,
    mcc_boost_band=(1.0, 1.5), mcc_stickiness=0.0, persona_amounts=False,
    group_acquisition_rates=None, acquisition_band=None,
)
# Each later version is a documented numeric delta on the one before it.
RECIPE_DELTAS: dict[str, dict] = {
    "v3": dict(mcc_boost=4.5, mcc_boost_band=(4.0, 5.0), mcc_stickiness=0.30, persona_amounts=True),
    "v4": dict(
        mcc_boost=10.0, mcc_boost_band=(8.0, 12.0), mcc_stickiness=0.60,
        group_acquisition_rates=(0.10, 0.095, 0.105, 0.10, 0.10), acquisition_band=(0.08, 0.12),
    ),
}
RECIPES: dict[str, Recipe] = {"v2": V2}
for _name, _delta in RECIPE_DELTAS.items():
    RECIPES[_name] = dataclasses.replace(list(RECIPES.values())[-1], name=_name, **_delta)
VERSION_SEEDS = {"v2": 202, "v3": 303, "v4": 404}


# ------------------------------------------------------------------ calibration


@dataclasses.dataclass
class Calibration:
    """Everything fitted on the real (train) customers; tables are stored in the warehouse."""

    tables: dict[str, pl.DataFrame]
    synthesizer_path: Path
    synthesizer_sha256: str


def customer_split(ncodpers: pl.Series, seed: int, train_share: float = 0.8) -> pl.Series:
    """Seeded 80/20 train/holdout assignment by customer-id hash (stable per customer)."""
    h = (ncodpers.hash(seed=seed) % 10_000).cast(pl.Float64) / 10_000
    return pl.Series("is_train", h < train_share)


def _persona_matrix(profiles: pl.DataFrame) -> np.ndarray:
    frame = profiles.select(
        log_renta=pl.col("renta").log1p(),
        age=pl.col("age").cast(pl.Float64),
        antiguedad=pl.col("antiguedad").cast(pl.Float64),
        n_products_first=pl.col("n_products_first").cast(pl.Float64),
        txn_per_month=pl.col("txn_per_month").cast(pl.Float64),
        log_amount_mean=pl.col("log_amount_mean"),
        ind_actividad_cliente=pl.col("ind_actividad_cliente").cast(pl.Float64),
    )
    return frame.select(pl.all().fill_null(pl.all().median()).fill_null(0.0)).to_numpy()


def calibrate(profiles: pl.DataFrame, snapshots: pl.DataFrame, transactions: pl.DataFrame,
              artifact_dir: Path, seed: int = 7, sdv_distribution: str = "norm",
              sample_rows: int = 2_000) -> Calibration:
    """Fit SDV + GMM personas on a seeded 80 % of customers; measure transition and transaction
    statistics; keep fixed real train/holdout samples for the privacy and quality checks."""
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer
    from sklearn.mixture import GaussianMixture

    if transactions.is_empty():
        raise ValueError(
            "synthetic calibration needs card transactions (the synthetic versions carry MCC tasks); "
            "provide a transaction file beside the real snapshot file"
        )
    split = customer_split(profiles["ncodpers"], seed)
    train = profiles.filter(split)
    holdout = profiles.filter(~split)
    # Personas: GMM on standardised behaviour.
    x = _persona_matrix(train)
    mu, sd = x.mean(0), x.std(0) + 1e-9
    gmm = GaussianMixture(N_PERSONAS, covariance_type="full", random_state=seed, n_init=2, reg_covar=1e-3).fit((x - mu) / sd)
    persona = pl.Series("persona", gmm.predict((x - mu) / sd))
    train_p = train.with_columns(persona)
    # SDV on the profile table (pandas at the library boundary).
    sdv_frame = train.select(SDV_COLUMNS).with_columns(
        pl.col(c).cast(pl.Utf8) for c in SDV_CATEGORICAL
    ).to_pandas()
    metadata = Metadata.load_from_dict(
        {"tables": {"profiles": {"columns": {
            c: {"sdtype": "categorical"} if c in SDV_CATEGORICAL else {"sdtype": "numerical"} for c in SDV_COLUMNS
        }}}}
    )
    # Categoricals reach the copula uniform-encoded on [0, 1]: a `uniform` marginal keeps their
    # frequencies exact (a `norm` one piles mass on the edge categories).
    synth = GaussianCopulaSynthesizer(
        metadata, default_distribution=sdv_distribution, enforce_min_max_values=True,
        numerical_distributions={c: "uniform" for c in SDV_CATEGORICAL},
    )
    synth.fit({"profiles": sdv_frame})
    artifact_dir.mkdir(parents=True, exist_ok=True)
    path = artifact_dir / "sdv_gaussian_copula.pkl"
    tmp = path.with_name(path.name + ".tmp")
    synth.save(str(tmp))
    tmp.replace(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()

    stats = _transition_stats(snapshots.join(train_p.select("ncodpers", "persona"), on="ncodpers"))
    txn_stats = _transaction_stats(transactions.join(train_p.select("ncodpers", "persona"), on="ncodpers"))
    rng = np.random.default_rng(seed)
    tables = {
        "persona_gmm": gmm_table(gmm.weights_, gmm.means_, gmm.covariances_),
        "persona_scaler": pl.DataFrame({"feature": PERSONA_FEATURES, "mean": mu, "std": sd}),
        **stats,
        **txn_stats,
        "real_train_profiles": train,
        "real_train_sample": train.sample(min(sample_rows, train.height), seed=int(rng.integers(1 << 31))),
        "real_holdout_sample": holdout.sample(min(sample_rows, holdout.height), seed=int(rng.integers(1 << 31))),
        "synthesizer": pl.DataFrame({"path": [str(path)], "sha256": [sha], "distribution": [sdv_distribution],
                                     "fit_rows": [train.height], "seed": [seed]}),
    }
    return Calibration({k: _stable_floats(v) for k, v in tables.items()}, path, sha)


def _stable_floats(frame: pl.DataFrame) -> pl.DataFrame:
    """Round floats to 10 decimals: parallel float sums differ in the last bits between runs,
    which would change the content hash (the data version) of an identical calibration."""
    return frame.with_columns(
        pl.col(c).round(10) if dtype == pl.Float64 else pl.col(c).list.eval(pl.element().round(10))
        for c, dtype in frame.schema.items()
        if dtype == pl.Float64 or dtype == pl.List(pl.Float64)
    )


def _transition_stats(snap: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Entry prevalence per persona, monthly acquisition / segment / exit / activity rates."""
    s = snap.with_columns(((pl.col("fecha_dato").dt.year() - 2015) * 12 + pl.col("fecha_dato").dt.month() - 1).cast(pl.Int32).alias("m")).sort("ncodpers", "m")
    first = s.group_by("ncodpers").agg(pl.all().first())
    prevalence = (
        first.group_by("persona").agg(((pl.col(c).fill_null(0).sum() + 0.5) / (pl.len() + 1)).alias(c) for c in PRODUCT_COLUMNS)
        .sort("persona")
    )
    nxt = s.select(
        "ncodpers", "m", "persona", "segmento", "ind_actividad_cliente", *PRODUCT_COLUMNS
    ).join(
        s.select("ncodpers", (pl.col("m") - 1).alias("m"), pl.col("segmento").alias("seg_next"),
                 pl.col("ind_actividad_cliente").alias("act_next"), *[pl.col(c).alias(c + "_next") for c in PRODUCT_COLUMNS]),
        on=["ncodpers", "m"], how="left",
    )
    present_next = pl.col("seg_next").is_not_null() | pl.col(PRODUCT_COLUMNS[0] + "_next").is_not_null()
    acq = {p: (pl.col(c).fill_null(0) == 0) & (pl.col(c + "_next").fill_null(0) == 1) for p, c in zip(PRODUCTS, PRODUCT_COLUMNS)}
    group_rates, popularity = [], []
    both = nxt.filter(pl.col("m") < pl.col("m").max())  # rows with a next month (appended production months included)
    stay = both.filter(present_next)
    for g in range(len(GROUPS)):
        prods = [p for p, gi in zip(PRODUCTS, PRODUCT_GROUP_INDEX) if gi == g]
        group_rates.append(stay.select(pl.any_horizontal(acq[p] for p in prods).mean()).item())
    popularity = stay.select(**{p: acq[p].sum() + 1 for p in PRODUCTS}).row(0)
    seg = stay.filter(pl.col("segmento").is_not_null() & pl.col("seg_next").is_not_null())
    moves = seg.filter(pl.col("segmento") != pl.col("seg_next"))
    trans = np.full((3, 3), 0.5)
    for a, b, n in moves.group_by("segmento", "seg_next").len().iter_rows():
        trans[SEGMENTS.index(a), SEGMENTS.index(b)] += n
    np.fill_diagonal(trans, 0)
    trans /= trans.sum(1, keepdims=True)
    n_prod = pl.sum_horizontal(pl.col(c).fill_null(0) for c in PRODUCT_COLUMNS)
    n_prod_next = pl.sum_horizontal(pl.col(c + "_next").fill_null(0) for c in PRODUCT_COLUMNS)
    rates = {
        "segment_move_rate": moves.height / max(seg.height, 1),
        "exit_rate": 1 - stay.height / max(both.height, 1),
        "activity_flip_rate": stay.select((pl.col("ind_actividad_cliente") != pl.col("act_next")).mean()).item() or 0.0,
        "churn_rate": stay.select(((n_prod_next < 0.7 * n_prod) & (n_prod > 0)).mean()).item(),
    }
    return {
        "product_prevalence": prevalence,
        "group_rates": pl.DataFrame({"group": GROUPS, "monthly_acquisition_rate": group_rates}),
        "product_popularity": pl.DataFrame({"product": PRODUCTS, "acquisitions": popularity}),
        "segment_transition": pl.DataFrame({"from": SEGMENTS, **{b: trans[:, j] for j, b in enumerate(SEGMENTS)}}),
        "rates": pl.DataFrame({"rate": list(rates), "value": list(rates.values())}),
    }


def measured_stickiness(transactions: pl.DataFrame) -> float:
    """P(same MCC as the customer's previous transaction) - sum over MCCs of p(mcc)^2."""
    t = transactions.sort("ncodpers", "ts")
    same = t.select(
        ((pl.col("mcc") == pl.col("mcc").shift(1)) & (pl.col("ncodpers") == pl.col("ncodpers").shift(1))).sum()
        / (pl.col("ncodpers") == pl.col("ncodpers").shift(1)).sum()
    ).item()
    p = t["mcc"].value_counts(normalize=True)["proportion"].to_numpy()
    return float(same - (p**2).sum())


def _transaction_stats(txn: pl.DataFrame) -> dict[str, pl.DataFrame]:
    vocab = txn["mcc"].value_counts(sort=True).head(N_MCC)["mcc"].sort()
    per_persona = (
        txn.filter(pl.col("mcc").is_in(vocab.implode()))
        .group_by("persona", "mcc").len()
        .pivot(on="mcc", index="persona", values="len").fill_null(0).sort("persona")
    )
    counts = per_persona.select([str(m) for m in vocab]).to_numpy().astype(float) + 1
    hours = txn.group_by("persona", "hour").len().pivot(on="hour", index="persona", values="len").fill_null(0).sort("persona")
    hour_counts = hours.select([str(h) for h in range(24) if str(h) in hours.columns]).to_numpy().astype(float) + 1
    if hour_counts.shape[1] != 24:
        hour_counts = np.ones((counts.shape[0], 24))
    months = txn.select(pl.col("ts").dt.truncate("1mo").n_unique()).item()
    per_customer = txn.group_by("ncodpers", "persona").agg(pl.len() / months, pl.col("amount").log1p().mean().alias("la"))
    persona_stats = per_customer.group_by("persona").agg(
        pl.col("len").mean().alias("txn_rate"), pl.col("la").mean().alias("amount_mu")
    ).sort("persona")
    return {
        "mcc_vocabulary": pl.DataFrame({"mcc": vocab}),
        "mcc_counts": pl.DataFrame({"persona": per_persona["persona"], "counts": [list(r) for r in counts]}),
        "hour_counts": pl.DataFrame({"persona": hours["persona"], "counts": [list(r) for r in hour_counts]}),
        "persona_txn": persona_stats.with_columns(
            amount_sigma=pl.lit(float(txn.select(pl.col("amount").log1p().std()).item()) * 0.8),
            stickiness=pl.lit(measured_stickiness(txn)),
        ),
    }


# ------------------------------------------------------------------ the generator


def world_for(tables: dict[str, pl.DataFrame], recipe: Recipe, seed: int) -> World:
    """The simulator's rates for one version: calibrated values with the recipe's deltas."""
    rng = np.random.default_rng(seed)
    personas = tuple(f"persona_{k}" for k in range(N_PERSONAS))
    prevalence = _by_persona(tables["product_prevalence"], PRODUCT_COLUMNS)
    vocab = tables["mcc_vocabulary"]["mcc"].to_numpy()
    calibrated = _by_persona_lists(tables["mcc_counts"], vocab.size)
    favourites = np.argsort(-(calibrated / calibrated.sum(0, keepdims=True)), axis=1)[:, :5]
    base = 1 + rng.uniform(-0.05, 0.05, (N_PERSONAS, vocab.size))  # near-uniform
    mcc_probs = base.copy()
    for k in range(N_PERSONAS):
        mcc_probs[k, favourites[k]] *= recipe.mcc_boost
    mcc_probs /= mcc_probs.sum(1, keepdims=True)
    ptxn = tables["persona_txn"].sort("persona")
    txn_rate = _fill_personas(ptxn, "txn_rate")
    amount_mu = _fill_personas(ptxn, "amount_mu")
    if not recipe.persona_amounts:
        amount_mu = np.full(N_PERSONAS, amount_mu.mean())
    rates = dict(tables["rates"].iter_rows())
    group = tables["group_rates"]["monthly_acquisition_rate"].to_numpy()
    if recipe.group_acquisition_rates is not None:
        group = np.array(recipe.group_acquisition_rates)
    hour = _by_persona_lists(tables["hour_counts"], 24)
    trans = tables["segment_transition"].select(SEGMENTS).to_numpy()
    weights = ptxn["txn_rate"].fill_null(1.0).to_numpy()
    repeat = _repeat_prob_for(recipe.mcc_stickiness, mcc_probs, weights if weights.size == N_PERSONAS else None)
    event_rates = dict(
        churn=min(max(rates["churn_rate"], 0.02), 0.2),
        **{f"acquire_{g}": float(r) for g, r in zip(GROUPS, group)},
        segment_move=recipe.segment_move_rate,
        mcc_shift=recipe.mcc_shift_rate,
    )
    assert set(event_rates) == set(EVENTS)
    return World(
        persona_names=personas,
        product_prevalence=prevalence,
        group_acquisition_rate=group,
        product_popularity=tables["product_popularity"]["acquisitions"].to_numpy().astype(float),
        segment_move_rate=recipe.segment_move_rate,
        segment_transition=trans,
        exit_rate=float(rates["exit_rate"]),
        activity_flip_rate=float(rates["activity_flip_rate"]),
        txn_rate=txn_rate,
        mcc_codes=vocab,
        mcc_probs=mcc_probs,
        mcc_repeat_prob=repeat,
        amount_mu=amount_mu,
        amount_sigma=float(ptxn["amount_sigma"][0]),
        hour_probs=hour / hour.sum(1, keepdims=True),
        event_rates=event_rates,
        flip_rate=recipe.flip_rate,
    )


def _repeat_prob_for(stickiness: float, mcc_probs: np.ndarray, persona_volume: np.ndarray | None) -> float:
    """Repeat probability s so that P(same) - sum p^2 == stickiness, given fresh draws from
    each persona's distribution: P(same) = s + (1 - s) E[sum p_z^2]."""
    w = np.ones(mcc_probs.shape[0]) if persona_volume is None else persona_volume
    w = w / w.sum()
    within = float((w * (mcc_probs**2).sum(1)).sum())
    marginal = float(((w[:, None] * mcc_probs).sum(0) ** 2).sum())
    return float(np.clip((stickiness + marginal - within) / (1 - within), 0.0, 0.95))


def _fill_personas(frame: pl.DataFrame, col: str) -> np.ndarray:
    out = np.full(N_PERSONAS, float(frame[col].mean()))
    for k, v in zip(frame["persona"], frame[col]):
        out[k] = v
    return out


def _by_persona(frame: pl.DataFrame, cols) -> np.ndarray:
    out = np.tile(frame.select(cols).mean().to_numpy(), (N_PERSONAS, 1))
    for row in frame.iter_rows(named=True):
        out[row["persona"]] = [row[c] for c in cols]
    return out


def _by_persona_lists(frame: pl.DataFrame, width: int) -> np.ndarray:
    mat = np.ones((N_PERSONAS, width))
    for k, counts in zip(frame["persona"], frame["counts"]):
        mat[k] = counts
    return mat


def load_synthesizer(path: Path, sha256: str):
    """Load the fitted SDV synthesizer, refusing a file whose sha256 changed."""
    from sdv.utils import load_synthesizer as sdv_load

    actual = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if actual != sha256:
        raise ValueError(
            f"{path}: sha256 {actual[:12]}... does not match the calibration's {sha256[:12]}...; the synthesizer "
            "file was modified: rematerialize synthetic_calibration"
        )
    return sdv_load(str(path))


def sample_profiles(tables: dict[str, pl.DataFrame], synthesizer, recipe: Recipe, n: int, seed: int) -> pl.DataFrame:
    """SDV profile -> persona (GMM posterior draw) -> latents coupled to observables."""
    rng = np.random.default_rng(seed)
    synthesizer.reset_sampling()  # SDV keeps sampling state between calls: start clean
    synthesizer._set_random_state(seed)
    raw = pl.from_pandas(synthesizer.sample(num_rows=n)["profiles"])
    prof = raw.select(
        pl.col("sexo").cast(pl.Utf8),
        pl.col("age").round().clip(18, 100).cast(pl.Int64),
        pl.col("renta").clip(1000, None).round(2),
        pl.col("segmento").cast(pl.Utf8),
        pl.col("cod_prov").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False),
        pl.col("pais_residencia").cast(pl.Utf8),
        pl.col("indext").cast(pl.Utf8),
        pl.col("canal_entrada").cast(pl.Utf8),
        pl.col("ind_empleado").cast(pl.Utf8),
        pl.col("antiguedad").round().clip(0, 260).cast(pl.Int64),
        pl.col("ind_actividad_cliente").cast(pl.Float64, strict=False).fill_null(0).cast(pl.Int8),
        pl.col("first_month").cast(pl.Float64, strict=False).fill_null(0).clip(0, 15).cast(pl.Int64),
        pl.col("n_products_first").round().clip(0, 15).cast(pl.Int64),
        pl.col("txn_per_month").clip(0.2, None),
        pl.col("log_amount_mean"),
    )
    x = _persona_matrix(prof)
    scaler = tables["persona_scaler"]
    z = (x - scaler["mean"].to_numpy()) / scaler["std"].to_numpy()
    persona = _gmm_posterior_draw(tables["persona_gmm"], z, rng)
    # Latent proxies from observables, then decoupling: l = sqrt(c) z(proxy) + sqrt(1 - c) eps.
    age, tenure, txn, active = z[:, 1], z[:, 2], z[:, 4], z[:, 6]
    demo = _demographic_effects(prof)
    proxies = np.stack(
        [
            z[:, 0] + 0.3 * z[:, 3] + demo["wealthy_region"],
            txn + 0.5 * active + demo["male"],
            0.5 * z[:, 3] - 0.2 * age + demo["male"],
            -0.3 * age + 0.3 * txn,
            tenure - demo["foreign"],
        ],
        1,
    )
    gmm_means = np.stack(tables["persona_gmm"].sort("persona")["mean"].to_numpy())
    proxies = proxies + 0.3 * gmm_means[persona][:, [0, 4, 3, 1, 2]]
    c = recipe.latent_coupling
    latents = np.sqrt(c) * np.apply_along_axis(zscore, 0, proxies) + np.sqrt(1 - c) * rng.standard_normal(proxies.shape)
    entry = np.array(SNAPSHOT_MONTHS, dtype="datetime64[D]")[prof["first_month"].to_numpy()]
    tenure_m = prof["antiguedad"].fill_null(0).to_numpy()
    sentinel = prof["antiguedad"].is_null().to_numpy() & (rng.random(n) < 0.5)
    return prof.with_columns(
        ncodpers=pl.Series(np.arange(n, dtype=np.int64) + 50_000_000),
        persona=pl.Series(persona),
        **{k: pl.Series(latents[:, j]) for j, k in enumerate(LATENTS)},
        indresi=pl.when(pl.col("pais_residencia") == "ES").then(pl.lit("S")).otherwise(pl.lit("N")),
        birth_month_offset=pl.Series(rng.integers(0, 12, n)),
        fecha_alta=pl.Series(entry - (tenure_m * 30.4).astype("timedelta64[D]"), dtype=pl.Date),
        antiguedad=pl.when(pl.Series(sentinel)).then(pl.lit(-999999)).otherwise(pl.col("antiguedad").fill_null(0)),
    ).with_columns(
        pl.when(pl.col("segmento").is_in(SEGMENTS)).then(pl.col("segmento")).otherwise(None).alias("segmento")
    )


# Realistic, moderate dependence of the latents on three protected attributes: the
# base-rate disparity they induce is checked to stay inside [0.5, 0.95].
WEALTHY_REGIONS = {"Madrid": 0.6, "Noreste": 0.3, "Este": 0.2}


def _demographic_effects(prof: pl.DataFrame) -> dict[str, np.ndarray]:
    region = {code: WEALTHY_REGIONS.get(reg, 0.0) for code, (_, reg) in PROVINCES.items()}
    return {
        "wealthy_region": prof["cod_prov"].replace_strict(region, default=0.0, return_dtype=pl.Float64).to_numpy(),
        "male": 0.3 * (prof["sexo"] == "V").fill_null(False).to_numpy(),
        "foreign": 1.0 * ((prof["indext"] == "S").fill_null(False) | (prof["pais_residencia"] != "ES").fill_null(False)).to_numpy(),
    }


def _gmm_posterior_draw(gmm: pl.DataFrame, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    post = gmm_posterior(gmm, z)
    return (rng.random(z.shape[0])[:, None] > np.cumsum(post, 1)).sum(1).clip(0, gmm.height - 1)


def normalised_snapshots(snap: pl.DataFrame) -> pl.DataFrame:
    """The simulator's snapshots in the normalised raw schema (sentinel -> null + flag)."""
    sentinel = pl.col("antiguedad") == -999999
    return snap.with_columns(
        pl.when(sentinel).then(None).otherwise(pl.col("antiguedad")).alias("antiguedad"),
    ).with_columns(
        age_missing=pl.col("age").is_null(),
        antiguedad_sentinel=snap["antiguedad"] == -999999,
        antiguedad_missing=pl.lit(False),
        renta_missing=pl.col("renta").is_null(),
    )


@dataclasses.dataclass
class SyntheticVersion:
    snapshots: pl.DataFrame
    transactions: pl.DataFrame
    ground_truth: pl.DataFrame
    profiles: pl.DataFrame  # the sampled profiles with persona and latents (generator input)


def generate(tables: dict[str, pl.DataFrame], synthesizer, recipe: Recipe, n: int, seed: int) -> SyntheticVersion:
    profiles = sample_profiles(tables, synthesizer, recipe, n, seed)
    sim = simulate(profiles, world_for(tables, recipe, seed), seed)
    return SyntheticVersion(normalised_snapshots(sim.snapshots), sim.transactions, sim.ground_truth, profiles)
