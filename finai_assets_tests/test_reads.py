"""Every read is an edge: an asset that reads another asset's stored data (a warehouse table, a
checkpoint, a model file, an accepted drop) declares it upstream, so the lineage graph, staleness
and automation see it. Checked in the code (every path, taken or not) and on a real
materialization (every file actually opened)."""

from __future__ import annotations

import os
import textwrap

import dagster as dg
import polars as pl
import pytest

from finai_assets.defs.sensors import production_drop_sensor
from finai_assets.lib import inbox
from finai_assets.lib.sample import demo_production_month
from finai_assets.resources import DataPaths
from finai_assets_tests.conftest import ALL_ASSETS, resources_for
from finai_assets_tests.reads import REPO, ReadTracer, declared_upstream, hidden_reads, static_reads

DEFS = sorted((REPO / "finai_assets" / "defs").glob("*.py"))


def test_no_asset_code_reads_an_undeclared_asset():
    declared = declared_upstream()
    found = static_reads(DEFS, set(declared))
    assert {a for keys in found for a in keys} == set(declared)  # every asset's code was scanned
    reads = {keys: set(named) for keys, named in found.items()}
    assert hidden_reads(reads, declared) == {}, {k: found[k] for k in found if set(found[k]) - set(k)}
    # reads on paths a test build may not take are seen: the cross-fit, the champion's re-scoring
    assert "ple_teacher" in reads[frozenset({"distilled_students"})]
    assert {"feature_pipeline", "ple_teacher", "synthetic_customers"} <= reads[frozenset({"promotion_decision"})]


HIDDEN = '''
import dagster as dg
from finai_assets.dagster_meta import input_hashes


def _teacher_recipe(paths, partition):
    return paths.warehouse.read("ple_teacher", partition)


@dg.asset(deps=["feature_table"])
def scorecard(context, feature_table, paths):
    recipe = _teacher_recipe(paths, context.partition_key)
    return input_hashes(paths.warehouse, {a: context.partition_key for a in ("feature_table", "split_assignments")})


@dg.multi_asset(outs={"left": dg.AssetOut(), "right": dg.AssetOut()})
def pair(paths):
    return paths.artifacts / "distilled_students", paths.artifacts / "left"
'''


def test_the_scan_flags_a_read_the_asset_does_not_declare(tmp_path):
    module = tmp_path / "hidden.py"
    module.write_text(textwrap.dedent(HIDDEN))
    declared = {"scorecard": {"feature_table"}, "left": set(), "right": set()}
    found = static_reads([module], {"scorecard", "left", "right", "feature_table", "ple_teacher", "split_assignments",
                                    "distilled_students"})
    assert found[frozenset({"scorecard"})]["ple_teacher"] == {f"{os.path.relpath(module, REPO)}:7"}  # in the helper it calls
    assert set(found[frozenset({"scorecard"})]) == {"ple_teacher", "feature_table", "split_assignments"}
    reads = {keys: set(named) for keys, named in found.items()}
    assert hidden_reads(reads, declared) == {"scorecard": ["ple_teacher", "split_assignments"], "left+right": ["distilled_students"]}


def test_the_tracer_flags_a_read_the_asset_does_not_declare(tmp_path):
    @dg.asset
    def ledger() -> pl.DataFrame:
        return pl.DataFrame({"x": [1, 2, 3]})

    @dg.asset
    def summary(paths: DataPaths) -> pl.DataFrame:  # reads ledger's table without declaring it
        return paths.warehouse.read("ledger", None).select(pl.col("x").sum())

    @dg.asset(deps=[ledger])
    def declared_summary(paths: DataPaths) -> pl.DataFrame:
        return paths.warehouse.read("ledger", None).select(pl.col("x").max())

    assets = [ledger, summary, declared_summary]
    resources = resources_for(tmp_path)
    declared = declared_upstream(dg.Definitions(assets=assets, resources=resources))
    assert declared == {"ledger": set(), "summary": set(), "declared_summary": {"ledger"}}
    with ReadTracer(tmp_path) as tracer:
        for asset in assets:
            with tracer.charging([asset.key.to_user_string()]):
                assert dg.materialize(assets, selection=[asset], resources=resources).success
    assert tracer.reads[frozenset({"summary"})] == {"ledger"}
    assert hidden_reads(tracer.reads, declared) == {"summary": ["ledger"]}


# Every op runs under the tracer, one op per run, so each read is charged to the op that made it.
# Small sizes, where size changes no read: 4,000 customers, a short teacher.
N = 4_000
RAW = {"sample_customers": N}
TEACHER = {"epochs": 1, "patience": 1, "seed": 0, "max_train_rows": 1_000}
STUDENTS = {"max_rounds": 20}
MONTHS = ("2016-06-01", "2016-07-01")
STEPS = [
    (["santander_raw"], None, RAW), (["card_transactions_raw"], None, RAW), (["customer_profiles"], None, {}),
    (["synthetic_calibration"], None, {}),
    (["synthetic_customers", "synthetic_ground_truth"], "v4", {"n_customers": N, "min_protected_group_customers": 60}),
    (["candidate_labels"], "v4", {}), (["split_assignments"], "v4", {"max_share_deviation": 0.03}), (["task_labels"], "v4", {}),
    (["feature_pipeline"], "v4", {}), (["feature_table"], "v4", {}), (["oracle_report"], "v4", {}), (["leakage_report"], "v4", {}),
    (["ple_teacher"], "v4", TEACHER), (["baseline_models"], "v4", TEACHER),
    (["teacher_predictions"], "v4", {}), (["teacher_evaluation"], "v4", {}),
    (["distilled_students"], "v4", STUDENTS), (["fidelity_report"], "v4", {}), (["fairness_report"], "v4", {"min_group_size": 20, "resamples": 50}),
    (["promotion_decision"], "v4", {"resamples": 100}),  # the bootstrap champion
    (["champion_model"], None, {}),
    # a cross-fit reads the teacher's checkpoint; the new candidate is judged against the champion (re-scored)
    (["distilled_students"], "v4", {**STUDENTS, "cross_fit_folds": 2}), (["promotion_decision"], "v4", {"resamples": 100}),
    *[(["production_snapshots"], m, None) for m in MONTHS],
    (["production_scores"], MONTHS[0], {}), (["drift_report"], MONTHS[0], {}), (["production_fairness"], MONTHS[0], {}),
    (["production_outcomes"], MONTHS[0], {}),
    (["santander_raw"], None, RAW),  # now with the accepted months appended
]


@pytest.mark.slow
def test_every_file_a_materialization_opens_belongs_to_a_declared_upstream(tmp_path):
    data = tmp_path / "data"
    folders = inbox.Folders(data / "production")
    for k in (1, 2):
        date, snapshots, transactions = demo_production_month(k, N)
        inbox.write_drop(folders, date.replace(day=1), snapshots, transactions)
    resources = resources_for(data)
    instance = dg.DagsterInstance.ephemeral()
    sensor = dg.build_sensor_context(instance=instance, resources={"paths": resources["paths"]})
    drops = {r.partition_key: r.run_config for r in production_drop_sensor(sensor).run_requests}
    assert sorted(drops) == list(MONTHS)
    decisions = []
    with ReadTracer(data) as tracer:
        for keys, partition, config in STEPS:
            op = "synthetic_version" if keys[0] == "synthetic_customers" else keys[0]
            run_config = drops[partition] if config is None else {"ops": {op: {"config": config}}}
            with tracer.charging(keys):
                result = dg.materialize(ALL_ASSETS, selection=keys, partition_key=partition, instance=instance, resources=resources,
                                        run_config=run_config, raise_on_error=False)
            assert result.asset_materializations_for_node(op), f"{keys}[{partition}] did not materialize"
            if op == "promotion_decision":
                decisions.append(result.asset_materializations_for_node(op)[0].metadata["decision"].value)
    declared = declared_upstream()
    assert {k for keys in tracer.reads for k in keys} == set(declared)  # every asset ran under the tracer
    assert hidden_reads(tracer.reads, declared) == {}
    reads = tracer.reads
    # the tracer saw the reads that are not inputs: a checkpoint, accepted drops, the champion's re-scoring
    assert decisions[0] == "bootstrap" and decisions[1] != "already_champion"
    assert {"feature_pipeline", "ple_teacher", "synthetic_customers"} <= reads[frozenset({"promotion_decision"})]
    assert "ple_teacher" in reads[frozenset({"distilled_students"})]
    assert "ple_teacher" in reads[frozenset({"teacher_predictions"})]
    assert "production_snapshots" in reads[frozenset({"santander_raw"})]
