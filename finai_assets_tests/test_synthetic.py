"""The synthetic stage on the shared session build: checks green, determinism, ground truth."""

import base64
import dataclasses

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import synthetic as synth
from finai_assets.lib.schema import PRODUCT_COLUMNS, SNAPSHOT_MONTHS
from finai_assets.lib.storage import content_hash

VERSIONS = ("v2", "v3", "v4")


@pytest.fixture(scope="module")
def calibration(build):
    return build.warehouse.read("synthetic_calibration", None)


@pytest.fixture(scope="module")
def synthesizer(calibration):
    meta = calibration["synthesizer"].row(0, named=True)
    return synth.load_synthesizer(meta["path"], meta["sha256"])


@pytest.mark.parametrize("version", VERSIONS)
def test_each_version_materializes_with_every_check_passing(build, version):
    result = build.results[version]
    assert result.success
    evaluations = {
        e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == "synthetic_customers"
    }
    assert set(evaluations) == {"schema", "sdmetrics_quality", "privacy_dcr", "self_replication", "recipe_promises"}
    failed = {n: e.metadata.get("summary") for n, e in evaluations.items() if not e.passed}
    assert not failed
    stored = build.warehouse.read("synthetic_customers", version)
    assert stored["snapshots"]["ncodpers"].n_unique() == 20_000
    truth = build.warehouse.read("synthetic_ground_truth", version)
    assert truth.height == 20_000 and {"persona", "wealth", "p_churn", "p_acquire_deposits"} <= set(truth.columns)


def test_calibration_is_fitted_on_a_seeded_80_percent(build, calibration):
    profiles = build.warehouse.read("customer_profiles", None)
    split = synth.customer_split(profiles["ncodpers"], seed=7)
    assert 0.78 < split.mean() < 0.82
    train_ids = set(profiles.filter(split)["ncodpers"])
    assert set(calibration["real_train_sample"]["ncodpers"]) <= train_ids
    assert not set(calibration["real_holdout_sample"]["ncodpers"]) & train_ids
    assert calibration["synthesizer"]["fit_rows"][0] == len(train_ids)


@pytest.mark.parametrize("version", VERSIONS)
def test_versions_are_deterministic_by_seed(calibration, synthesizer, version):
    recipe = synth.RECIPES[version]
    a = synth.generate(calibration, synthesizer, recipe, 1500, seed=31)
    b = synth.generate(calibration, synthesizer, recipe, 1500, seed=31)
    c = synth.generate(calibration, synthesizer, recipe, 1500, seed=32)
    for table in ("snapshots", "transactions", "ground_truth"):
        assert content_hash(getattr(a, table)) == content_hash(getattr(b, table))
        assert content_hash(getattr(a, table)) != content_hash(getattr(c, table))


def test_recipes_are_numeric_deltas_on_the_previous_version():
    for previous, version in (("v2", "v3"), ("v3", "v4")):
        before, after = dataclasses.asdict(synth.RECIPES[previous]), dataclasses.asdict(synth.RECIPES[version])
        changed = {k for k in after if after[k] != before[k]} - {"name"}
        assert changed == set(synth.RECIPE_DELTAS[version])
    assert synth.RECIPES["v4"].mcc_stickiness == 0.60 and synth.RECIPES["v3"].mcc_stickiness == 0.30


def test_tampered_synthesizer_is_refused(calibration, tmp_path):
    meta = calibration["synthesizer"].row(0, named=True)
    copy = tmp_path / "synth.pkl"
    data = bytearray(open(meta["path"], "rb").read())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match"):
        synth.load_synthesizer(copy, meta["sha256"])


def _post_cutoff_acquisitions(snapshots: pl.DataFrame, group_cols: list[str]) -> pl.DataFrame:
    c, c1 = SNAPSHOT_MONTHS[15], SNAPSHOT_MONTHS[16]
    at_c = snapshots.filter(pl.col("fecha_dato") == c).select("ncodpers", *group_cols)
    at_c1 = snapshots.filter(pl.col("fecha_dato") == c1).select("ncodpers", *[pl.col(x).alias(x + "_n") for x in group_cols])
    joined = at_c.join(at_c1, on="ncodpers", how="inner")
    return joined.select("ncodpers", acquired=pl.any_horizontal((pl.col(x) == 0) & (pl.col(x + "_n") == 1) for x in group_cols))


def test_ground_truth_probabilities_are_calibrated_to_the_realised_events(build):
    """p_acquire_<group> is the true probability of what the snapshots show at c+1."""
    stored = build.warehouse.read("synthetic_customers", "v4")
    truth = build.warehouse.read("synthetic_ground_truth", "v4")
    cols = ["ind_deco_fin_ult1", "ind_deme_fin_ult1", "ind_dela_fin_ult1"]
    realised = _post_cutoff_acquisitions(stored["snapshots"], cols).join(truth, on="ncodpers")
    p = realised["p_acquire_deposits"].to_numpy()
    y = realised["acquired"].to_numpy()
    # Churners acquire nothing and customers holding every deposit product cannot acquire one.
    assert abs(y.mean() - 0.09) < 0.02
    order = np.argsort(p)
    top, bottom = y[order[-len(y) // 5 :]].mean(), y[order[: len(y) // 5]].mean()
    assert top > 2 * bottom  # the truth ranks the realised events


def test_label_noise_flips_events_at_the_recipe_rate(build):
    truth = build.warehouse.read("synthetic_ground_truth", "v2")
    flip_cols = [c for c in truth.columns if c.startswith("flipped_")]
    assert len(flip_cols) == 8
    assert not [c for c in truth.columns if c.startswith("label")]
    for col in flip_cols:
        event = col.removeprefix("flipped_")
        # A rate-preserving swap flips flip_rate of the positives and as many negatives.
        swap_rate = truth[col].sum() / (2 * truth[f"p_{event}"].sum())
        assert 0.055 < swap_rate < 0.085, (event, swap_rate)


def test_churn_event_halves_holdings_after_the_cutoff(build):
    stored = build.warehouse.read("synthetic_customers", "v3")["snapshots"]
    truth = build.warehouse.read("synthetic_ground_truth", "v3")
    count = pl.sum_horizontal(pl.col(c).fill_null(0) for c in PRODUCT_COLUMNS)
    c, c1 = SNAPSHOT_MONTHS[15], SNAPSHOT_MONTHS[16]
    counts = (
        stored.filter(pl.col("fecha_dato").is_in([c, c1]))
        .select("ncodpers", "fecha_dato", count.alias("n"))
        .pivot(on="fecha_dato", index="ncodpers", values="n")
        .drop_nulls()
        .join(truth.select("ncodpers", "p_churn"), on="ncodpers")
    )
    names = [str(c), str(c1)]
    dropped = counts.filter(pl.col(names[1]) < pl.col(names[0]))
    assert 0.02 < dropped.height / counts.height < 0.12
    assert dropped["p_churn"].mean() > 2 * counts["p_churn"].mean()


@pytest.mark.parametrize("version", VERSIONS)
def test_materializations_record_data_version_input_hashes_config_and_seed(build, version):
    (event,) = [e for e in build.results[version].get_asset_materialization_events()
                if e.asset_key.to_user_string() == "synthetic_customers"]
    mat = event.materialization
    manifest = build.warehouse.manifest("synthetic_customers", version)
    assert mat.tags["dagster/data_version"] == manifest["content_hash"]
    assert mat.metadata["input_hashes"].value == {
        "synthetic_calibration": build.warehouse.manifest("synthetic_calibration", None)["content_hash"]
    }
    assert mat.metadata["seed"].value == synth.VERSION_SEEDS[version]
    assert mat.metadata["config"].value == {"n_customers": 20_000, "seed_offset": 0, "min_protected_group_customers": 667}
    assert mat.metadata["recipe"].value["name"] == version


def test_recipe_plot_is_an_embedded_png(build):
    (event,) = [e for e in build.results["v4"].get_asset_materialization_events()
                if e.asset_key.to_user_string() == "synthetic_customers"]
    markdown = event.materialization.metadata["recipe_plot"].value
    assert markdown.startswith("![v4: recipe promises](data:image/png;base64,")
    png = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_calibration_without_transactions_is_refused_with_the_reason(build, tmp_path):
    profiles = build.warehouse.read("customer_profiles", None)
    snapshots = build.warehouse.read("santander_raw", None)["snapshots"]
    empty = build.warehouse.read("card_transactions_raw", None)["transactions"].clear()
    with pytest.raises(ValueError, match="needs card transactions"):
        synth.calibrate(profiles, snapshots, empty, tmp_path)
