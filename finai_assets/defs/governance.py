"""Governance stage: the promotion decision of a candidate build, and the champion it exposes."""

import dagster as dg
import polars as pl

from finai_assets.dagster_meta import audited, code_version, hashes, labels_with_split, markdown_table
from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.defs.fairness import FAIRNESS_BLOCKING
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.lib import candidate
from finai_assets.lib import promotion as promo
from finai_assets.lib.schema import DEFAULT_CUTOFF
from finai_assets.lib.storage import content_hash
from finai_assets.resources import AuditLogResource, DataPaths, ModelRegistryResource

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports

GOVERNED_ASSETS = ("production_snapshots", "production_scores", "promotion_decision", "champion_model")


class PromotionSettings(dg.Config):
    """Launchpad config of the promotion decision (defaults: docs/thresholds.md#promotion). Only `dataset` is ever
    considered for promotion; auto-promote is off: a challenger that passes every rule is
    `eligible` until a run with force_promote (or auto_promote) makes it the champion."""

    dataset: str = "v4"
    force_promote: bool = False
    auto_promote: bool = False
    min_relative_gain: float = promo.PromotionConfig.min_relative_gain
    max_secondary_degradation: float = promo.PromotionConfig.max_secondary_degradation
    alpha: float = promo.PromotionConfig.alpha
    resamples: int = promo.PromotionConfig.resamples
    seed: int = promo.PromotionConfig.seed

    def lib_config(self) -> promo.PromotionConfig:
        return promo.PromotionConfig(**self.model_dump(exclude={"dataset"}))


@dg.asset(
    partitions_def=dataset_partitions, group_name="governance", kinds={"polars", "lightgbm"}, code_version=CODE_VERSION,
    # leakage_report gates every reader of the feature table; the others are read from storage: the candidate
    # copies the fitted pipeline and the teacher checkpoint, the archived champion re-scores its customers
    deps=["leakage_report", "feature_pipeline", "ple_teacher", "synthetic_customers"],
    # not gated on blocking checks: a failed fidelity or fairness check is what the decision rejects on (and audits)
    automation_condition=dg.AutomationCondition.eager(),
)
def promotion_decision(
    context: dg.AssetExecutionContext, config: PromotionSettings, fidelity_report: dict, fairness_report: dict,
    teacher_evaluation: dict, distilled_students: dict, feature_table: dict, task_labels: dict, split_assignments: pl.DataFrame,
    paths: DataPaths, model_registry: ModelRegistryResource, audit_log: AuditLogResource,
) -> dg.MaterializeResult:
    """Registers this build as a candidate (content-addressed copies of its feature pipeline,
    students, teacher checkpoint and training-feature sample) and judges it against the current
    champion on the candidate's test split, both models scoring the same customers: force-promote
    -> bootstrap (no champion yet: promotes) -> reject on any tier-1 fidelity failure or blocking
    fairness failure -> competition (mean AUC relative gain >= 0.5 %, secondary metrics <= 2 %
    worse, paired bootstrap on per-sample predictions p < 0.05; auto-promote off). Only the
    configured dataset partition (default v4) is considered. The decision is audited (fail
    closed) before the registry's champion pointer moves."""
    partition = context.partition_key
    registry = model_registry.registry
    if partition != config.dataset:
        table = candidate.out_of_scope(partition, config.dataset, registry)
        return dg.MaterializeResult(value={"decision": table}, data_version=dg.DataVersion(content_hash(table)),
                                    metadata={"decision": "not_considered", "reason": table["reason"][0]})
    labels = labels_with_split(task_labels, split_assignments)
    pipeline = {k: v for k, v in paths.warehouse.read("feature_pipeline", partition).items() if k != "isolation"}
    teacher = paths.warehouse.read("ple_teacher", partition)["manifest"].row(0, named=True)
    at_cutoff = paths.warehouse.scan("synthetic_customers", partition, "snapshots").filter(pl.col("fecha_dato") == DEFAULT_CUTOFF)
    train_renta = at_cutoff.join(labels.filter(pl.col("split") == "train").select("ncodpers").lazy(), on="ncodpers").select("renta").collect()
    inputs = hashes(paths.warehouse, {a: partition for a in ("fidelity_report", "fairness_report", "teacher_evaluation", "distilled_students",
                                                            "feature_table", "task_labels", "split_assignments", "feature_pipeline",
                                                            "ple_teacher", "synthetic_customers")})
    judged = candidate.judge(
        partition=partition, run_id=context.run.run_id, registry=registry, root=paths.root, audit=audit_log.log(), labels=labels,
        task_decisions=task_labels["decisions"], split_assignments=split_assignments, fidelity_report=fidelity_report,
        fairness_report=fairness_report, distilled_students=distilled_students, feature_table=feature_table, pipeline=pipeline,
        teacher=teacher, train_renta=train_renta["renta"], candidate_data=lambda: paths.warehouse.read("synthetic_customers", partition),
        inputs=inputs, config=config.lib_config(), fairness_blocking=FAIRNESS_BLOCKING,
    )
    decision = judged.decision
    return dg.MaterializeResult(
        value=judged.tables,
        data_version=dg.DataVersion(content_hash(judged.tables)),
        metadata={
            "decision": decision.decision,
            "promoted": decision.promoted,
            "rung": decision.rung,
            "reason": decision.reason,
            "candidate": judged.candidate_id[:16],
            "champion_before": (judged.champion_before or "none")[:16],
            "champion_after": (judged.champion_after or "none")[:16],
            "comparison": markdown_table(judged.tables["comparison"]),
            "significance": dg.MetadataValue.json(decision.significance or {}),
            "tasks_compared": judged.tasks_compared,
            "fidelity_failures": judged.fidelity_failures,
            "fairness_blocking_failures": judged.fairness_failures,
            "config": dg.MetadataValue.json(config.model_dump()),
            "input_hashes": dg.MetadataValue.json(inputs),
            "audit_seq": judged.audit_seq, "audit_head": judged.audit_head, "audit_event": judged.audit_event,
        },
    )


def _mirrored_heads(instance: dg.DagsterInstance) -> dict[str, tuple[int, str]]:
    """The (seq, head hash) each governed asset's latest materialization mirrored."""
    heads = {}
    for asset in GOVERNED_ASSETS:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        meta = records[0].asset_materialization.metadata if records else {}
        if "audit_seq" in meta:
            heads[asset] = (int(meta["audit_seq"].value), str(meta["audit_head"].value))
    return heads


@dg.asset(
    group_name="governance", kinds={"polars"}, code_version=CODE_VERSION,
    deps=[dg.AssetDep("promotion_decision", partition_mapping=dg.AllPartitionMapping())],
    check_specs=[dg.AssetCheckSpec("audit_chain", asset="champion_model", blocking=True,
                                   description="the audit log verifies (HMAC chain, anchor, every governed materialization's mirrored head)")],
    automation_condition=CHAIN_AUTOMATION,
)

def champion_model(context: dg.AssetExecutionContext, paths: DataPaths, model_registry: ModelRegistryResource,
                   audit_log: AuditLogResource):
    """The current champion, from the registry's pointer after the promotion decisions: its
    content-addressed copies of the feature pipeline, students, teacher checkpoint and
    training-feature sample, each verified against its sha256 here. Production scoring reads the
    champion through this asset; its data version is the champion's candidate id, so an
    unchanged champion rescores nothing."""
    registry = model_registry.registry
    record = registry.champion()
    if record is None:
        raise dg.Failure("no champion yet: materialize promotion_decision for the configured dataset (default v4); "
                         "the first candidate is promoted as the bootstrap champion")
    artifacts = pl.DataFrame([{"name": name, "sha256": sha, "path": str(registry.path(sha).relative_to(paths.root))}
                              for name, sha in sorted(record["artifacts"].items())])
    promotion = record["promotion"]
    champion = pl.DataFrame([{"candidate_id": record["candidate_id"], "dataset": record["dataset"], "run_id": record["run_id"],
                              "decision": promotion["decision"], "reason": promotion["reason"], "promoted_at": promotion["at"],
                              "promotion_audit_seq": promotion["audit_seq"]}])
    audit = audited(audit_log, "champion_exposed", "champion_model", None, context.run.run_id,
                    {"registry_events": str(len(registry.events()))}, record["candidate_id"])
    heads = _mirrored_heads(context.instance)
    log = audit_log.log()
    results = {asset: log.verify(expected_head=head) for asset, head in heads.items()}
    chain = log.verify(expected_head=(audit["audit_seq"], audit["audit_head"]))
    problems = sorted({p for v in [chain, *results.values()] for p in v.problems})
    yield dg.MaterializeResult(
        value={"champion": champion, "artifacts": artifacts},
        data_version=dg.DataVersion(record["candidate_id"]),
        metadata={
            "champion": record["candidate_id"][:16],
            "dataset": record["dataset"],
            "decision": promotion["decision"],
            "reason": promotion["reason"],
            "artifacts": markdown_table(artifacts, 60),
            "archived_champions": len(registry.champions()),
            **audit,
        },
    )
    yield dg.AssetCheckResult(
        check_name="audit_chain", asset_key="champion_model", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"entries": chain.entries, "head_seq": chain.head_seq, "head_hash": chain.head_hash,
                  "mirrored_heads": dg.MetadataValue.json({a: list(h) for a, h in heads.items()}),
                  "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
    )
