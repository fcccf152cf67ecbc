"""The raw assets through Dagster: sources named, bad files rejected, last good state kept."""

import gzip

import dagster as dg
import polars as pl
import pytest

from finai_assets.defs.raw import card_transactions_raw, customer_profiles, santander_raw
from finai_assets.lib.sample import embedded_sample
from finai_assets.lib.storage import Warehouse
from finai_assets_tests.conftest import resources_for

SMALL = {"sample_customers": 600, "sample_seed": 11}


def _materialize(data_dir, assets, instance, config=SMALL):
    run_config = {"ops": {a.op.name: {"config": config} for a in assets if a.op.name != "customer_profiles"}}
    return dg.materialize(assets, instance=instance, resources=resources_for(data_dir), run_config=run_config, raise_on_error=False)


def _meta(result, asset):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def sample_strings():
    return embedded_sample(SMALL["sample_customers"], SMALL["sample_seed"])


def test_embedded_sample_materializes_with_source_and_quarantine(tmp_path, instance):
    result = _materialize(tmp_path, [santander_raw, card_transactions_raw, customer_profiles], instance)
    assert result.success
    meta = _meta(result, "santander_raw")
    assert meta["source"] == "embedded_sample"
    assert "600 customers" in meta["source_description"]
    assert meta["quarantined_rows"] > 0 and meta["quarantine_share"] < 0.05
    stored = Warehouse(tmp_path / "warehouse").read("santander_raw", None)
    assert stored["snapshots"].height == meta["dagster/row_count"]
    assert stored["quarantine"]["reason"].null_count() == 0
    assert set(stored["snapshots"]["fecha_dato"].unique().dt.strftime("%Y-%m").to_list()) >= {"2015-01", "2016-05"}
    profiles = _meta(result, "customer_profiles")
    assert set(profiles["input_hashes"]) == {"santander_raw", "card_transactions_raw"}


def test_real_file_is_used_and_named(tmp_path, instance, sample_strings):
    snapshots, transactions = sample_strings
    (tmp_path / "raw").mkdir()
    snapshots.head(2000).write_csv(tmp_path / "raw" / "train_ver2.csv")
    with gzip.open(tmp_path / "raw" / "card_transactions.csv.gz", "wb") as fh:
        transactions.head(5000).write_csv(fh)
    result = _materialize(tmp_path, [santander_raw, card_transactions_raw], instance)
    assert result.success
    snap, txn = _meta(result, "santander_raw"), _meta(result, "card_transactions_raw")
    assert snap["source"] == "file" and snap["source_path"].endswith("train_ver2.csv")
    assert len(snap["source_sha256"]) == 64 and snap["input_rows"] == 2000
    assert txn["source"] == "file" and txn["input_rows"] == 5000 and txn["availability"] == "available"


def test_real_snapshots_without_transactions_make_transactions_unavailable(tmp_path, instance, sample_strings):
    (tmp_path / "raw").mkdir()
    sample_strings[0].head(500).write_csv(tmp_path / "raw" / "train_ver2.csv")
    result = _materialize(tmp_path, [santander_raw, card_transactions_raw, customer_profiles], instance)
    assert result.success
    txn = _meta(result, "card_transactions_raw")
    assert txn["source"] == "unavailable" and txn["availability"].startswith("unavailable")
    assert txn["dagster/row_count"] == 0  # never the sample's transactions
    profiles = Warehouse(tmp_path / "warehouse").read("customer_profiles", None)
    assert profiles["txn_per_month"].null_count() == profiles.height


BAD_FILES = {
    "wrong dataset": ("train_ver2.csv", b"ID_code,target,var_0,var_1\ntrain_0,0,8.9,-6.7\n", "Customer Transaction Prediction"),
    "truncated": ("train_ver2.csv", None, "truncated"),
    "not a csv": ("train_ver2.csv", bytes(range(256)) * 40, "not a CSV"),
    "too dirty": ("train_ver2.csv", "dirty", "above the 5% limit"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_rejected_file_fails_the_run_and_keeps_the_last_good_materialization(tmp_path, instance, sample_strings, case):
    good = _materialize(tmp_path, [santander_raw], instance)
    assert good.success
    wh = Warehouse(tmp_path / "warehouse")
    before = wh.manifest("santander_raw", None)
    files_before = {p.name: p.read_bytes() for p in wh.location("santander_raw", None).iterdir()}

    name, content, message = BAD_FILES[case]
    (tmp_path / "raw").mkdir()
    target = tmp_path / "raw" / name
    if content is None:  # a real file cut in the middle of its last line
        sample_strings[0].head(300).write_csv(target)
        target.write_bytes(target.read_bytes()[:-25])
    elif content == "dirty":
        dirty = sample_strings[0].head(400).with_columns(
            pl.when(pl.int_range(pl.len()) % 10 == 0).then(pl.lit("2015-99-99")).otherwise(pl.col("fecha_dato")).alias("fecha_dato")
        )
        dirty.write_csv(target)
    else:
        target.write_bytes(content)

    bad = _materialize(tmp_path, [santander_raw], instance)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert message in failure.event_specific_data.error.to_string()
    assert wh.manifest("santander_raw", None) == before
    assert {p.name: p.read_bytes() for p in wh.location("santander_raw", None).iterdir()} == files_before


def test_two_candidate_raw_files_are_refused_naming_both(tmp_path, instance, sample_strings):
    (tmp_path / "raw").mkdir()
    sample_strings[0].head(100).write_csv(tmp_path / "raw" / "train_ver2.csv")
    sample_strings[0].head(100).write_parquet(tmp_path / "raw" / "train_ver2.parquet")
    result = _materialize(tmp_path, [santander_raw], instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.event_specific_data.error.to_string()
    assert "several raw files" in text and "train_ver2.csv" in text and "train_ver2.parquet" in text
