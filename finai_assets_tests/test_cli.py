"""`finai run` cuts each dataset partition into runs at the heavy pool: light runs of different
partitions overlap, heavy runs take turns, and no run ever waits inside Dagster for a pool slot."""

from __future__ import annotations

import dagster as dg

from finai_assets.cli import _stages
from finai_assets.definitions import defs
from finai_assets.defs.partitions import dataset_partitions


def test_a_partition_is_cut_into_light_and_heavy_runs_in_dependency_order():
    graph = defs().resolve_asset_graph()
    keys = {k for k in graph.materializable_asset_keys if graph.get(k).partitions_def == dataset_partitions}
    stages = _stages(graph, keys)
    assert [heavy for _, heavy in stages] == [False, True, False, True, False]
    assert stages[1][0] == ["baseline_models", "ple_teacher"] and stages[3][0] == ["distilled_students"]
    assert {a for names, _ in stages for a in names} == {k.to_user_string() for k in keys}
    position = {a: i for i, (names, _) in enumerate(stages) for a in names}
    for key in keys:
        assert all(position[p.to_user_string()] <= position[key.to_user_string()]
                   for p in graph.get(key).parent_keys if p in keys), key
        assert stages[position[key.to_user_string()]][1] == ("heavy" in graph.get(key).pools), key


def test_heavy_assets_in_a_chain_get_runs_of_their_own():
    @dg.asset
    def table() -> int:
        return 1

    @dg.asset(pool="heavy")
    def model(table: int) -> int:
        return table

    @dg.asset
    def report(table: int) -> int:
        return table

    @dg.asset(pool="heavy")
    def tuned(model: int) -> int:
        return model

    @dg.asset
    def scores(tuned: int, report: int) -> int:
        return tuned + report

    graph = dg.Definitions(assets=[table, model, report, tuned, scores]).resolve_asset_graph()
    assert _stages(graph, set(graph.materializable_asset_keys)) == [
        (["report", "table"], False), (["model"], True), (["tuned"], True), (["scores"], False)]
