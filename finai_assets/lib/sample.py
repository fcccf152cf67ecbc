"""The embedded default raw data: a deterministic sample in exactly the raw file schemas.

20,000 customers x 17 months (2015-01-28 ... 2016-05-28), ~8 card transactions per
customer-month, rendered as the *strings* a CSV reader sees — dirt included (padded `age`,
`NA` / ` NA` tokens, empty `renta`, `antiguedad` -999999, `indrel_1mes` as 1 / 1.0 / P) plus a
small share of rows that must be quarantined (bad dates, duplicate keys, invalid flags,
impossible ages). It goes through the same normaliser as a real file.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from finai_assets.lib.schema import (
    PRODUCTS,
    PROVINCES,
    REGIONS,
    SEGMENTS,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_MONTHS,
    PRODUCT_COLUMNS,
    month_date,
)
from finai_assets.lib.simulate import EVENTS, LATENTS, World, simulate

PERSONAS: tuple[str, ...] = (
    "conservative_saver", "active_spender", "young_digital", "high_value", "occasional_user",
    "diversified",
)
PERSONA_WEIGHTS = np.array([0.28, 0.22, 0.18, 0.10, 0.12, 0.10])
# Persona means of (wealth, activity, risk, digital, loyalty).
PERSONA_LATENT_MEANS = np.array(
    [
        [0.3, -0.5, -0.8, -0.7, 0.9],
        [0.0, 1.0, 0.3, 0.3, 0.0],
        [-0.7, 0.5, 0.6, 1.3, -0.8],
        [1.4, 0.4, 0.5, 0.0, 0.6],
        [-0.5, -1.1, -0.2, -0.4, -0.3],
        [0.5, 0.3, 0.4, 0.2, 0.3],
    ]
)
# Real-ish Santander prevalence of each product (order of schema.PRODUCTS).
BASE_PREVALENCE = dict(
    ahor=0.001, aval=0.001, cco=0.65, cder=0.002, cno=0.08, ctju=0.01, ctma=0.01, ctop=0.13,
    ctpp=0.045, deco=0.005, deme=0.005, dela=0.045, ecue=0.08, fond=0.02, hip=0.008,
    plan=0.01, pres=0.004, reca=0.05, tjcr=0.045, valo=0.026, viv=0.004, nomina=0.055,
    nom_pens=0.06, recibo=0.13,
)
MCC_CODES = np.array(
    [5411, 5812, 5541, 5912, 4111, 5311, 5999, 4121, 5814, 5732, 7832, 4511, 7011, 5661, 5651,
     5200, 5300, 4814, 4900, 5921, 5942, 5945, 5977, 6011, 6300, 7210, 7230, 7298, 7399, 7512,
     7523, 7538, 7542, 7841, 7922, 7941, 7991, 7997, 8011, 8021, 8062, 8099, 8211, 8220, 8299,
     8398, 5094, 5122, 5192, 5251]
)
CHANNELS = ("KHE", "KAT", "KFC", "KHQ", "KFA", "KHK", "KHM", "RED")
FOREIGN_COUNTRIES = ("FR", "DE", "GB", "IT", "PT", "US", "AR", "CO", "RO", "MA")
REGION_WEIGHTS = np.array([0.10, 0.09, 0.25, 0.12, 0.20, 0.17, 0.07])  # order of REGIONS


def sample_world() -> World:
    """The hand-set world behind the embedded sample (the 'real bank' of the demo)."""
    rng = np.random.default_rng(20150128)
    n_p = len(PERSONAS)
    base = np.array([BASE_PREVALENCE[p] for p in PRODUCTS])
    mult = np.exp(rng.normal(0, 0.35, (n_p, len(PRODUCTS))))
    mult[3] *= 1.8  # high_value holds more of everything
    mult[4] *= 0.6
    shape = 1.0 / np.arange(1, MCC_CODES.size + 1) ** 0.6
    mcc_probs = np.tile(shape, (n_p, 1))
    for k in range(n_p):
        mcc_probs[k, rng.choice(MCC_CODES.size, 5, replace=False)] *= 3.0
    mcc_probs /= mcc_probs.sum(1, keepdims=True)
    hours = np.exp(-0.5 * ((np.arange(24) - 14) / 4.5) ** 2) + 0.02
    hour_probs = np.stack([np.roll(hours, s) for s in (-1, 1, 4, 0, -2, 2)])
    hour_probs /= hour_probs.sum(1, keepdims=True)
    return World(
        persona_names=PERSONAS,
        product_prevalence=np.clip(base * mult, 0, 0.95),
        group_acquisition_rate=np.array([0.01, 0.012, 0.02, 0.012, 0.025]),
        product_popularity=np.sqrt(base) / np.sqrt(base).sum(),
        segment_move_rate=0.045,
        segment_transition=np.array([[0, 0.8, 0.2], [0.6, 0, 0.4], [0.2, 0.8, 0]]),
        exit_rate=0.004,
        activity_flip_rate=0.03,
        txn_rate=np.array([5.0, 13.0, 10.0, 9.0, 3.0, 8.0]),
        mcc_codes=MCC_CODES,
        mcc_probs=mcc_probs,
        mcc_repeat_prob=0.2,
        amount_mu=np.array([3.2, 3.6, 3.0, 4.3, 3.3, 3.7]),
        amount_sigma=0.8,
        hour_probs=hour_probs,
        event_rates=dict(zip(EVENTS, (0.05, 0.03, 0.025, 0.03, 0.04, 0.05, 0.05, 0.35))),
    )


def sample_profiles(n: int, seed: int) -> pl.DataFrame:
    """Persona -> latents -> demographics, with every protected group well represented."""
    rng = np.random.default_rng(seed)
    persona = rng.choice(len(PERSONAS), n, p=PERSONA_WEIGHTS)
    lat = PERSONA_LATENT_MEANS[persona] + rng.normal(0, 0.7, (n, 5))
    wealth, activity, risk, digital, loyalty = lat.T
    age = np.clip(np.round(47 - 11 * digital + rng.normal(0, 12, n)), 18, 98).astype(np.int64)
    region = rng.choice(len(REGIONS), n, p=REGION_WEIGHTS)
    codes_by_region = {r: [c for c, (_, reg) in PROVINCES.items() if reg == r] for r in REGIONS}
    cod_prov = np.array([0] * n, dtype=np.float64)
    for i, r in enumerate(REGIONS):
        m = region == i
        cod_prov[m] = rng.choice(codes_by_region[r], m.sum())
    cod_prov[rng.random(n) < 0.055] = np.nan
    madrid = (region == REGIONS.index("Madrid")).astype(float)
    renta = np.round(np.exp(11.1 + 0.45 * wealth + 0.25 * madrid + rng.normal(0, 0.45, n)), 2)
    renta[rng.random(n) < 0.18] = np.nan
    foreign = rng.random(n) < 1 / (1 + np.exp(2.3 + 0.6 * loyalty))
    abroad = foreign & (rng.random(n) < 0.5)
    pais = np.where(abroad, rng.choice(FOREIGN_COUNTRIES, n), "ES")
    sexo = np.where(rng.random(n) < 1 / (1 + np.exp(-0.3 * risk)), "V", "H").astype(object)
    sexo[rng.random(n) < 0.055] = None
    tenure = np.round(rng.gamma(2.0, 30 * np.exp(0.45 * loyalty))).clip(0, 250).astype(np.int64)
    first_month = np.where(rng.random(n) < 0.82, 0, rng.integers(1, 15, n))
    tenure = np.where(first_month > 0, rng.integers(0, 3, n), tenure)
    tenure = np.where(rng.random(n) < 0.02, -999999, tenure)
    entry = np.array(SNAPSHOT_MONTHS, dtype="datetime64[D]")[first_month]
    alta = entry - (np.maximum(tenure, 0) * 30.4).astype("timedelta64[D]")
    segment = np.full(n, SEGMENTS[1], dtype=object)
    segment[(age < 25) & (rng.random(n) < 0.75)] = SEGMENTS[2]
    segment[(wealth > 1.3) & (rng.random(n) < 0.6)] = SEGMENTS[0]
    segment[rng.random(n) < 0.02] = None
    channel = np.asarray(CHANNELS)[np.clip((digital * 1.6 + 3.5 + rng.normal(0, 1.5, n)).astype(int), 0, 7)]
    active = (rng.random(n) < 1 / (1 + np.exp(-(0.1 + 1.3 * activity)))).astype(np.int8)
    empleado = np.where(rng.random(n) < 0.002, "A", "N")
    return pl.DataFrame(
        {
            "ncodpers": np.arange(n, dtype=np.int64) * 7 + 15889,
            "first_month": first_month,
            "persona": persona,
            **{k: lat[:, j] for j, k in enumerate(LATENTS)},
            "sexo": pl.Series(sexo.tolist(), dtype=pl.Utf8),
            "age": age,
            "birth_month_offset": rng.integers(0, 12, n),
            "renta": renta,
            "segmento": pl.Series(segment.tolist(), dtype=pl.Utf8),
            "cod_prov": cod_prov,
            "pais_residencia": pais,
            "indext": np.where(foreign, "S", "N"),
            "indresi": np.where(pais == "ES", "S", "N"),
            "canal_entrada": channel,
            "ind_empleado": empleado,
            "antiguedad": tenure,
            "ind_actividad_cliente": active,
            "fecha_alta": pl.Series(alta, dtype=pl.Date),
        }
    ).with_columns(pl.col("renta").fill_nan(None), pl.col("cod_prov").fill_nan(None).cast(pl.Int64))


def _fmt_number(col: str, width: int) -> pl.Expr:
    """Right-padded number strings as in train_ver2.csv; nulls become `NA` tokens."""
    return pl.col(col).cast(pl.Utf8).str.pad_start(width).fill_null(pl.lit(" " * (width - 2) + "NA"))


def render_raw_snapshots(snap: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Normalised snapshots -> the all-string frame of a raw CSV, with realistic dirt."""
    rng = np.random.default_rng(seed)
    n = snap.height
    raw = snap.select(
        pl.col("fecha_dato").dt.strftime("%Y-%m-%d"),
        pl.col("ncodpers").cast(pl.Utf8),
        pl.col("ind_empleado"),
        pl.col("pais_residencia"),
        pl.col("sexo"),
        _fmt_number("age", 6).alias("age"),
        pl.col("fecha_alta").dt.strftime("%Y-%m-%d"),
        pl.col("ind_nuevo").cast(pl.Utf8),
        _fmt_number("antiguedad", 6).alias("antiguedad"),
        pl.col("indrel").cast(pl.Utf8),
        pl.col("ult_fec_cli_1t").dt.strftime("%Y-%m-%d"),
        pl.col("indrel_1mes"),
        pl.col("tiprel_1mes"),
        pl.col("indresi"),
        pl.col("indext"),
        pl.col("conyuemp"),
        pl.col("canal_entrada"),
        pl.col("indfall"),
        pl.col("tipodom").cast(pl.Utf8),
        pl.col("cod_prov").cast(pl.Utf8),
        pl.col("nomprov"),
        pl.col("ind_actividad_cliente").cast(pl.Utf8),
        pl.col("renta").round(2).cast(pl.Utf8),
        pl.col("segmento"),
        *[pl.col(c).cast(pl.Utf8) for c in PRODUCT_COLUMNS],
    )
    u = rng.random((6, n))
    raw = raw.with_columns(
        # Mixed types and tokens the real file has.
        pl.when(pl.Series(u[0] < 0.3)).then(pl.lit("1.0")).otherwise(pl.col("indrel_1mes")).alias("indrel_1mes"),
        pl.when(pl.Series(u[1] < 0.5)).then(pl.col("cod_prov") + ".0").otherwise(pl.col("cod_prov")).alias("cod_prov"),
        pl.when(pl.col("renta").is_null() & pl.Series(u[2] < 0.5))
        .then(pl.lit("         NA"))
        .otherwise(pl.col("renta"))
        .alias("renta"),
        pl.col("sexo").fill_null(pl.when(pl.Series(u[3] < 0.5)).then(pl.lit("NA")).otherwise(pl.lit(" NA"))),
        pl.when(pl.Series(u[4] < 0.002)).then(pl.lit("NA")).otherwise(pl.col("ind_nomina_ult1")).alias("ind_nomina_ult1"),
    )
    # Rows a normaliser must quarantine (~0.6 % in all).
    bad = rng.random(n)
    raw = raw.with_columns(
        pl.when(pl.Series(bad < 0.0015)).then(pl.lit("2015-13-45")).otherwise(pl.col("fecha_dato")).alias("fecha_dato"),
        pl.when(pl.Series((bad >= 0.0015) & (bad < 0.003))).then(pl.lit("2")).otherwise(pl.col("ind_cco_fin_ult1")).alias("ind_cco_fin_ult1"),
        pl.when(pl.Series((bad >= 0.003) & (bad < 0.0045))).then(pl.lit("   164")).otherwise(pl.col("age")).alias("age"),
    )
    dupes = raw.filter(pl.Series(rng.random(n) < 0.0015)).with_columns(pl.col("renta").str.replace(r"\d$", "7"))
    raw = pl.concat([raw, dupes]).with_row_index("_order")
    raw = raw.with_columns(pl.Series("_key", rng.random(raw.height))).sort("_key").drop("_key", "_order")
    assert tuple(raw.columns) == SNAPSHOT_COLUMNS
    return raw


def render_raw_transactions(txn: pl.DataFrame, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = txn.height
    raw = txn.select(
        pl.col("ncodpers").cast(pl.Utf8),
        pl.col("ts").dt.strftime("%Y-%m-%d %H:%M:%S"),
        pl.col("amount").round(2).cast(pl.Utf8).str.pad_start(9),
        pl.col("mcc").cast(pl.Utf8),
        pl.col("merchant_id").cast(pl.Utf8),
    )
    bad = rng.random(n)
    return raw.with_columns(
        pl.when(pl.Series(bad < 0.001)).then(pl.lit("not a time")).otherwise(pl.col("ts")).alias("ts"),
        pl.when(pl.Series((bad >= 0.001) & (bad < 0.002))).then(pl.lit("12")).otherwise(pl.col("mcc")).alias("mcc"),
    )


def embedded_sample(n_customers: int = 20_000, seed: int = 2016) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The raw snapshot and transaction frames (all strings) of the embedded default."""
    sim = simulate(sample_profiles(n_customers, seed), sample_world(), seed)
    return render_raw_snapshots(sim.snapshots, seed + 1), render_raw_transactions(sim.transactions, seed + 2)


SAMPLE_DESCRIPTION = (
    "embedded deterministic sample: {n} customers x 17 months (2015-01-28 ... 2016-05-28), "
    "seed {seed}; raw Santander schema with dirt"
)


def demo_production_month(k: int, n_customers: int = 20_000, seed: int = 2016,
                          amount_scale: float = 1.0) -> tuple[dt.date, pl.DataFrame, pl.DataFrame]:
    """The k-th month (k >= 1) after the embedded sample's history, for the same customers: its
    snapshot date and the raw snapshot and transaction frames (all strings, dirt included) of that
    month alone. The panel continues from the sample's own 17 months (which this leaves exactly as
    `embedded_sample` draws them). `amount_scale` multiplies the month's amounts (a drifted demo)."""
    if k < 1:
        raise ValueError(f"demo production months start after the history: k must be >= 1, got {k}")
    if not amount_scale > 0:
        raise ValueError(f"amount_scale must be > 0, got {amount_scale}")
    months = len(SNAPSHOT_MONTHS) + k
    sim = simulate(sample_profiles(n_customers, seed), sample_world(), seed, months=months)
    date = month_date(months - 1)
    snapshots = sim.snapshots.filter(pl.col("fecha_dato") == date)
    after = dt.datetime.combine(month_date(months - 2) + dt.timedelta(days=1), dt.time())  # the month's window starts here
    transactions = sim.transactions.filter(pl.col("ts") >= after).with_columns((pl.col("amount") * amount_scale).round(2))
    return date, render_raw_snapshots(snapshots, seed + 1 + 10 * k), render_raw_transactions(transactions, seed + 2 + 10 * k)
