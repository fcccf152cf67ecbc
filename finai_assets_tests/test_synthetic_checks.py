"""The per-version synthetic checks (thresholds: docs/thresholds.md#synthetic-data).

One calibration on a small embedded sample (4,000 customers, seed 2016) and v2 / v3 / v4 with
4,000 customers each are built once per module; every check must pass on them, and each check
must fail on a copy of a version broken in the way it guards against.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from finai_assets.lib.profiles import customer_profiles
from finai_assets.lib.raw import normalise_snapshots, normalise_transactions
from finai_assets.lib.sample import embedded_sample
from finai_assets.lib.schema import DEFAULT_CUTOFF, SEGMENTS
from finai_assets.lib.synthetic import RECIPES, VERSION_SEEDS, SyntheticVersion, calibrate, generate, load_synthesizer
from finai_assets.lib.stats import column_codes, conditional_entropy_ratio
from finai_assets.lib.synthetic_checks import (
    check_privacy,
    check_quality,
    check_recipe,
    check_schema,
    check_self_replication,
    distance_to_closest,
    SyntheticThresholds,
)

N_CUSTOMERS = 4_000
SAMPLE_SEED = 2016
VERSIONS = tuple(RECIPES)
PROMISES = ("stickiness", "mcc_boost", "segment_moves", "acquisition", "flip_rate", "disparate_impact", "protected_group_sizes")
# 4,000 customers instead of the default 20,000: the group-size minimum scales down with N.
SMALL_N = SyntheticThresholds(min_group_customers=SyntheticThresholds().min_group_customers * N_CUSTOMERS // 20_000)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    raw_snapshots, raw_transactions = embedded_sample(n_customers=N_CUSTOMERS, seed=SAMPLE_SEED)
    snapshots = normalise_snapshots(raw_snapshots).table
    transactions = normalise_transactions(raw_transactions).table
    profiles = customer_profiles(snapshots, transactions)
    return calibrate(profiles, snapshots, transactions, tmp_path_factory.mktemp("calibration"))


@pytest.fixture(scope="module")
def versions(calibration) -> dict[str, SyntheticVersion]:
    """Each version from a freshly loaded synthesizer, as the asset does."""
    return {
        v: generate(calibration.tables, load_synthesizer(calibration.synthesizer_path, calibration.synthesizer_sha256),
                    RECIPES[v], N_CUSTOMERS, VERSION_SEEDS[v])
        for v in VERSIONS
    }


@pytest.fixture(scope="module")
def profiles(versions) -> dict[str, pl.DataFrame]:
    return {v: customer_profiles(versions[v].snapshots, versions[v].transactions) for v in VERSIONS}


@pytest.fixture(scope="module")
def outcomes(versions, profiles, calibration):
    real = calibration.tables
    return {
        v: {
            "schema": check_schema(versions[v].snapshots, versions[v].transactions),
            "quality": check_quality(real["real_train_sample"], profiles[v]),
            "privacy": check_privacy(real["real_train_sample"], real["real_holdout_sample"], profiles[v]),
            "self_replication": check_self_replication(versions[v].snapshots, versions[v].ground_truth),
            "recipe": check_recipe(versions[v].snapshots, versions[v].transactions, versions[v].ground_truth, RECIPES[v],
                                   SMALL_N, mcc_vocabulary=real["mcc_vocabulary"]["mcc"]),
        }
        for v in VERSIONS
    }


def _recipe_outcome(version: SyntheticVersion, recipe_name: str, snapshots: pl.DataFrame | None = None):
    return check_recipe(version.snapshots if snapshots is None else snapshots, version.transactions,
                        version.ground_truth, RECIPES[recipe_name], SMALL_N)


# ---------------------------------------------------------------- every check passes on the generated versions


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("check", ("schema", "quality", "privacy", "self_replication"))
def test_check_passes_on_generated_version(outcomes, version, check):
    outcome = outcomes[version][check]
    assert outcome.passed, f"{version} {check}: {outcome.summary}"


@pytest.mark.parametrize(
    "version,promise",
    [(v, p) for v in VERSIONS for p in PROMISES if p != "acquisition" or RECIPES[v].acquisition_band is not None],
)
def test_recipe_promise_holds_on_generated_version(outcomes, version, promise):
    outcome = outcomes[version]["recipe"]
    assert outcome.metadata[f"{promise}_passed"], f"{version} {promise}: {outcome.summary}"


def test_recipe_outcome_passes_exactly_when_every_promise_holds(outcomes):
    for version in VERSIONS:
        meta = outcomes[version]["recipe"].metadata
        promised = [p for p in PROMISES if f"{p}_passed" in meta]
        assert outcomes[version]["recipe"].passed == all(meta[f"{p}_passed"] for p in promised)
        assert ("acquisition" in promised) == (RECIPES[version].acquisition_band is not None)


def test_outcome_metadata_is_json_friendly_scalars_or_tables(outcomes):
    for checks in outcomes.values():
        for outcome in checks.values():
            scalars = {k: v for k, v in outcome.metadata.items() if not isinstance(v, pl.DataFrame)}
            json.dumps(scalars, allow_nan=False)
            assert all(isinstance(v, (bool, int, float, str)) for v in scalars.values())


def test_quality_reports_every_score(outcomes):
    meta = outcomes["v3"]["quality"].metadata
    assert {"overall", "column_shapes", "column_pair_trends", "diagnostic"} <= set(meta)
    assert meta["real_rows"] == meta["synthetic_rows"] == 2_000
    assert meta["column_shape_scores"].height == 15


def test_disparate_impact_reports_every_attribute_with_group_sizes(outcomes):
    meta = outcomes["v4"]["recipe"].metadata
    groups = meta["group_rates"]
    assert set(groups["attribute"]) == {"gender", "age_band", "region", "income_band", "residency"}
    for attribute, table in groups.partition_by("attribute", as_dict=True).items():
        assert meta[f"di_{attribute[0]}"] == pytest.approx(table["rate"].min() / table["rate"].max())
    at_cutoff = meta["acquisition_rates"].filter(pl.col("fecha_dato") == DEFAULT_CUTOFF)["customers"].item()
    assert groups.group_by("attribute").agg(pl.col("customers").sum())["customers"].to_list() == [at_cutoff] * 5


def test_recipe_measures_the_designed_mcc_structure(outcomes):
    """The measured values track each recipe's numbers, not only its bands."""
    for version in VERSIONS:
        meta = outcomes[version]["recipe"].metadata
        assert abs(meta["stickiness"] - RECIPES[version].mcc_stickiness) < 0.03
        assert abs(meta["mcc_boost_median"] / RECIPES[version].mcc_boost - 1) < 0.15


# ---------------------------------------------------------------- each check fails on a frame broken its way


@pytest.mark.parametrize(
    "break_frames,column",
    [
        (lambda s, t: (s.drop("canal_entrada"), t), "canal_entrada"),
        (lambda s, t: (s.with_columns(pl.col("age").cast(pl.Int32)), t), "age"),
        (lambda s, t: (s, t.with_columns(pl.lit(99, pl.Int16).alias("mcc"))), "mcc"),
    ],
    ids=["dropped-column", "wrong-dtype", "mcc-out-of-range"],
)
def test_schema_fails_on_broken_frames(versions, break_frames, column):
    outcome = check_schema(*break_frames(versions["v2"].snapshots, versions["v2"].transactions))
    assert not outcome.passed
    assert column in outcome.summary


def test_quality_fails_on_degenerate_profiles(profiles, calibration):
    flat = profiles["v2"].with_columns(pl.lit(18, pl.Int16).alias("age"), pl.lit(1_000.0).alias("renta"),
                                    pl.lit(0, pl.Int32).alias("antiguedad"))
    outcome = check_quality(calibration.tables["real_train_sample"], flat)
    assert not outcome.passed
    assert outcome.metadata["column_shapes"] < 0.85


def test_diagnostic_fails_on_values_outside_their_domain(profiles, calibration):
    rng = np.random.default_rng(3)
    invalid = profiles["v2"].with_columns(
        pl.when(pl.Series(rng.random(profiles["v2"].height) < 0.05)).then(pl.lit(130, pl.Int16)).otherwise(pl.col("age")).alias("age")
    )
    outcome = check_quality(calibration.tables["real_train_sample"], invalid)
    assert not outcome.passed
    assert outcome.metadata["diagnostic"] < 1.0


def test_privacy_fails_when_real_rows_are_copied_in(profiles, calibration):
    train, synthetic = calibration.tables["real_train_sample"], profiles["v2"]
    copied = int(0.3 * synthetic.height)
    leaky = pl.concat(
        [synthetic.sample(synthetic.height - copied, seed=1), train.sample(copied, seed=2).select(synthetic.columns)],
        how="vertical_relaxed",
    )
    outcome = check_privacy(train, calibration.tables["real_holdout_sample"], leaky)
    assert not outcome.passed
    assert outcome.metadata["exact_match_synthetic"] > 0.2 > outcome.metadata["exact_match_holdout"]
    assert outcome.metadata["dcr_p5_synthetic"] == 0.0


@pytest.mark.parametrize(
    "copy,pair",
    [
        (pl.col("segmento").alias("canal_entrada"), ("segmento", "canal_entrada")),
        ((pl.col("renta") * 0.001).alias("age"), ("renta", "age")),
    ],
    ids=["string-copy", "scaled-copy"],
)
def test_self_replication_fails_on_copied_column(versions, copy, pair):
    version = versions["v2"]
    outcome = check_self_replication(version.snapshots.with_columns(copy), version.ground_truth)
    assert not outcome.passed
    assert pair in set(outcome.metadata["offending_pairs"].select("x", "y").iter_rows())


def test_self_replication_fails_on_leaked_ground_truth(versions):
    version = versions["v2"]
    at_cutoff = version.snapshots.filter(pl.col("fecha_dato") == DEFAULT_CUTOFF).select("ncodpers")
    band = at_cutoff.join(version.ground_truth, on="ncodpers").select(
        "ncodpers", wealth_band=pl.col("wealth").qcut(32).cast(pl.Utf8)
    )
    leaky = version.snapshots.join(band, on="ncodpers", how="left", maintain_order="left")
    outcome = check_self_replication(leaky, version.ground_truth)
    assert not outcome.passed
    assert ("wealth_band", "wealth") in set(outcome.metadata["ground_truth_leaks"].select("column", "ground_truth").iter_rows())


def test_self_replication_ignores_rows_after_the_cutoff(versions):
    version = versions["v2"]
    copied_later = version.snapshots.with_columns(
        pl.when(pl.col("fecha_dato") > DEFAULT_CUTOFF).then(pl.col("segmento")).otherwise(pl.col("canal_entrada"))
        .alias("canal_entrada")
    )
    assert check_self_replication(copied_later, version.ground_truth).passed


def test_self_replication_allows_the_schema_dependencies(outcomes):
    """The generator writes the raw schema's own functions (cod_prov <-> nomprov, ...): allowed, reported."""
    meta = outcomes["v2"]["self_replication"].metadata
    assert {"nomprov->cod_prov", "pais_residencia->indresi"} <= set(meta["allowed_dependencies_found"].split(", "))
    assert "indrel" in meta["constant_columns"].split(", ")


def test_segment_band_fails_when_a_month_is_rewritten(versions):
    version = versions["v2"]
    month = dt.date(2015, 9, 28)
    rng = np.random.default_rng(5)
    rewrite = (version.snapshots["fecha_dato"] == month) & pl.Series(rng.random(version.snapshots.height) < 0.2)
    shifted = version.snapshots.with_columns(
        pl.when(rewrite).then(pl.col("segmento").replace(dict(zip(SEGMENTS, SEGMENTS[1:] + SEGMENTS[:1]))))
        .otherwise(pl.col("segmento")).alias("segmento")
    )
    outcome = _recipe_outcome(version, "v2", shifted)
    assert not outcome.passed
    assert not outcome.metadata["segment_moves_passed"]
    assert outcome.metadata["segment_rate_max"] > 0.15


def test_v4_data_breaks_the_v2_promises(versions):
    outcome = _recipe_outcome(versions["v4"], "v2")
    assert not outcome.passed
    assert not outcome.metadata["stickiness_passed"]
    assert not outcome.metadata["mcc_boost_passed"]


# ---------------------------------------------------------------- building blocks


def test_distance_to_closest_matches_brute_force():
    rng = np.random.default_rng(11)
    query, reference = rng.normal(size=(300, 6)), rng.normal(size=(500, 6))
    brute = np.sqrt(((query[:, None, :] - reference[None, :, :]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(distance_to_closest(query, reference, block=64), brute, atol=1e-9)


def test_conditional_entropy_ratio_separates_copies_from_independent_columns():
    rng = np.random.default_rng(13)
    x = column_codes(pl.Series("x", rng.normal(size=5_000)))
    independent = column_codes(pl.Series("y", rng.normal(size=5_000)))
    coarse = x // 4  # a deterministic function of x
    assert conditional_entropy_ratio(x, coarse) == pytest.approx(0.0, abs=1e-12)
    assert conditional_entropy_ratio(coarse, x) > 0.3
    assert conditional_entropy_ratio(x, independent) > 0.8


def test_a_protected_group_below_the_minimum_fails(versions):
    outcome = check_recipe(versions["v4"].snapshots, versions["v4"].transactions, versions["v4"].ground_truth,
                           RECIPES["v4"], SyntheticThresholds())  # the 20,000-customer minimum on 4,000
    assert not outcome.passed and not outcome.metadata["protected_group_sizes_passed"]
    assert "smallest protected group" in outcome.summary and "(minimum 667)" in outcome.summary
