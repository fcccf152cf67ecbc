"""Production stage: accepted monthly files, the champion's scores, drift, fairness and outcomes."""

import dataclasses
import datetime as dt
from typing import Optional

import dagster as dg
import polars as pl

from finai_assets.dagster_meta import audited, code_version, hashes, input_hashes, markdown_table, table_metadata
from finai_assets.defs.automation import PRODUCTION_AUTOMATION
from finai_assets.defs.partitions import production_months
from finai_assets.lib import drift as driftlib
from finai_assets.lib import fairness as fair
from finai_assets.lib import inbox
from finai_assets.lib import plots
from finai_assets.lib import raw as rawlib
from finai_assets.lib import production as prod
from finai_assets.lib.ple.config import training_threads
from finai_assets.lib.ple.tasks import TaskSpec
from finai_assets.lib.storage import content_hash
from finai_assets.resources import AuditLogResource, DataPaths, ModelRegistryResource

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports

# production_scores[m] reads months m-6..m (months before the first production month come from the history)
WINDOW = dg.TimeWindowPartitionMapping(start_offset=-6, allow_nonexistent_upstream_partitions=True)
NEXT_MONTH = dg.TimeWindowPartitionMapping(start_offset=1, end_offset=1, allow_nonexistent_upstream_partitions=True)


class ProductionDropConfig(dg.Config):
    """The drop the production sensor requested (file names in `production/incoming/` and the
    sha256 of the content it saw settle)."""

    snapshot_file: str
    snapshot_sha256: str
    transactions_file: Optional[str] = None
    transactions_sha256: Optional[str] = None
    max_quarantine_share: float = 0.05


def _month(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _champion(model_registry: ModelRegistryResource, champion_model: dict) -> prod.Champion:
    registry = model_registry.registry
    return prod.load_champion(registry, registry.candidate(champion_model["champion"]["candidate_id"][0]))


@dg.asset(partitions_def=production_months, group_name="production", kinds={"polars", "pandera"}, code_version=CODE_VERSION)
def production_snapshots(
    context: dg.AssetExecutionContext, config: ProductionDropConfig, paths: DataPaths,
    model_registry: ModelRegistryResource, audit_log: AuditLogResource,
) -> dg.MaterializeResult:
    """One production month, accepted: the drop the sensor requested is re-hashed, validated
    (raw schema, <= 5 % rows quarantined, every fecha_dato in the month its file name and
    partition say, transactions inside the month's window; no transaction file is refused while
    the champion needs transaction features), then moved atomically to
    `production/accepted/YYYY-MM/<key16>/` and recorded in the ledger by content hash. A bad drop
    moves to `production/quarantine/<key16>/` with `reason.json`, and the run fails naming why.
    Nothing is ever deleted; a replacement is stored beside the old drop and becomes the month."""
    champion = model_registry.registry.champion()
    needs_transactions = champion is not None and prod.needs_transactions(
        model_registry.registry.read_table(champion["artifacts"]["feature_schema"]))  # the schema only, not the whole champion
    folders = paths.production
    inputs = {config.snapshot_file: config.snapshot_sha256, **({config.transactions_file: config.transactions_sha256} if config.transactions_file else {})}
    key = inbox.drop_key(config.snapshot_sha256, config.transactions_sha256)
    try:
        accepted = inbox.process_drop(folders, _month(context), config.snapshot_file, config.snapshot_sha256, config.transactions_file,
                                      config.transactions_sha256, needs_transactions, config.max_quarantine_share, context.run.run_id)
    except inbox.DropRejected as rejected:
        audit = audited(audit_log, "drop_quarantined", "production_snapshots", context.partition_key, context.run.run_id, inputs, key,
                        {"reason": str(rejected)})
        raise dg.Failure(description=f"{rejected} Fix the file and drop it again.", metadata=audit) from rejected
    snapshots = accepted.snapshots
    txn = accepted.transactions if accepted.transactions is not None else rawlib.unavailable_transactions()
    tables = {"snapshots": snapshots.table, "transactions": txn.table, "quarantine": snapshots.quarantine,
              "transactions_quarantine": txn.quarantine,
              "drop": pl.DataFrame([{k: str(v) for k, v in accepted.entry.items() if k != "stored"}])}
    audit = audited(audit_log, "drop_accepted", "production_snapshots", context.partition_key, context.run.run_id, inputs, key,
                    {"stored": accepted.entry["stored"], "ledger_sequence": accepted.entry["sequence"]})
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(key),
        metadata={
            **table_metadata(snapshots.table),
            "drop_key": key,
            "files": dg.MetadataValue.json(inputs),
            "stored": dg.MetadataValue.json(accepted.entry["stored"]),
            "ledger_sequence": accepted.entry["sequence"],
            "transactions": "unavailable: no transaction file in the drop" if accepted.transactions is None else f"{txn.table.height} rows",
            "quarantined_rows": snapshots.quarantine.height + txn.quarantine.height,
            "quarantine_reasons": dg.MetadataValue.json({**snapshots.quarantine_reasons,
                                                         **{f"transactions: {k}": v for k, v in txn.quarantine_reasons.items()}}),
            "champion_needs_transactions": needs_transactions,
            **audit,
        },
    )


@dg.asset(
    partitions_def=production_months, group_name="production", kinds={"polars", "lightgbm"}, code_version=CODE_VERSION, pool="heavy",
    ins={"production_snapshots": dg.AssetIn(partition_mapping=WINDOW, metadata={"by_partition": True})},
    automation_condition=PRODUCTION_AUTOMATION,
)
def production_scores(
    context: dg.AssetExecutionContext, production_snapshots: dict, santander_raw: dict, card_transactions_raw: dict,
    champion_model: dict, paths: DataPaths, model_registry: ModelRegistryResource, audit_log: AuditLogResource,
) -> dg.MaterializeResult:
    """Every customer of the month scored by the champion: its feature pipeline (fitted on its
    training data, never refitted) applied at cutoff = this month over the history and the
    accepted months m-6..m, then its distilled students; the features (for drift), the protected
    groups (the champion's train-fitted income edges) and what month m+1's outcomes need."""
    month = _month(context)
    champion = _champion(model_registry, champion_model)
    snapshots, transactions = prod.panel(santander_raw["snapshots"], card_transactions_raw["transactions"], production_snapshots, month)
    if champion.needs_transactions and production_snapshots[context.partition_key]["transactions"].is_empty():
        raise dg.Failure(f"{context.partition_key} has no transactions and the champion's features need them; drop the month's "
                         "transaction file (a replacement drop rebuilds the month)")
    scores, features = prod.score_month(snapshots, transactions, champion, month, training_threads(None))  # heavy pool: every core
    groups = prod.protected_groups(snapshots, month, champion.meta["income_edges"])
    basis_snapshots, basis_transactions = prod.label_basis(snapshots, transactions, month)
    tasks = pl.DataFrame([dataclasses.asdict(s) for s in champion.specs])
    tables = {"scores": scores, "features": features, "groups": groups, "tasks": tasks,
              "label_snapshots": basis_snapshots, "label_transactions": basis_transactions}
    output = content_hash(tables)
    window = sorted(production_snapshots)
    inputs = {**{f"production_snapshots[{m}]": paths.warehouse.manifest("production_snapshots", m)["content_hash"] for m in window},
              **hashes(paths.warehouse, {"santander_raw": None, "card_transactions_raw": None, "champion_model": None})}
    audit = audited(audit_log, "production_scored", "production_scores", context.partition_key, context.run.run_id, inputs, output,
                    {"champion": champion.candidate_id, "customers": scores.height})
    means = scores.select(pl.exclude("ncodpers").mean()).row(0, named=True)
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(output),
        metadata={
            **table_metadata(scores),
            "champion": champion.candidate_id[:16],
            "champion_dataset": champion.dataset,
            "months_in_window": dg.MetadataValue.json(window),
            "mean_predictions": dg.MetadataValue.json({k: round(v, 5) for k, v in means.items() if k.startswith(("p_", "y_")) and k.count("_") >= 1}),
            "features": features.width - 1,
            "input_hashes": dg.MetadataValue.json(inputs),
            **audit,
        },
    )


class DriftConfig(dg.Config):
    """PSI thresholds (docs/thresholds.md#drift)."""

    warn: float = driftlib.DriftThresholds.warn
    breach: float = driftlib.DriftThresholds.breach
    bins: int = driftlib.DriftThresholds.bins


@dg.asset(
    partitions_def=production_months, group_name="production", kinds={"polars"}, code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec("no_drift_breach", asset="drift_report", blocking=False,
                                   description="no feature or prediction PSI at or above the breach threshold (a breach requests a retrain)")],
    automation_condition=PRODUCTION_AUTOMATION,
)
def drift_report(
    context: dg.AssetExecutionContext, config: DriftConfig, production_scores: dict, champion_model: dict,
    model_registry: ModelRegistryResource, paths: DataPaths,
):
    """PSI of every feature and every prediction of the month against the champion's
    training-feature sample (reference quantile bins, nulls their own bin): 0.10 warn, 0.25
    breach. A breach makes the retrain sensor rebuild santander_raw with the accepted months."""
    champion = _champion(model_registry, champion_model)
    thresholds = driftlib.DriftThresholds(warn=config.warn, breach=config.breach, bins=config.bins)
    reference = champion.training_sample
    predictions = [c for c in production_scores["scores"].columns if c != "ncodpers"]
    table = pl.concat([
        driftlib.drift_table(reference, production_scores["features"], champion.columns, "feature", thresholds),
        driftlib.drift_table(reference, production_scores["scores"], predictions, "prediction", thresholds),
    ])
    summary = driftlib.drift_summary(table, thresholds)
    breached = table.filter(pl.col("status") == "breach")
    yield dg.MaterializeResult(
        value={"psi": table, "summary": pl.DataFrame([{k: str(v) for k, v in summary.items()}])},
        data_version=dg.DataVersion(content_hash(table)),
        metadata={
            "dagster/row_count": table.height,
            "drift_breached": bool(summary["breached"]),
            "max_psi": float(summary["max_psi"]),
            "worst_column": str(summary["worst_column"]),
            "warn_columns": int(summary["warn"]),
            "breach_columns": int(summary["breach"]),
            "top_psi": markdown_table(table.sort("psi", descending=True).head(20)),
            "chart": dg.MetadataValue.md(plots.drift_figure(table, config.warn, config.breach, f"drift, {context.partition_key}")),
            "thresholds": dg.MetadataValue.json(config.model_dump()),
            "champion": champion.candidate_id[:16],
            "input_hashes": input_hashes(paths.warehouse, {"production_scores": context.partition_key, "champion_model": None}),
        },
    )
    yield dg.AssetCheckResult(check_name="no_drift_breach", asset_key="drift_report", passed=breached.is_empty(),
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"breached": markdown_table(breached), "breach": config.breach})


class ProductionFairnessConfig(dg.Config):
    min_group_size: int = fair.FairnessConfig.min_group_size
    threshold: float = fair.FairnessConfig.threshold
    top_k_percent: float = fair.FairnessConfig.top_k_percent

    def lib_config(self) -> fair.FairnessConfig:
        return fair.FairnessConfig(min_group_size=self.min_group_size, threshold=self.threshold, top_k_percent=self.top_k_percent)


def _specs(production_scores: dict) -> list[TaskSpec]:
    return [TaskSpec(**row) for row in production_scores["tasks"].iter_rows(named=True)]


@dg.asset(partitions_def=production_months, group_name="production", kinds={"polars"}, code_version=CODE_VERSION,
          automation_condition=PRODUCTION_AUTOMATION)
def production_fairness(
    context: dg.AssetExecutionContext, config: ProductionFairnessConfig, production_scores: dict, paths: DataPaths,
) -> dg.MaterializeResult:
    """The month's decisions per protected group, before any outcome is known: for every binary
    task at both operating points (calibrated p >= threshold; top k %), each group's selection
    rate with a Wilson 95 % interval (insufficient_data below the minimum group size), and per
    attribute the DI (four-fifths rule) and SPD. TPR and EOD follow with `production_outcomes`."""
    cfg = config.lib_config()
    tables = prod.selection_fairness(production_scores["groups"], production_scores["scores"], _specs(production_scores), cfg)
    summary = tables["summary"]
    top_k = summary.filter(pl.col("operating_point") == "top_k")
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "dagster/row_count": tables["groups"].height,
            "summary_top_k": markdown_table(top_k.select("task", "attribute", "di", "spd", "four_fifths_pass", "status"), 40),
            "four_fifths_failures_top_k": int((~top_k["four_fifths_pass"]).sum()),
            "chart": dg.MetadataValue.md(plots.fairness_figure(
                tables["groups"].rename({"rate_ci_low": "sel_ci_low", "rate_ci_high": "sel_ci_high"}).with_columns(model=pl.lit("student")),
                top_k["task"][0], f"{top_k['task'][0]}, {context.partition_key}: selection rate by group (top_k)")),
            "config": dg.MetadataValue.json(config.model_dump()),
            "input_hashes": input_hashes(paths.warehouse, {"production_scores": context.partition_key}),
        },
    )


@dg.asset(
    partitions_def=production_months, group_name="production", kinds={"polars", "fairlearn"}, code_version=CODE_VERSION,
    ins={"production_snapshots": dg.AssetIn(partition_mapping=NEXT_MONTH, metadata={"by_partition": True})},
    automation_condition=PRODUCTION_AUTOMATION,
)
def production_outcomes(
    context: dg.AssetExecutionContext, config: ProductionFairnessConfig, production_scores: dict, production_snapshots: dict,
    paths: DataPaths,
) -> dg.MaterializeResult:

    """Month m's outcomes once month m+1 has arrived: its realised binary labels (the training
    label code on snapshots m-5..m+1 and the transactions around m), and the lagged realised
    quality of the month's scores — AUC, base rate vs mean prediction, ECE — and their fairness
    with labels: TPR, EOD and DI beside the realised labels' own, per protected group."""
    following = dt.date.fromisoformat(context.partition_key)
    following = (following.replace(day=28) + dt.timedelta(days=7)).replace(day=1).isoformat()
    if following not in production_snapshots:
        raise dg.Failure(f"month {following} has not arrived yet: its outcomes need production_snapshots[{following}]")
    nxt = production_snapshots[following]
    specs = [s for s in _specs(production_scores) if s.type == "binary"]
    labels = prod.realised_labels(production_scores["label_snapshots"], production_scores["label_transactions"], nxt["snapshots"],
                                  nxt["transactions"], _month(context), [s.name for s in specs])
    tables = prod.outcomes(labels, production_scores["scores"], production_scores["groups"], config.lib_config())
    quality = tables["quality"]
    eod = tables["summary"].filter((pl.col("model") == "student") & (pl.col("operating_point") == "top_k"))
    return dg.MaterializeResult(
        value={**tables, "labels": labels},
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "dagster/row_count": labels.height,
            "realised_quality": markdown_table(quality),
            "mean_realised_auc": float(quality["auc"].mean()),
            "eod_top_k": markdown_table(eod.select("task", "attribute", "eod", "eod_ci_low", "eod_ci_high", "di", "label_di", "status"), 40),
            "tasks_without_outcome": dg.MetadataValue.json(sorted({s.name for s in specs} - set(labels.columns))),
            "input_hashes": input_hashes(paths.warehouse, {"production_scores": context.partition_key,
                                                                           "production_snapshots": following}),
        },
    )
