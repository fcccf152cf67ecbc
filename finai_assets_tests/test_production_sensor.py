"""The production drop sensor (build_sensor_context) and the run it requests: settled files only,
one run per content hash, replacements beside the old drop, bad files quarantined with a reason,
and nothing ever deleted."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from finai_assets.defs.production import production_snapshots
from finai_assets.defs.sensors import production_drop_sensor
from finai_assets.lib import inbox
from finai_assets.lib.sample import demo_production_month
from finai_assets.resources import DataPaths
from finai_assets_tests.conftest import resources_for

N = 300  # customers of the small demo month


@pytest.fixture(scope="module")
def demo():
    _, snapshots, transactions = demo_production_month(1, N)
    return snapshots, transactions


class World:
    def __init__(self, root: Path):
        self.root = root
        self.paths = DataPaths(data_dir=str(root))
        self.folders = self.paths.production
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None
        self.written: dict[str, str] = {}  # sha256 of every file ever dropped -> its name

    @property
    def resources(self) -> dict:
        return resources_for(self.root)

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"paths": self.paths})
        result = production_drop_sensor(context)
        self.cursor = result.cursor
        return result

    def drop(self, name: str, frame_or_bytes, done: bool = True) -> Path:
        self.folders.incoming.mkdir(parents=True, exist_ok=True)
        path = self.folders.incoming / name
        data = frame_or_bytes if isinstance(frame_or_bytes, bytes) else frame_or_bytes.write_csv().encode()
        path.write_bytes(data)
        if done:
            path.with_name(name + inbox.DONE).touch()
        self.written[hashlib.sha256(data).hexdigest()] = name
        return path

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        return dg.materialize([production_snapshots], partition_key=request.partition_key, run_config=request.run_config,
                              resources=self.resources, instance=self.instance, raise_on_error=False)

    def inventory(self) -> set[str]:
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in (self.root / "production").rglob("*") if p.is_file()}


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path / "data")


def test_an_empty_folder_requests_nothing(world):
    result = world.tick()
    assert not result.run_requests and "no drop" in result.skip_reason.skip_message
    world.folders.incoming.mkdir(parents=True)
    (world.folders.incoming / "README.txt").write_text("not a drop")
    result = world.tick()
    assert not result.run_requests and "README.txt" in result.skip_reason.skip_message and "not a drop file name" in result.skip_reason.skip_message


def test_a_good_file_gets_one_run_keyed_by_content_and_is_accepted(world, demo):
    snapshots, transactions = demo
    world.drop("transactions_2016-06.csv", transactions, done=False)
    world.drop("snapshots_2016-06.csv", snapshots, done=False)
    assert not world.tick().run_requests  # first seen: not settled yet
    (request,) = world.tick().run_requests  # unchanged since the last tick
    config = request.run_config["ops"]["production_snapshots"]["config"]
    assert request.partition_key == "2016-06-01"
    assert request.run_key == inbox.drop_key(config["snapshot_sha256"], config["transactions_sha256"])
    assert config["transactions_file"] == "transactions_2016-06.csv"
    assert not world.tick().run_requests  # requested once
    result = world.run(request)
    assert result.success
    stored = world.paths.warehouse.read("production_snapshots", "2016-06-01")
    assert stored["snapshots"]["fecha_dato"].unique().to_list() == [dt.date(2016, 6, 28)]
    assert stored["transactions"].height > 0 and not list(world.folders.incoming.glob("*_2016-06.csv"))
    (entry,) = world.folders.ledger.entries()
    assert entry["status"] == "accepted" and entry["key"] == request.run_key
    assert all(Path(p).exists() and f"accepted/2016-06/{request.run_key[:16]}" in p for p in entry["stored"])
    meta = result.asset_materializations_for_node("production_snapshots")[0].metadata
    assert meta["audit_seq"].value == 1 and len(meta["audit_head"].value) == 64


def test_the_same_file_again_requests_no_new_run(world, demo):
    snapshots, _ = demo
    world.drop("snapshots_2016-06.csv", snapshots)
    (request,) = world.tick().run_requests
    assert world.run(request).success
    world.drop("snapshots_2016-06.csv", snapshots)  # identical bytes dropped again
    result = world.tick()
    assert not result.run_requests and "same content as the drop accepted" in result.skip_reason.skip_message
    # even with a fresh cursor the ledger knows it
    world.cursor = None
    assert not world.tick().run_requests


def test_a_replaced_file_gets_a_new_run_and_the_old_drop_is_kept(world, demo):
    snapshots, _ = demo
    world.drop("snapshots_2016-06.csv", snapshots)
    (first,) = world.tick().run_requests
    assert world.run(first).success
    flipped = pl.when(pl.col("sexo") == "H").then(pl.lit("V")).otherwise(pl.lit("H"))  # one customer's sex corrected
    replacement = snapshots.with_columns(pl.when(pl.col("ncodpers") == snapshots["ncodpers"][0]).then(flipped).otherwise(pl.col("sexo")).alias("sexo"))
    assert not replacement.equals(snapshots)
    world.drop("snapshots_2016-06.csv", replacement)
    (second,) = world.tick().run_requests
    assert second.run_key != first.run_key and second.partition_key == first.partition_key
    assert world.run(second).success
    accepted = sorted(p.parent.name for p in (world.folders.accepted / "2016-06").rglob("snapshots_2016-06.csv"))
    assert accepted == sorted([first.run_key[:16], second.run_key[:16]])  # both drops, side by side
    assert world.folders.ledger.accepted()["2016-06-01"]["key"] == second.run_key  # the newest is the month
    assert set(world.written) <= world.inventory()


def test_a_half_written_file_is_not_picked_up(world, demo):
    snapshots, _ = demo
    data = snapshots.write_csv().encode()
    path = world.drop("snapshots_2016-06.csv", data[: len(data) // 2], done=False)
    assert not world.tick().run_requests
    with path.open("ab") as fh:  # the producer is still writing
        fh.write(data[len(data) // 2:])
    result = world.tick()
    assert not result.run_requests and "size or mtime changed" in result.skip_reason.skip_message
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # nothing changes any more
    (request,) = world.tick().run_requests
    assert request.run_config["ops"]["production_snapshots"]["config"]["snapshot_sha256"] == hashlib.sha256(data).hexdigest()


def test_a_bad_file_is_quarantined_with_its_reason(world):
    wrong = pl.DataFrame({"ID_code": ["train_0"], "target": ["0"], "var_0": ["8.9"]})  # Customer Transaction Prediction
    world.drop("snapshots_2016-06.csv", wrong)
    (request,) = world.tick().run_requests
    result = world.run(request)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "quarantined" in str(failure.event_specific_data.error) and "Customer Transaction Prediction" in str(failure.event_specific_data.error)
    reason = json.loads(next((world.folders.quarantine / request.run_key[:16]).glob("reason.json")).read_text())
    assert "Customer Transaction Prediction" in reason["reason"] and reason["snapshot"] == "snapshots_2016-06.csv"
    (entry,) = world.folders.ledger.entries()
    assert entry["status"] == "quarantined" and not result.asset_materializations_for_node("production_snapshots")
    assert set(world.written) <= world.inventory()


def test_a_month_that_does_not_match_its_file_name_is_quarantined(world, demo):
    snapshots, _ = demo  # fecha_dato 2016-06-28 ...
    world.drop("snapshots_2016-07.csv", snapshots)  # ... named for July
    (request,) = world.tick().run_requests
    assert request.partition_key == "2016-07-01"
    result = world.run(request)
    assert not result.success
    (entry,) = world.folders.ledger.entries()
    assert entry["status"] == "quarantined" and "fecha_dato holds ['2016-06-28']" in entry["reason"] and "2016-07" in entry["reason"]


def test_a_burst_of_20_files_gets_20_distinct_run_keys(world, demo):
    snapshots, _ = demo
    months = [dt.date(2016 + (5 + i) // 12, (5 + i) % 12 + 1, 28) for i in range(20)]
    for month in months:
        world.drop(f"snapshots_{month:%Y-%m}.csv", snapshots.with_columns(pl.lit(month.isoformat()).alias("fecha_dato")))
    requests = world.tick().run_requests
    assert len(requests) == 20 and len({r.run_key for r in requests}) == 20
    assert sorted(r.partition_key for r in requests) == sorted(m.replace(day=1).isoformat() for m in months)
    assert not world.tick().run_requests


def test_nothing_is_ever_deleted(world, demo):
    """Every file ever dropped (accepted, replaced, duplicated, rejected) still exists byte for byte."""
    snapshots, transactions = demo
    world.drop("transactions_2016-06.csv", transactions)
    world.drop("snapshots_2016-06.csv", snapshots)
    for request in world.tick().run_requests:
        assert world.run(request).success
    world.drop("snapshots_2016-06.csv", snapshots.head(250))  # a replacement without transactions
    world.drop("snapshots_2016-08.csv", pl.DataFrame({"ID_code": ["x"], "target": ["1"], "var_0": ["0.1"]}))  # a bad file
    for request in world.tick().run_requests:
        world.run(request)
    world.drop("transactions_2016-06.csv", transactions)  # a duplicate of the first drop stays in incoming/
    world.drop("snapshots_2016-06.csv", snapshots)
    assert not world.tick().run_requests
    assert set(world.written) <= world.inventory()
    statuses = sorted(e["status"] for e in world.folders.ledger.entries())
    assert statuses == ["accepted", "accepted", "quarantined"]


def test_drop_demo_writes_the_next_month_each_time(tmp_path, monkeypatch):
    """`finai drop-demo` (what `make drop-demo` runs): 2016-06, then 2016-07, each a settled drop
    the sensor takes at once; a month already waiting in incoming/ is not written again."""
    from finai_assets.cli import main

    data = tmp_path / "data"
    monkeypatch.setenv("FINAI_DATA_DIR", str(data))
    assert main(["drop-demo", "--customers", str(N)]) == 0
    assert main(["drop-demo", "--customers", str(N)]) == 0
    incoming = data / "production" / "incoming"
    assert sorted(p.name for p in incoming.iterdir()) == [
        "snapshots_2016-06.csv", "snapshots_2016-06.csv.done", "snapshots_2016-07.csv", "snapshots_2016-07.csv.done",
        "transactions_2016-06.csv", "transactions_2016-06.csv.done", "transactions_2016-07.csv", "transactions_2016-07.csv.done"]
    july = pl.read_csv(incoming / "snapshots_2016-07.csv", infer_schema=False)
    assert july["fecha_dato"].unique().to_list() == ["2016-07-28"] and july.height > 0.9 * N
    world = World(data)
    requests = world.tick().run_requests
    assert sorted(r.partition_key for r in requests) == ["2016-06-01", "2016-07-01"]
