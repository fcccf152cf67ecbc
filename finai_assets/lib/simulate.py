"""Month-by-month vectorised simulation of a bank's customers in the raw Santander schemas.

One engine serves both the embedded raw sample and every synthetic version: given a table of
customer profiles (demographics, persona, five latents) and a `World` of rates, it rolls 17
monthly snapshots of holdings and `segmento` forward, draws card transactions with a sticky
persona-weighted MCC chain, and at the cutoff draws the post-cutoff events from the
variance-budget logit

    logit = sqrt(f_obs)·z(obs) + sqrt(f_lat)·z(latent) + sqrt(f_noise)·eps + intercept

(intercept solved so the event rate hits its target; eps ~ N(0, 1)), then flips a share of
events (rate-preserving swap: `flip_rate` of the positives become negatives and as many
negatives become positives). Label columns are never written here: only raw snapshots and
transactions, from which `candidate_labels` derives labels downstream.

Vectorised over customers; the only Python loop is over the 17 months.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
from scipy.special import ndtr

from finai_assets.lib.schema import (
    GROUP_OF_PRODUCT,
    PRODUCT_COLUMNS,
    PRODUCT_GROUPS,
    PRODUCTS,
    PROVINCES,
    SEGMENTS,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_MONTHS,
    month_date,
)

LATENTS: tuple[str, ...] = ("wealth", "activity", "risk", "digital", "loyalty")
GROUPS: tuple[str, ...] = tuple(PRODUCT_GROUPS)
N_MONTHS = len(SNAPSHOT_MONTHS)
PRODUCT_GROUP_INDEX = np.array([GROUPS.index(GROUP_OF_PRODUCT[p]) for p in PRODUCTS])
EPOCH = dt.datetime(1970, 1, 1)
PROVINCE_NAMES = {code: name for code, (name, _) in PROVINCES.items()}

# Which latents drive which post-cutoff event (weights on the five latents).
EVENT_LATENT_WEIGHTS: dict[str, tuple[float, ...]] = {
    "churn": (-0.3, -0.5, 0.4, 0.0, -0.8),
    "acquire_deposits": (0.4, 0.3, -0.3, 0.0, 0.5),
    "acquire_investments": (0.5, 0.3, 0.4, 0.2, 0.3),
    "acquire_lending": (0.2, 0.6, 0.4, 0.0, 0.3),
    "acquire_payments": (0.3, 0.8, 0.0, 0.3, 0.4),
    "acquire_accounts": (0.2, 0.6, 0.0, 0.4, 0.0),
    "segment_move": (0.7, 0.3, 0.0, 0.3, 0.0),
    "mcc_shift": (0.0, 0.4, 0.5, 0.6, -0.6),
}
EVENTS: tuple[str, ...] = tuple(EVENT_LATENT_WEIGHTS)


@dataclasses.dataclass(frozen=True)
class World:
    """Every rate the simulator needs. Arrays are indexed by persona, product or MCC slot."""

    persona_names: tuple[str, ...]
    product_prevalence: np.ndarray  # [persona, product] P(hold at entry)
    group_acquisition_rate: np.ndarray  # [group] monthly P(acquire >= 1 product of the group)
    product_popularity: np.ndarray  # [product] relative choice weight inside its group
    segment_move_rate: float  # monthly P(segment changes)
    segment_transition: np.ndarray  # [3, 3] row-stochastic, zero diagonal: where a move goes
    exit_rate: float  # monthly P(customer leaves the panel)
    activity_flip_rate: float  # monthly P(ind_actividad_cliente toggles)
    txn_rate: np.ndarray  # [persona] mean transactions per month
    mcc_codes: np.ndarray  # [n_mcc] the MCC vocabulary (int)
    mcc_probs: np.ndarray  # [persona, n_mcc] fresh-draw distribution per persona
    mcc_repeat_prob: float  # P(a transaction repeats the previous MCC)
    amount_mu: np.ndarray  # [persona] lognormal mu of amounts
    amount_sigma: float
    hour_probs: np.ndarray  # [persona, 24]
    event_rates: dict[str, float]  # realised post-cutoff event rates (after flips)
    f_obs: float = 0.15
    f_lat: float = 0.35
    f_noise: float = 0.50
    flip_rate: float = 0.07
    cutoff_index: int = 15  # 2016-04-28; the label month is index 16

    def __post_init__(self) -> None:
        n_persona = len(self.persona_names)
        assert self.product_prevalence.shape == (n_persona, len(PRODUCTS))
        assert self.group_acquisition_rate.shape == (len(GROUPS),)
        assert self.mcc_probs.shape == (n_persona, len(self.mcc_codes))
        assert self.hour_probs.shape == (n_persona, 24)
        assert np.allclose(self.mcc_probs.sum(1), 1) and np.allclose(self.hour_probs.sum(1), 1)
        assert abs(self.f_obs + self.f_lat + self.f_noise - 1.0) < 1e-9
        assert set(self.event_rates) == set(EVENTS)
        assert 0 < self.cutoff_index < N_MONTHS - 1


@dataclasses.dataclass
class Simulation:
    snapshots: pl.DataFrame  # raw schema, normalised types
    transactions: pl.DataFrame  # ncodpers, ts, amount, mcc, merchant_id, hour
    ground_truth: pl.DataFrame  # persona, latents, true event probabilities, flips


def zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def _unit_mean(x: np.ndarray) -> np.ndarray:
    return x / x.mean()


def solve_intercept(signal: np.ndarray, noise_sd: float, rate: float) -> float:
    """Intercept b with mean(Phi((signal + b) / noise_sd)) == rate (bisection, vectorised)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if ndtr((signal + mid) / noise_sd).mean() < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def flip_events(event: np.ndarray, flip_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Rate-preserving label noise: flip_rate of positives -> 0 and as many negatives -> 1."""
    pos, neg = np.flatnonzero(event), np.flatnonzero(~event)
    k = min(int(round(flip_rate * pos.size)), neg.size)
    out = event.copy()
    out[rng.choice(pos, k, replace=False)] = False
    out[rng.choice(neg, k, replace=False)] = True
    return out


def _sample_rows(probs: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per element, from probs[rows[i]] (inverse CDF, grouped by row)."""
    out = np.empty(rows.size, dtype=np.int64)
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    for r in np.unique(rows):
        m = rows == r
        out[m] = np.searchsorted(cdf[r], rng.random(m.sum()), side="right")
    return out


class _Panel:
    """Mutable per-customer state while the months roll forward."""

    def __init__(self, profiles: pl.DataFrame, world: World, rng: np.random.Generator):
        self.n = profiles.height
        self.ncodpers = profiles["ncodpers"].to_numpy()
        self.world = world
        self.persona = profiles["persona"].to_numpy().astype(np.int64, copy=True)
        self.latent = profiles.select(LATENTS).to_numpy().astype(np.float64)
        self.first_month = profiles["first_month"].to_numpy().astype(np.int64)
        self.present = np.zeros(self.n, dtype=bool)
        self.exited = np.zeros(self.n, dtype=bool)
        self.holdings = np.zeros((self.n, len(PRODUCTS)), dtype=bool)
        self.segment = (
            profiles["segmento"]
            .replace_strict({s: i for i, s in enumerate(SEGMENTS)}, default=-1, return_dtype=pl.Int64)
            .to_numpy()
            .copy()
        )
        self.active = profiles["ind_actividad_cliente"].to_numpy().astype(np.int8).copy()
        self.last_mcc = np.full(self.n, -1, dtype=np.int64)
        wealth, activity, _, _, loyalty = self.latent.T
        if "txn_per_month" in profiles.columns:  # a sampled profile carries its own rate
            self.txn_lambda = profiles["txn_per_month"].fill_null(world.txn_rate.mean()).to_numpy().clip(0.2, 60)
        else:
            self.txn_lambda = world.txn_rate[self.persona] * np.exp(0.3 * activity)
        # Organic propensities, normalised to mean 1 so the calibrated rates hold on average.
        self.acq_tilt = _unit_mean(np.exp(0.25 * (wealth + activity)))
        self.loss_tilt = _unit_mean(np.exp(-0.25 * loyalty))

    def enter(self, month: int, rng: np.random.Generator) -> None:
        new = (self.first_month == month) & ~self.present & ~self.exited
        if new.any():
            p = self.world.product_prevalence[self.persona[new]]
            wealth = self.latent[new, 0:1]
            p = np.clip(p * np.exp(0.2 * wealth), 0, 0.98)
            self.holdings[new] = rng.random(p.shape) < p
            self.present[new] = True

    def organic_month(self, rng: np.random.Generator) -> None:
        """Pre-cutoff month-to-month moves at the calibrated rates."""
        w = self.world
        alive = self.present.copy()
        # Acquisitions: per group, P(acquire >= 1) = rate (tilted), one product by popularity.
        held_before = self.holdings.copy()
        for g in range(len(GROUPS)):
            cols = np.flatnonzero(PRODUCT_GROUP_INDEX == g)
            avail = ~held_before[:, cols] & alive[:, None]
            can = avail.any(1)
            rate = np.clip(w.group_acquisition_rate[g] * self.acq_tilt, 0, 0.9)
            fire = can & (rng.random(self.n) < rate)
            self._acquire_one(fire, cols, avail, rng)
            # Losses balance acquisitions so holdings stay stationary.
            n_held = held_before[alive][:, cols].sum()
            acquired = fire.sum()
            loss_p = acquired / max(n_held, 1) * self.loss_tilt[:, None]
            drop = held_before[:, cols] & alive[:, None] & (rng.random((self.n, cols.size)) < loss_p)
            self.holdings[:, cols] &= ~drop
        self._move_segments(rng.random(self.n) < w.segment_move_rate, rng)
        toggle = alive & (rng.random(self.n) < w.activity_flip_rate)
        self.active[toggle] = 1 - self.active[toggle]
        leave = alive & (rng.random(self.n) < w.exit_rate)
        self.present[leave] = False
        self.exited[leave] = True

    def _acquire_one(self, fire, cols, avail, rng) -> np.ndarray:
        """For customers in `fire`, acquire one not-held product of `cols` by popularity."""
        rows = np.flatnonzero(fire)
        if rows.size == 0:
            return rows
        weights = avail[rows] * self.world.product_popularity[cols][None, :]
        weights = weights / weights.sum(1, keepdims=True)
        choice = (rng.random(rows.size)[:, None] > np.cumsum(weights, 1)).sum(1)
        choice = np.minimum(choice, cols.size - 1)
        self.holdings[rows, cols[choice]] = True
        return rows

    def _move_segments(self, move: np.ndarray, rng: np.random.Generator) -> None:
        move = move & self.present & (self.segment >= 0)
        rows = np.flatnonzero(move)
        if rows.size:
            self.segment[rows] = _sample_rows(
                self.world.segment_transition, self.segment[rows], rng
            )


def _obs_signals(panel: _Panel, profiles: pl.DataFrame, txn_count: np.ndarray) -> dict[str, np.ndarray]:
    """Observable part of each event's logit: z-scored, with multiplicative interactions."""
    renta = profiles["renta"].fill_null(profiles["renta"].median() or 0.0).to_numpy()
    log_income = zscore(np.log1p(renta))
    age = zscore(profiles["age"].fill_null(40).to_numpy().astype(float))
    tenure = zscore(profiles["antiguedad"].fill_null(0).clip(0, None).to_numpy().astype(float))
    n_prod = panel.holdings.sum(1).astype(float)
    prods = zscore(n_prod)
    txn = zscore(np.log1p(txn_count))
    active = zscore(panel.active.astype(float))
    group_held = [zscore(panel.holdings[:, PRODUCT_GROUP_INDEX == g].sum(1).astype(float)) for g in range(5)]
    return {
        "churn": -0.6 * txn - 0.5 * active - 0.4 * tenure + 0.5 * (txn * prods),
        "acquire_deposits": 0.3 * log_income + 0.1 * age - 0.3 * group_held[0] + 0.4 * log_income * tenure,
        "acquire_investments": 0.3 * log_income + 0.3 * prods + 0.5 * log_income * prods * tenure,
        "acquire_lending": 0.5 * active - 0.1 * age + 0.4 * txn + 0.3 * txn * log_income,
        "acquire_payments": 0.6 * active + 0.4 * txn - 0.4 * group_held[3] + 0.3 * active * tenure,
        "acquire_accounts": -0.15 * age + 0.4 * txn - 0.3 * group_held[4] + 0.3 * age * prods,
        "segment_move": 0.5 * log_income - 0.3 * age + 0.3 * log_income * age,
        "mcc_shift": 0.5 * txn - 0.4 * tenure + 0.4 * age * txn,
    }


def _post_cutoff_events(panel, profiles, txn_count, rng):
    """Draw every post-cutoff event from the variance-budget logit; return events and truth."""
    w = panel.world
    obs = _obs_signals(panel, profiles, txn_count)
    events, truth = {}, {}
    for name in EVENTS:
        lat = zscore(panel.latent @ np.array(EVENT_LATENT_WEIGHTS[name]))
        signal = np.sqrt(w.f_obs) * zscore(obs[name]) + np.sqrt(w.f_lat) * lat
        noise_sd = np.sqrt(w.f_noise)
        # Realised rate after the rate-preserving flip equals the pre-flip rate.
        b = solve_intercept(signal, noise_sd, w.event_rates[name])
        p_event = ndtr((signal + b) / noise_sd)
        raw = signal + b + noise_sd * rng.standard_normal(panel.n) > 0
        flipped = flip_events(raw, w.flip_rate, rng)
        r = raw.mean()
        q_in = w.flip_rate * r / max(1 - r, 1e-9)  # P(negative flipped to positive)
        truth[f"p_{name}"] = p_event * (1 - w.flip_rate) + (1 - p_event) * q_in
        truth[f"logit_{name}"] = signal + b
        truth[f"flipped_{name}"] = raw != flipped
        events[name] = flipped
    # P(acquires anything at c+1): churners acquire nothing; a group needs a product not yet held.
    none = np.ones(panel.n)
    for g, group in enumerate(GROUPS):
        avail = (~panel.holdings[:, PRODUCT_GROUP_INDEX == g]).any(1)
        none *= 1 - truth[f"p_acquire_{group}"] * avail
    truth["p_acquire_any"] = (1 - truth["p_churn"]) * (1 - none)
    return events, truth


def simulate(profiles: pl.DataFrame, world: World, seed: int, months: int = N_MONTHS) -> Simulation:
    """Roll the panel through 17 months; return raw snapshots, transactions and ground truth.
    `months` > 17 continues the panel organically after the label month (the demo production
    months); the first 17 months are the same whatever `months` is.

    `profiles` holds one row per customer: `ncodpers`, `first_month`, `persona`, the five
    latents, and the raw demographic columns (`sexo`, `age`, `renta`, `segmento`,
    `cod_prov`, `pais_residencia`, `indext`, `indresi`, `canal_entrada`, `ind_empleado`,
    `antiguedad` (months at entry, or the -999999 sentinel), `ind_actividad_cliente`,
    `fecha_alta`, `birth_month_offset` (0-11: months since the last birthday at entry)).
    """
    rng = np.random.default_rng(seed)
    panel = _Panel(profiles, world, rng)
    c = world.cutoff_index
    snapshots, transactions = [], []
    truth: dict[str, np.ndarray] = {}
    pre_cutoff_txn = np.zeros(panel.n, dtype=np.int64)
    shift = np.zeros(panel.n, dtype=bool)
    if months < N_MONTHS:
        raise ValueError(f"simulate needs at least the {N_MONTHS} history months, got months={months}")
    for month in range(months):
        if (month > 0 and month <= c) or month > c + 1:
            panel.organic_month(rng)
        elif month == c + 1:
            events, truth = _post_cutoff_events(panel, profiles, pre_cutoff_txn, rng)
            _apply_post_cutoff(panel, events, rng)
            shift = events["mcc_shift"] & panel.present
        panel.enter(month, rng)
        snapshots.append(_snapshot_frame(panel, profiles, month))
        txn, rows = _transactions_for_month(panel, month, shift, rng)
        if month <= c:
            pre_cutoff_txn += np.bincount(rows, minlength=panel.n)
        transactions.append(txn)
    ground_truth = pl.DataFrame(
        {
            "ncodpers": profiles["ncodpers"],
            "persona": np.asarray(world.persona_names)[panel.persona],
            **{k: profiles[k] for k in LATENTS},
            **{k: v for k, v in truth.items()},
        }
    )
    txn_frame = pl.concat(transactions, rechunk=False)
    return Simulation(pl.concat(snapshots), txn_frame, ground_truth)


def _apply_post_cutoff(panel: _Panel, events: dict[str, np.ndarray], rng) -> None:
    """Post-cutoff month: churners drop half their products and acquire nothing; others
    acquire one product per fired group; segments move on their event; a small exit hazard."""
    alive = panel.present.copy()
    churn = events["churn"] & alive
    held = panel.holdings.copy()
    for g in range(len(GROUPS)):
        cols = np.flatnonzero(PRODUCT_GROUP_INDEX == g)
        avail = ~held[:, cols] & alive[:, None]
        fire = events[f"acquire_{GROUPS[g]}"] & avail.any(1) & ~churn
        panel._acquire_one(fire, cols, avail, rng)
    n_held = held.sum(1)
    n_drop = np.ceil(n_held / 2).astype(np.int64)
    # Drop the n_drop held products with the smallest random keys.
    keys = np.where(held, rng.random(held.shape), np.inf)
    rank = keys.argsort(1).argsort(1)
    drop = churn[:, None] & held & (rank < n_drop[:, None])
    panel.holdings &= ~drop
    panel._move_segments(events["segment_move"], rng)
    leave = alive & (rng.random(panel.n) < panel.world.exit_rate)
    panel.present[leave] = False
    panel.exited[leave] = True


def _snapshot_frame(panel: _Panel, profiles: pl.DataFrame, month: int) -> pl.DataFrame:
    rows = np.flatnonzero(panel.present)
    date = month_date(month)
    p = profiles[rows]
    months_in = month - panel.first_month[rows]
    antig = p["antiguedad"].to_numpy()
    antig = np.where(antig >= 0, antig + months_in, antig)  # -999999 sentinel stays as it is
    frame = pl.DataFrame(
        {
            "fecha_dato": pl.Series([date] * rows.size, dtype=pl.Date),
            "ncodpers": p["ncodpers"],
            "ind_empleado": p["ind_empleado"],
            "pais_residencia": p["pais_residencia"],
            "sexo": p["sexo"],
            "age": (p["age"] + (months_in + p["birth_month_offset"].to_numpy()) // 12).cast(pl.Int16),
            "fecha_alta": p["fecha_alta"],
            "ind_nuevo": pl.Series((antig >= 0) & (antig < 6), dtype=pl.Int8),
            "antiguedad": pl.Series(antig, dtype=pl.Int32),
            "indrel": pl.Series(np.ones(rows.size), dtype=pl.Int16),
            "ult_fec_cli_1t": pl.Series([None] * rows.size, dtype=pl.Date),
            "indrel_1mes": pl.Series(["1"] * rows.size, dtype=pl.Utf8),
            "tiprel_1mes": pl.Series(np.where(panel.active[rows] == 1, "A", "I"), dtype=pl.Utf8),
            "indresi": p["indresi"],
            "indext": p["indext"],
            "conyuemp": pl.Series([None] * rows.size, dtype=pl.Utf8),
            "canal_entrada": p["canal_entrada"],
            "indfall": pl.Series(["N"] * rows.size, dtype=pl.Utf8),
            "tipodom": pl.Series(np.ones(rows.size), dtype=pl.Int8),
            "cod_prov": p["cod_prov"].cast(pl.Int16),
            "nomprov": p["cod_prov"].replace_strict(PROVINCE_NAMES, default=None, return_dtype=pl.Utf8),
            "ind_actividad_cliente": pl.Series(panel.active[rows], dtype=pl.Int8),
            "renta": p["renta"].cast(pl.Float64),
            "segmento": pl.Series(
                np.where(panel.segment[rows] >= 0, np.asarray(SEGMENTS)[np.maximum(panel.segment[rows], 0)], None),
                dtype=pl.Utf8,
            ),
            **{
                col: pl.Series(panel.holdings[rows, j], dtype=pl.Int8)
                for j, col in enumerate(PRODUCT_COLUMNS)
            },
        }
    )
    assert tuple(frame.columns) == SNAPSHOT_COLUMNS
    return frame


def _transactions_for_month(panel: _Panel, month: int, shift: np.ndarray, rng) -> tuple[pl.DataFrame, np.ndarray]:
    """Transactions dated in (snapshot[month-1], snapshot[month]]; sticky MCC chain."""
    w = panel.world
    lam = panel.txn_lambda * panel.present
    counts = rng.poisson(lam)
    row = np.repeat(np.arange(panel.n), counts)
    end = month_date(month)
    start = month_date(month - 1) if month > 0 else end - dt.timedelta(days=31)
    span_s = (end - start).days * 86400
    hour = _sample_rows(w.hour_probs, panel.persona[row], rng)
    day = rng.integers(0, span_s // 86400, row.size)
    secs = (day * 86400 + hour * 3600 + rng.integers(0, 3600, row.size)).astype(np.int64)
    order = np.argsort(row.astype(np.int64) * (1 << 23) + secs, kind="stable")  # == lexsort((secs, row)); secs < 2**23
    row, hour, secs = row[order], hour[order], secs[order]
    # Fresh draws: persona distribution; a shifted customer favours a new random MCC half the time.
    fresh = _sample_rows(w.mcc_probs, panel.persona[row], rng)
    if shift.any():
        favourite = rng.integers(0, w.mcc_codes.size, panel.n)
        use_new = shift[row] & (rng.random(row.size) < 0.5)
        fresh[use_new] = favourite[row[use_new]]
    first = np.ones(row.size, dtype=bool)
    first[1:] = row[1:] != row[:-1]
    repeat = rng.random(row.size) < w.mcc_repeat_prob
    # The first transaction of the month may repeat last month's final MCC (not after a shift).
    carry = first & repeat & (panel.last_mcc[row] >= 0) & ~shift[row]
    fresh[carry] = panel.last_mcc[row[carry]]
    anchor = first | ~repeat
    idx = np.maximum.accumulate(np.where(anchor, np.arange(row.size), 0))
    mcc = fresh[idx]
    last = np.ones(row.size, dtype=bool)
    last[:-1] = row[:-1] != row[1:]
    panel.last_mcc[row[last]] = mcc[last]
    base = int((dt.datetime.combine(start, dt.time()) - EPOCH).total_seconds()) + 86400
    wealth = panel.latent[row, 0]
    amount = np.exp(w.amount_mu[panel.persona[row]] + 0.2 * wealth + w.amount_sigma * rng.standard_normal(row.size))
    merchant = w.mcc_codes[mcc] * 1000 + rng.integers(0, 500, row.size)
    return pl.DataFrame(
        {
            "ncodpers": pl.Series(panel.ncodpers[row], dtype=pl.Int64),
            "ts": pl.Series((base + secs) * 1_000_000, dtype=pl.Datetime("us")),
            "amount": pl.Series(np.round(amount, 2), dtype=pl.Float64),
            "mcc": pl.Series(w.mcc_codes[mcc], dtype=pl.Int16),
            "merchant_id": pl.Series(merchant, dtype=pl.Int64),
            "hour": pl.Series(hour, dtype=pl.Int8),
        }
    ), row
