"""A build as a promotion candidate: register its artifacts, score it and the current champion
on the candidate's test split, decide by the promotion ladder (`promotion.decide`), audit the
decision (fail closed) and only then move the registry's champion pointer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import polars as pl

from finai_assets.lib import features as feat
from finai_assets.lib import production as prod
from finai_assets.lib import promotion as promo
from finai_assets.lib import protected as prot
from finai_assets.lib import student_tables as dl
from finai_assets.lib import teacher as tl
from finai_assets.lib.audit import AuditLog
from finai_assets.lib.registry import ModelRegistry

ASSET = "promotion_decision"
_EMPTY = pl.DataFrame({"metric": []}, schema={"metric": pl.Utf8})


@dataclasses.dataclass(frozen=True)
class Judgement:
    tables: dict[str, pl.DataFrame]  # decision, comparison, significance
    decision: promo.Decision
    candidate_id: str
    champion_before: str | None
    champion_after: str | None
    tasks_compared: int
    fidelity_failures: int
    fairness_failures: int
    audit_event: str
    audit_seq: int
    audit_head: str


def decision_table(partition: str, decision: str, promoted: bool, rung: str, reason: str, candidate: str | None,
                   champion_before: str | None, champion_after: str | None) -> pl.DataFrame:
    return pl.DataFrame([{"dataset": partition, "decision": decision, "promoted": promoted, "rung": rung, "reason": reason,
                          "candidate": candidate, "champion_before": champion_before, "champion_after": champion_after}])


def out_of_scope(partition: str, dataset: str, registry: ModelRegistry) -> pl.DataFrame:
    """The decision table of a partition promotion does not consider (only `dataset` is)."""
    before = registry.champion()
    before_id = before["candidate_id"] if before else None
    return decision_table(partition, "not_considered", False, "scope", f"promotion considers dataset {dataset} only",
                          None, before_id, before_id)


def _champion_scores(champion: prod.Champion, candidate_data: Mapping[str, pl.DataFrame], test_ids, specs) -> dict:
    """The archived champion's predictions of the candidate's test customers: its own fitted
    pipeline on the candidate's raw-schema data, then its own students."""
    features = feat.transform(candidate_data["snapshots"], candidate_data["transactions"], champion.pipeline)
    features = pl.DataFrame({"ncodpers": test_ids}).join(features, on="ncodpers", how="left", maintain_order="left")
    X = features.select(champion.columns).to_numpy().astype("float32")
    return dl.predict_students(champion.students, X, specs)


def judge(*, partition: str, run_id: str, registry: ModelRegistry, root: Path, audit: AuditLog, labels: pl.DataFrame,
          task_decisions: pl.DataFrame, split_assignments: pl.DataFrame, fidelity_report: Mapping, fairness_report: Mapping,
          distilled_students: Mapping, feature_table: Mapping, pipeline: Mapping[str, pl.DataFrame], teacher: Mapping,
          train_renta: pl.Series, candidate_data: Callable[[], Mapping[str, pl.DataFrame]], inputs: Mapping[str, str],
          config: promo.PromotionConfig, fairness_blocking: bool) -> Judgement:
    """Register the build (content-addressed copies of its feature pipeline, students, teacher
    checkpoint and training-feature sample), then judge it against the champion on its test
    split, both models scoring the same customers. `labels` carry the split; `teacher` is the
    teacher manifest row; `candidate_data()` loads the candidate's snapshots and transactions
    (only needed when a champion exists); `inputs` are the input hashes the audit entry records."""
    before = registry.champion()
    before_id = before["candidate_id"] if before else None
    specs = tl.task_specs(task_decisions)
    test = labels.filter(pl.col("split") == "test")
    test_ids = test["ncodpers"].to_numpy()
    fidelity_failures = int((~fidelity_report["tier1"]["passed"]).sum() + (~fidelity_report["guard"]["passed"]).sum())
    fairness_failures = int((~fairness_report["checks"]["passed"]).sum()) if fairness_blocking else 0
    candidate = prod.register_candidate(
        registry, root, partition, run_id, pipeline, distilled_students["manifest"], root / teacher["checkpoint"],
        feature_table["schema"], task_decisions,
        prod.training_sample(feature_table["features"], distilled_students["predictions"], split_assignments),
        {"income_edges": prot.fit_income_edges(train_renta), "teacher_sha256": teacher["sha256"],
         "fidelity_failures": fidelity_failures, "fairness_blocking_failures": fairness_failures},
    )
    candidate_id = candidate["candidate_id"]
    y = {s.name: test[s.name].cast(pl.Float64).fill_null(float("nan")).to_numpy() for s in specs}
    challenger = promo.Scored(dl.aligned(distilled_students["predictions"], test_ids, specs, "distilled_students"))
    champion, compared = None, specs
    if before is not None and before_id != candidate_id:
        archived = prod.load_champion(registry, before)
        served = {(s.name, s.type, s.classes) for s in archived.specs}
        compared = [s for s in specs if (s.name, s.type, s.classes) in served]
        champion = promo.Scored(_champion_scores(archived, candidate_data(), test_ids, compared))
        challenger = promo.Scored({s.name: challenger.predictions[s.name] for s in compared})
    if before_id == candidate_id:
        decision = promo.Decision("already_champion", False, "scope", "this build is the champion already", pl.DataFrame(), None)
    else:
        decision = promo.decide(compared, {s.name: y[s.name] for s in compared}, challenger, champion, fidelity_failures,
                                fairness_failures, config)
    event = f"promotion:{decision.decision}"
    entry = audit.append(event, ASSET, partition, run_id, dict(inputs), candidate_id,
                         {"reason": decision.reason, "rung": decision.rung, "champion_before": before_id,
                          "significance": decision.significance})
    if decision.promoted:
        registry.set_champion(candidate_id, decision.decision, decision.reason, run_id, entry.seq)
    after = registry.champion()
    after_id = after["candidate_id"] if after else None
    tables = {
        "decision": decision_table(partition, decision.decision, decision.promoted, decision.rung, decision.reason,
                                   candidate_id, before_id, after_id),
        "comparison": decision.comparison if decision.comparison.width else _EMPTY,
        "significance": pl.DataFrame([decision.significance]) if decision.significance else _EMPTY,
    }
    return Judgement(tables, decision, candidate_id, before_id, after_id, len(compared), fidelity_failures,
                     fairness_failures, event, entry.seq, entry.entry_hash)
