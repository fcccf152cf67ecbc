"""Labels stage: the 18 candidate labels per version and the customer-level split."""

import dagster as dg
import polars as pl

from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.dagster_meta import code_version, input_hashes, markdown_table, table_metadata
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.lib import labels as lab
from finai_assets.lib import task_screen as screen
from finai_assets.lib.storage import content_hash
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports


def _registry_table() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "task": c.name, "type": c.type, "classes": c.classes, "group": c.group, "loss": c.loss,
                "sources": ", ".join(sorted({f"{col}@{w}" for col, w in c.sources}))[:120],
                "pre_cutoff_only": c.pre_cutoff_only, "expected": c.expected, "reason": c.reason,
            }
            for c in lab.REGISTRY
        ]
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name="labels",
    kinds={"polars"},
    code_version=CODE_VERSION,
    automation_condition=CHAIN_AUTOMATION,
    check_specs=[dg.AssetCheckSpec("label_contract", asset="candidate_labels", blocking=True)],
)
def candidate_labels(
    context: dg.AssetExecutionContext, synthetic_customers: dict, paths: DataPaths
):
    """The 18 candidate labels (docs/labels.md) for every customer present at the cutoff
    (2016-04-28), from the snapshot at c+1 and the 30 days of transactions after the cutoff;
    null where the label semantics say so (absent at c+1, too little history or too few
    transactions). The registry (type, classes, group, loss, source columns and windows, expected
    fate) is in the metadata; `task_labels` screens the candidates down to the task set."""
    labels = lab.candidate_labels(synthetic_customers["snapshots"], synthetic_customers["transactions"])
    contract = lab.label_contract(labels)
    summary = pl.DataFrame(
        {
            "task": list(lab.CANDIDATES),
            "nulls": [labels[c].null_count() for c in lab.CANDIDATES],
            "mean": [labels[c].cast(pl.Float64).mean() for c in lab.CANDIDATES],
        }
    )
    return dg.MaterializeResult(
        value=labels,
        data_version=dg.DataVersion(content_hash(labels)),
        metadata={
            **table_metadata(labels),
            "customers_at_cutoff": labels.height,
            "absent_at_c_plus_1": int((~labels["present_next"]).sum()),
            "label_summary": markdown_table(summary),
            "registry": markdown_table(_registry_table()),
            "input_hashes": input_hashes(paths.warehouse, {"synthetic_customers": context.partition_key}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="label_contract", passed=not contract, severity=dg.AssetCheckSeverity.ERROR,
                metadata={"violations": dg.MetadataValue.json(contract)},
            )
        ],
    )


class SplitConfig(dg.Config):
    """Launchpad config of `split_assignments` (default shares train/val/calib/test 0.65/0.10/0.10/0.15)."""

    seed: int = lab.SPLIT_SEED
    max_share_deviation: float = 0.01


@dg.asset(
    partitions_def=dataset_partitions,
    group_name="features",
    kinds={"polars"},
    code_version=CODE_VERSION,
    automation_condition=CHAIN_AUTOMATION,
    deps=["synthetic_customers"],
    check_specs=[dg.AssetCheckSpec("stratified", asset="split_assignments", blocking=True)],
)
def split_assignments(
    context: dg.AssetExecutionContext, config: SplitConfig, candidate_labels: pl.DataFrame, paths: DataPaths
):
    """Customer-level train / val / calib / test = 0.65 / 0.10 / 0.10 / 0.15 (val: early stopping
    and routing; calib: Platt calibration; test: untouched until evaluation), stratified on
    churn_signal + the five will_acquire labels, ordered inside each stratum by a seeded hash of
    the customer id."""
    splits = lab.split_assignments(candidate_labels, seed=config.seed)
    balance = lab.split_balance(splits, candidate_labels)
    worst = float(balance["deviation"].max())
    return dg.MaterializeResult(
        value=splits,
        data_version=dg.DataVersion(content_hash(splits)),
        metadata={
            **table_metadata(splits),
            "shares": dg.MetadataValue.json(splits["split"].value_counts(normalize=True).sort("split").rows()),
            "strata": splits["stratum"].n_unique(),
            "balance": markdown_table(balance, 40),
            "config": dg.MetadataValue.json(config.model_dump()),
            "input_hashes": input_hashes(paths.warehouse, {"candidate_labels": context.partition_key}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="stratified", passed=worst <= config.max_share_deviation,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"max_deviation": worst, "threshold": config.max_share_deviation,
                          "target_shares": dg.MetadataValue.json(lab.SPLITS)},
            )
        ],
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name="labels",
    kinds={"polars", "sklearn"},
    code_version=CODE_VERSION,
    automation_condition=CHAIN_AUTOMATION,
    check_specs=[dg.AssetCheckSpec("decisions_match_registry", asset="task_labels", blocking=False)],
)
def task_labels(
    context: dg.AssetExecutionContext, candidate_labels: pl.DataFrame, split_assignments: pl.DataFrame,
    synthetic_customers: dict, paths: DataPaths,
):

    """The task set: the screen decides from data which candidates are prediction tasks (not a
    deterministic function of pre-cutoff features, not redundant with another candidate, not
    merely persisting) and publishes the decision table (metric, value, margin, decision,
    expected fate, agrees), with every candidate's determinism from pre-cutoff columns (MCC or
    min R^2 of OLS and a GBM, out of sample; margin to 0.99; a kept task stays <= 0.90). The
    labels of the kept tasks with each customer's split; `next_mcc` as its class in the top-49
    train vocabulary + other. A disagreement with the registry is a warning, never tuned away."""
    sources = lab.pre_cutoff_sources(synthetic_customers["snapshots"], synthetic_customers["transactions"])
    decisions = screen.screen(candidate_labels, split_assignments, sources)
    vocabulary = screen.next_mcc_vocabulary(candidate_labels, split_assignments)
    tasks = screen.task_labels(candidate_labels, split_assignments, decisions, vocabulary)
    tables = {"labels": tasks, "decisions": decisions, "next_mcc_vocabulary": vocabulary}
    kept = decisions.filter(pl.col("decision") == "kept")
    top = kept.drop_nulls("determinism_value").sort("determinism_value", descending=True).head(1)
    most_deterministic = {
        "task": top["task"].item() if top.height else None,
        "metric": top["determinism_metric"].item() if top.height else None,
        "value": top["determinism_value"].item() if top.height else None,
        "ceiling": screen.ScreenThresholds().kept_determinism,
    }
    disagreements = decisions.filter(~pl.col("agrees"))
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            **table_metadata(tasks),
            "kept_tasks": kept.height,
            "kept_by_type": dg.MetadataValue.json(dict(kept.group_by("type").len().sort("type").iter_rows())),
            "task_groups": ", ".join(sorted({lab.CANDIDATES[t].group for t in kept["task"]} - {None})),
            "decision_table": markdown_table(decisions.drop("details"), 20),
            "max determinism of a kept task": dg.MetadataValue.json(most_deterministic),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("candidate_labels", "split_assignments", "synthetic_customers")}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="decisions_match_registry", passed=disagreements.is_empty(),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"disagreements": markdown_table(disagreements.drop("details")) if disagreements.height else "none",
                          "kept": kept.height, "dropped": int((decisions["decision"] == "dropped").sum())},
            )
        ],
    )
