"""The code location: loads, declares the documented edges (docs/architecture.md), and stays light to import."""

import ast
import json
import subprocess
import sys

import dagster as dg

from finai_assets.definitions import defs
from finai_assets_tests.conftest import REPO
from finai_assets_tests.edges import CONTRACT_EDGES, contract_violations, loaded_edges

HEAVY = ("torch", "sdv", "lightgbm", "sklearn")


def test_definitions_load_and_validate():
    d = defs()
    dg.Definitions.validate_loadable(d)
    d.resolve_implicit_global_asset_job_def()


def test_the_graph_holds_every_contract_edge_group_and_partitioning():
    assert contract_violations(loaded_edges()) == []
    graph = defs().resolve_asset_graph()
    partitions = graph.get(dg.AssetKey("synthetic_customers")).partitions_def.get_partition_keys()
    assert partitions == ["v2", "v3", "v4"]
    months = graph.get(dg.AssetKey("production_scores")).partitions_def
    assert isinstance(months, dg.MonthlyPartitionsDefinition) and months.get_first_partition_key() == "2016-06-01"


def test_the_contract_check_catches_a_dropped_edge_and_a_regrouped_asset():
    actual = loaded_edges()
    group, partitioned, upstream = actual["teacher_predictions"]
    actual["teacher_predictions"] = (group, partitioned, upstream - {"ple_teacher"})
    actual["champion_model"] = ("production", *actual["champion_model"][1:])
    assert contract_violations(actual) == ["teacher_predictions: lacks the edges from ['ple_teacher']",
                                           "champion_model: group/partitioned ('production', False), expected ('governance', False)"]
    assert set(CONTRACT_EDGES) == set(loaded_edges())


def test_every_consumer_of_the_feature_table_depends_on_the_leakage_report():
    graph = defs().resolve_asset_graph()
    consumers = [k for k in graph.materializable_asset_keys if dg.AssetKey("feature_table") in graph.get(k).parent_keys]
    assert len(consumers) >= 5
    for key in consumers:
        if key != dg.AssetKey("leakage_report"):
            assert dg.AssetKey("leakage_report") in graph.get(key).parent_keys, key


def test_production_windows_use_offset_mappings():
    d = defs()
    scores = d.resolve_assets_def("production_scores")
    window = scores.get_partition_mapping(dg.AssetKey("production_snapshots"))
    assert isinstance(window, dg.TimeWindowPartitionMapping) and (window.start_offset, window.end_offset) == (-6, 0)
    assert window.allow_nonexistent_upstream_partitions
    outcome = d.resolve_assets_def("production_outcomes").get_partition_mapping(dg.AssetKey("production_snapshots"))
    assert (outcome.start_offset, outcome.end_offset) == (1, 1)


def test_sensors_and_automation_run_by_default():
    d = defs()
    for name in ("production_drop_sensor", "retrain_on_drift_sensor", "finai_automation"):
        assert d.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING, name
    graph = d.resolve_asset_graph()
    assert graph.get(dg.AssetKey("production_snapshots")).automation_condition is None  # only the drop sensor requests it
    assert graph.get(dg.AssetKey("santander_raw")).automation_condition is None  # rebuilt on request or by the retrain sensor only


def test_synthetic_checks_are_inline_and_blocking():
    d = defs()
    specs = {s.name: s for s in d.resolve_assets_def("synthetic_customers").check_specs}
    assert set(specs) == {"schema", "sdmetrics_quality", "privacy_dcr", "self_replication", "recipe_promises"}
    assert all(s.blocking for s in specs.values())


def test_every_asset_has_a_description_and_kinds():
    d = defs()
    graph = d.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        spec = graph.get(key)
        assert spec.description and len(spec.description) > 40, key
        assert spec.kinds, key


def test_loading_the_code_location_imports_no_heavy_library():
    code = (
        "import sys, json; from finai_assets.definitions import defs; defs();"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_library_modules_do_not_import_dagster():
    lib = REPO / "finai_assets" / "lib"
    paths = sorted(lib.rglob("*.py"))
    assert lib / "ple" / "train.py" in paths  # the scan reaches the subpackages
    for path in paths:
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "dagster"], path.relative_to(lib)


def test_defs_modules_import_no_heavy_library_at_module_level():
    for path in (REPO / "finai_assets" / "defs").glob("*.py"):
        tree = ast.parse(path.read_text())
        top = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
        top += [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert not [n for n in top if n.split(".")[0] in HEAVY], path.name
