"""Judging a build as a promotion candidate (lib.candidate): the first build is promoted by
bootstrap, the same build again is already the champion, the decision is audited before the
champion pointer moves, and a failed audit leaves the pointer where it was."""

import numpy as np
import polars as pl
import pytest

from finai_assets.lib import candidate
from finai_assets.lib.audit import DEFAULT_DEV_KEY, AuditLog
from finai_assets.lib.promotion import PromotionConfig
from finai_assets.lib.registry import ModelRegistry

N = 300


def _build(root):
    rng = np.random.default_rng(0)
    ids = np.arange(N)
    split = pl.DataFrame({"ncodpers": ids, "split": ["train"] * 200 + ["test"] * 100})
    labels = split.with_columns(churn_signal=pl.Series(rng.integers(0, 2, N), dtype=pl.Int8))
    (root / "teacher.pt").write_bytes(b"checkpoint")

    def unused():
        raise AssertionError("the candidate's data is only needed to re-score an existing champion")

    return dict(
        root=root, labels=labels, split_assignments=split,
        task_decisions=pl.DataFrame({"task": ["churn_signal"], "decision": ["kept"]}),
        fidelity_report={"tier1": pl.DataFrame({"passed": [True]}), "guard": pl.DataFrame({"passed": [True]})},
        fairness_report={"checks": pl.DataFrame({"passed": [True]})},
        distilled_students={
            "manifest": pl.DataFrame({"task": ["churn_signal"], "model_file": [None], "sha256": [None]},
                                     schema={"task": pl.Utf8, "model_file": pl.Utf8, "sha256": pl.Utf8}),
            "predictions": pl.DataFrame({"ncodpers": ids, "p_churn_signal": rng.random(N)}),
        },
        feature_table={"schema": pl.DataFrame({"column": ["f0"], "group": ["demographics"]}),
                       "features": pl.DataFrame({"ncodpers": ids, "f0": rng.normal(size=N)})},
        pipeline={"scaler": pl.DataFrame({"column": ["f0"], "mean": [0.0], "std": [1.0]})},
        teacher={"checkpoint": "teacher.pt", "sha256": "0" * 64},
        train_renta=pl.Series("renta", np.linspace(1_000.0, 90_000.0, 200)),
        candidate_data=unused, inputs={"feature_table[v4]": "h1"}, config=PromotionConfig(resamples=100),
        fairness_blocking=False,
    )


def test_bootstrap_then_already_champion_each_audited_before_the_pointer_moves(tmp_path):
    registry, audit = ModelRegistry(tmp_path / "registry"), AuditLog(tmp_path / "audit.duckdb", DEFAULT_DEV_KEY.encode())
    build = _build(tmp_path)
    first = candidate.judge(partition="v4", run_id="r1", registry=registry, audit=audit, **build)
    assert (first.decision.decision, first.decision.promoted, first.champion_before) == ("bootstrap", True, None)
    assert first.champion_after == first.candidate_id and first.audit_seq == 1
    assert registry.champion()["promotion"]["audit_seq"] == first.audit_seq  # the pointer cites its audit entry
    assert first.tables["decision"].row(0, named=True)["champion_after"] == first.candidate_id

    again = candidate.judge(partition="v4", run_id="r2", registry=registry, audit=audit, **build)
    assert (again.decision.decision, again.decision.promoted) == ("already_champion", False)
    assert again.candidate_id == first.candidate_id and again.audit_seq == 2 and again.audit_event == "promotion:already_champion"
    assert len(registry.champions()) == 1

    out = candidate.out_of_scope("v2", "v4", registry).row(0, named=True)
    assert (out["decision"], out["champion_before"], out["champion_after"]) == ("not_considered",) + (first.candidate_id,) * 2


def test_a_failed_audit_leaves_the_champion_pointer_alone(tmp_path):
    class Refusing:
        def append(self, *args, **kwargs):
            raise OSError("audit log unavailable")

    registry = ModelRegistry(tmp_path / "registry")
    with pytest.raises(OSError, match="audit log unavailable"):
        candidate.judge(partition="v4", run_id="r1", registry=registry, audit=Refusing(), **_build(tmp_path))
    assert registry.champion() is None
