"""The fairness report on v4 (the shared students build): five attributes with their declared
groups, students beside teacher and labels, per-attribute checks (warning by default, blocking
by config), and every group of every version large enough in the test split."""

import os
import shutil
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

from finai_assets.lib import fairness as fair
from finai_assets.lib import protected as prot
from finai_assets.lib.schema import DEFAULT_CUTOFF
from finai_assets_tests.conftest import ALL_DATASET_ASSETS, REPO, declared_checks, resources_for

ATTRIBUTES = ("gender", "age_band", "region", "income_band", "residency")


@pytest.fixture(scope="module")
def v4(students_build):
    return {"result": students_build.results["students_v4"], "report": students_build.warehouse.read("fairness_report", "v4"),
            "build": students_build}


def _test_groups(warehouse, version):
    snapshot = warehouse.read("synthetic_customers", version)["snapshots"].filter(pl.col("fecha_dato") == DEFAULT_CUTOFF)
    splits = warehouse.read("split_assignments", version).select("ncodpers", "split")
    train = snapshot.join(splits.filter(pl.col("split") == "train"), on="ncodpers")
    groups = prot.protected_groups(snapshot.select(prot.SNAPSHOT_COLUMNS), prot.fit_income_edges(train["renta"]))
    return groups.join(splits.filter(pl.col("split") == "test"), on="ncodpers")


def test_every_group_of_every_attribute_reaches_the_minimum_in_every_test_split(build):
    minimum = fair.FairnessConfig().min_group_size
    for version in ("v2", "v3", "v4"):
        groups = _test_groups(build.warehouse, version)
        prot.validate_groups(groups.drop("split"))
        for attribute, declared in prot.DECLARED_GROUPS.items():
            counts = dict(groups[attribute].value_counts().iter_rows())
            assert set(counts) == set(declared), (version, attribute)
            assert min(counts.values()) >= minimum, (version, attribute, counts)


def test_the_report_covers_students_teacher_and_labels_on_every_binary_task(v4):
    assert v4["result"].success
    report = v4["report"]
    summary, groups = report["summary"], report["groups"]
    assert set(summary["attribute"]) == set(ATTRIBUTES)
    assert set(summary["model"]) == {"student", "teacher", "labels"}
    assert set(summary["operating_point"]) == {"threshold", "top_k", "labels"}
    assert summary["task"].n_unique() == 7
    # at the top-k operating point each model selects the same share in every task
    top_k = groups.filter((pl.col("operating_point") == "top_k") & (pl.col("attribute") == "gender"))
    shares = top_k.group_by("task", "model").agg((pl.col("selection_rate") * pl.col("n")).sum() / pl.col("n").sum())
    assert shares["selection_rate"].is_between(0.099, 0.102).all(), shares
    # the labels select their positives: their rate is the group's base rate
    labels = groups.filter(pl.col("model") == "labels")
    assert (labels["selection_rate"] - labels["positives"] / labels["n"]).abs().max() < 1e-12
    # every declared group is reported, all large enough at the default minimum on this build
    assert set(groups.filter(pl.col("attribute") == "region")["group"]) == set(prot.DECLARED_GROUPS["region"])
    assert (groups.filter(pl.col("model") == "labels")["status"] != fair.INSUFFICIENT).all()
    # intersections: 2-way only, small cells flagged rather than judged
    inter = report["intersections"]
    assert inter["attribute"].n_unique() == 10 and inter["attribute"].str.count_matches("&").max() == 1
    assert (inter.filter(pl.col("n") < 100)["status"] == fair.INSUFFICIENT).all()


def test_one_warning_check_per_attribute_with_its_reason(v4):
    checks = {e.check_name: e for e in v4["result"].get_asset_check_evaluations() if e.asset_key.to_user_string() == "fairness_report"}
    assert set(checks) == {f"fairness_{a}" for a in ATTRIBUTES}
    table = dict(v4["report"]["checks"].select("attribute", "passed").iter_rows())
    for attribute in ATTRIBUTES:
        check = checks[f"fairness_{attribute}"]
        assert check.passed == table[attribute]
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert "label DI" in check.metadata["reason"].value or "insufficient" in check.metadata["reason"].value
    assert declared_checks()["fairness_report"] == {f"fairness_{a}": False for a in ATTRIBUTES}
    meta = next(iter(v4["result"].asset_materializations_for_node("fairness_report"))).metadata
    assert all("data:image/png;base64," in meta[k].value for k in meta if k.startswith("chart_"))


def test_fairness_checks_block_when_configured():
    code = ("from finai_assets.definitions import defs; g = defs().resolve_asset_graph(); "
            "print(sorted(g.get_check_spec(k).blocking for k in g.asset_check_keys if k.name.startswith('fairness_')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "FINAI_FAIRNESS_BLOCKING": "true"})
    assert out.stdout.strip() == str([True] * 5)


def test_a_lower_minimum_group_size_makes_small_intersections_count(v4, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(v4["build"].data_dir, data)  # the shared build keeps its default report
    config = {"ops": {"fairness_report": {"config": {"min_group_size": 30}}}}
    result = dg.materialize(ALL_DATASET_ASSETS, selection=["fairness_report"], partition_key="v4", instance=dg.DagsterInstance.ephemeral(),
                            resources=resources_for(data), run_config=config)
    lowered = resources_for(data)["paths"].warehouse.read("fairness_report", "v4")["intersections"]
    default = v4["report"]["intersections"]
    count = lambda t: t.filter(pl.col("status") != fair.INSUFFICIENT).height  # noqa: E731
    assert result.success and count(lowered) > count(default)
    assert (lowered.filter(pl.col("n").is_between(30, 99))["status"] != fair.INSUFFICIENT).all()
