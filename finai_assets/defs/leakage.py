"""Oracle ceilings and the blocking leakage report of the feature table."""

import dataclasses

import dagster as dg
import polars as pl

from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.dagster_meta import code_version, input_hashes, markdown_table
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.lib import leakage
from finai_assets.lib.storage import content_hash
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports

LEAKAGE_CHECKS = ("single_feature_dependency", "group_probes", "label_reproduction", "time_isolation", "lineage")


def _tasks_with_split(task_labels: dict, split_assignments: pl.DataFrame) -> pl.DataFrame:
    return task_labels["labels"].drop("split").join(split_assignments.select("ncodpers", "split"), on="ncodpers")


@dg.asset(partitions_def=dataset_partitions, group_name="features", kinds={"polars", "scipy"}, code_version=CODE_VERSION,
          automation_condition=CHAIN_AUTOMATION)
def oracle_report(
    context: dg.AssetExecutionContext, synthetic_ground_truth: pl.DataFrame, task_labels: dict,
    split_assignments: pl.DataFrame, paths: DataPaths,
) -> dg.MaterializeResult:
    """The ceiling each kept task can reach: the AUC (with its Hanley-McNeil SE) of the ground
    truth's own probability on the test split. Evaluation only: the leakage probes are judged
    against it, nothing trains on it."""
    report = leakage.oracle_report(synthetic_ground_truth, _tasks_with_split(task_labels, split_assignments))
    return dg.MaterializeResult(
        value=report,
        data_version=dg.DataVersion(content_hash(report)),
        metadata={
            "ceilings": markdown_table(report),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("synthetic_ground_truth", "task_labels", "split_assignments")}),
        },
    )


class LeakageConfig(dg.Config):
    """Thresholds of the leakage report (defaults: docs/thresholds.md)."""

    dependency: float = 0.99
    fixed_auc: float = 0.95
    fixed_r2: float = 0.90
    oracle_se: float = 2.0
    probe_rows: int = 200_000


@dg.asset(
    partitions_def=dataset_partitions,
    group_name="features",
    kinds={"polars", "lightgbm"},
    code_version=CODE_VERSION,
    automation_condition=CHAIN_AUTOMATION,
    check_specs=[dg.AssetCheckSpec(name, asset="leakage_report", blocking=True) for name in LEAKAGE_CHECKS],
)
def leakage_report(
    context: dg.AssetExecutionContext, config: LeakageConfig, feature_table: dict, task_labels: dict,
    split_assignments: pl.DataFrame, oracle_report: pl.DataFrame, paths: DataPaths,
):

    """Five blocking checks between the feature table and the kept labels: single-feature
    dependency (binned uncertainty coefficient), per-group LightGBM probes against the oracle
    ceiling + 2 SE (or AUC 0.95 / R^2 0.90), label reproduction, time isolation, lineage. Training
    depends on this asset, so a failure stops it."""
    th = leakage.LeakageThresholds(config.dependency, config.fixed_auc, config.fixed_r2, config.oracle_se, config.probe_rows)
    features, schema = feature_table["features"], feature_table["schema"]
    tasks = _tasks_with_split(task_labels, split_assignments)
    dependency = leakage.single_feature_dependency(features, tasks)
    probes = leakage.group_probes(features, schema, tasks, oracle_report, th)
    copies = leakage.label_reproduction(features, tasks, th.reproduction)
    isolation = feature_table["isolation"]
    names = leakage.lineage(features)
    strongest = dependency.sort("u", descending=True)
    flagged_dependency = strongest.filter(pl.col("u") >= th.dependency)
    flagged_probes = probes.filter("flagged")
    tables = {"dependency": dependency, "probes": probes, "reproductions": copies}
    results = {
        "single_feature_dependency": (flagged_dependency.is_empty(), {"flagged": markdown_table(flagged_dependency), "strongest": markdown_table(strongest.head(10))}),
        "group_probes": (flagged_probes.is_empty(), {"flagged": markdown_table(flagged_probes), "table": markdown_table(probes.pivot(on="task", index="group", values="value"), 10)}),
        "label_reproduction": (copies.is_empty(), {"copies": markdown_table(copies)}),
        "time_isolation": (bool(isolation["identical"].all()), {"tests": markdown_table(isolation.select("test", "identical"))}),
        "lineage": (not names, {"problems": dg.MetadataValue.json(names)}),
    }
    yield dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "probe_table": markdown_table(probes.pivot(on="task", index="group", values="value"), 10),
            "max_dependency": float(strongest["u"][0]) if strongest.height else 0.0,
            "proxy_probe_excluded_attributes": markdown_table(feature_table["proxy_probe"]),
            "thresholds": dg.MetadataValue.json(dataclasses.asdict(th)),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("feature_table", "task_labels", "split_assignments", "oracle_report")}),
        },
    )
    for name, (passed, meta) in results.items():
        yield dg.AssetCheckResult(check_name=name, asset_key="leakage_report", passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata=meta)
