"""Governance stage: fairness of the students and the teacher across five protected attributes."""

import os

import dagster as dg
import polars as pl

from finai_assets.dagster_meta import code_version, input_hashes, labels_with_split, markdown_table
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.lib import fairness as fair
from finai_assets.lib import plots
from finai_assets.lib import protected as prot
from finai_assets.lib import teacher as tl
from finai_assets.lib.schema import DEFAULT_CUTOFF
from finai_assets.lib.storage import content_hash
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports

# One check per attribute, warning by default, blocking by config. Whether a check
# blocks is part of the definitions, so the switch is read when the code location loads.
FAIRNESS_BLOCKING = os.environ.get("FINAI_FAIRNESS_BLOCKING", "false").lower() in ("1", "true", "yes")


class FairnessConfig(dg.Config):
    """Launchpad config of the fairness report (defaults: docs/thresholds.md#fairness)."""

    min_group_size: int = fair.FairnessConfig.min_group_size  # test-split customers; smaller groups: insufficient_data
    threshold: float = fair.FairnessConfig.threshold  # decision: calibrated probability >= threshold
    top_k_percent: float = fair.FairnessConfig.top_k_percent  # decision: in the top k % of scores
    check_operating_point: str = fair.FairnessConfig.check_operating_point  # top_k | threshold
    resamples: int = fair.FairnessConfig.resamples
    relative_di_floor: float = fair.FairnessConfig.relative_di_floor
    seed: int = fair.FairnessConfig.seed

    def lib_config(self) -> fair.FairnessConfig:
        return fair.FairnessConfig(**self.model_dump())


def _check_name(attribute: str) -> str:
    return f"fairness_{attribute}"


@dg.asset(
    partitions_def=dataset_partitions, group_name="governance", kinds={"polars", "fairlearn"}, code_version=CODE_VERSION,
    deps=["synthetic_customers"],
    check_specs=[
        dg.AssetCheckSpec(_check_name(a), asset="fairness_report", blocking=FAIRNESS_BLOCKING,
                          description=f"{a}: the students' DI lower confidence bound >= 0.80 x the labels' own DI on every binary task "
                                      f"(fails on insufficient data); {'blocking' if FAIRNESS_BLOCKING else 'warning'} (FINAI_FAIRNESS_BLOCKING)")
        for a in prot.DECLARED_GROUPS
    ],
    automation_condition=CHAIN_AUTOMATION,
)
def fairness_report(
    context: dg.AssetExecutionContext, config: FairnessConfig, distilled_students: dict, teacher_predictions: pl.DataFrame,
    task_labels: dict, split_assignments: pl.DataFrame, paths: DataPaths,
):

    """Every binary task's decisions, students and teacher, at two documented operating points
    (calibrated probability >= threshold; top k % of scores), per group of the five protected
    attributes on the test split: selection rate and TPR with bootstrap CIs, disparate impact
    (min/max, four-fifths rule), statistical parity and equal-opportunity differences (fairlearn
    MetricFrame), beside the same metrics on the labels themselves (inherited vs model-induced
    disparity), and every 2-way intersection. Groups come from the customers' snapshot at the
    cutoff (income quintiles fitted on train) and are validated against the declared groups."""
    cfg = config.lib_config()
    specs = [s for s in tl.task_specs(task_labels["decisions"]) if s.type == "binary"]
    if not specs:
        raise ValueError("task_labels kept no binary task: there is no decision to judge; read its decision table")
    labels = labels_with_split(task_labels, split_assignments)
    snapshot = (paths.warehouse.scan("synthetic_customers", context.partition_key, "snapshots")
                .filter(pl.col("fecha_dato") == DEFAULT_CUTOFF).select(prot.SNAPSHOT_COLUMNS).collect())
    test, test_groups, edges = fair.test_split_groups(snapshot, labels, [s.name for s in specs])
    columns = ["ncodpers", *[f"p_{s.name}" for s in specs]]
    scores = {"student": distilled_students["predictions"].select(columns), "teacher": teacher_predictions.select(columns)}
    tables = fair.fairness_report(test_groups, test, scores, cfg)
    checks = tables["checks"]
    figures = {s.name: plots.fairness_figure(tables["groups"], s.name, f"{s.name}, {context.partition_key}: selection rate by group ({cfg.check_operating_point})",
                                             operating_point=cfg.check_operating_point)
               for s in specs}
    summary = tables["summary"].filter((pl.col("model") == "student") & (pl.col("operating_point") == cfg.check_operating_point))
    yield dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "dagster/row_count": tables["groups"].height,
            "checks": markdown_table(checks),
            "student_summary": markdown_table(summary.select("task", "attribute", "di", "di_ci_low", "label_di", "spd", "eod",
                                                             "four_fifths_pass", "relative_di_pass", "status"), 40),
            **{f"chart_{t}": dg.MetadataValue.md(md) for t, md in figures.items()},
            "income_edges": dg.MetadataValue.json(edges),
            "test_rows": test.height,
            "config": dg.MetadataValue.json(config.model_dump() | {"blocking": FAIRNESS_BLOCKING}),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in (
                "distilled_students", "teacher_predictions", "task_labels", "split_assignments", "synthetic_customers")}),
        },
    )
    for row in checks.iter_rows(named=True):
        yield dg.AssetCheckResult(
            check_name=_check_name(row["attribute"]), asset_key="fairness_report", passed=bool(row["passed"]),
            severity=dg.AssetCheckSeverity.ERROR if FAIRNESS_BLOCKING else dg.AssetCheckSeverity.WARN,
            metadata={"reason": row["reason"], "row": dg.MetadataValue.json({k: v for k, v in row.items() if k != "reason"}),
                      "relative_di_floor": cfg.relative_di_floor, "operating_point": cfg.check_operating_point,
                      "blocking": FAIRNESS_BLOCKING},
        )
