"""The students stage end to end on v4 (the shared teacher build): routing honoured, hashed model
files, calibration on the calib fold, reason codes, the fidelity gate, and a tampered model file
refused."""

import shutil

import dagster as dg
import numpy as np
import polars as pl
import pytest

from finai_assets.lib import student_tables as dl
from finai_assets.lib import teacher as tl
from finai_assets.lib.storage import file_sha256
from finai_assets_tests.conftest import ALL_DATASET_ASSETS, declared_checks, materialization_metadata, resources_for


@pytest.fixture(scope="module")
def v4(students_build):
    wh = students_build.warehouse
    return {"result": students_build.results["students_v4"], "students": wh.read("distilled_students", "v4"),
            "fidelity": wh.read("fidelity_report", "v4"), "evaluation": wh.read("teacher_evaluation", "v4"),
            "labels": wh.read("task_labels", "v4"), "features": wh.read("feature_table", "v4"),
            "splits": wh.read("split_assignments", "v4"), "data_dir": students_build.data_dir}


def test_every_task_gets_the_student_its_routing_decided(v4):
    assert v4["result"].success
    manifest = v4["students"]["manifest"]
    routing = v4["evaluation"]["routing"]
    assert dict(manifest.select("task", "route").iter_rows()) == dict(routing.select("task", "route").iter_rows())
    for row in manifest.iter_rows(named=True):
        if row["route"] == "rule":
            assert row["model_file"] is None and row["rule"] is not None
            continue
        path = v4["data_dir"] / row["model_file"]
        assert path.name.startswith(f"student-{row['task']}-") and file_sha256(path) == row["sha256"]
        assert row["rounds"] >= 1
        # every binary model student is Platt-calibrated; no other type is
        assert (row["platt_a"] is not None) == (row["type"] == "binary"), row
    assert manifest["soft_labels"].unique().to_list() == ["in_sample"]


def test_predictions_cover_every_customer_and_test_reason_codes_name_real_features(v4):
    features = v4["features"]["features"]
    predictions = v4["students"]["predictions"]
    assert predictions.height == features.height and predictions["ncodpers"].sort().equals(features["ncodpers"].sort())
    specs = tl.task_specs(v4["labels"]["decisions"])
    preds = tl.frame_predictions(predictions, specs)
    for s in specs:
        p = preds[s.name]
        assert np.isfinite(p).all()
        if s.type == "binary":
            assert ((p > 0) & (p < 1)).all()
        if s.type == "multiclass":
            assert np.allclose(p.sum(1), 1, atol=1e-6)
    reasons = v4["students"]["reason_codes"]
    served = v4["students"]["manifest"].filter(pl.col("model_file").is_not_null())["task"].to_list()
    assert sorted(reasons["task"].unique().to_list()) == sorted(served)
    test = v4["splits"].filter(pl.col("split") == "test")["ncodpers"]
    assert reasons.height == test.len() * len(served) and set(reasons["ncodpers"]) == set(test)
    names = set(features.columns) - {"ncodpers"}
    assert set(reasons["reason_1"].unique().to_list()) <= names
    # the first reason is the largest contribution in absolute value
    assert (reasons["contribution_1"].abs() >= reasons["contribution_2"].abs()).all()


def test_distilled_students_stay_close_to_their_teacher_on_test(v4):
    fidelity = v4["fidelity"]
    checks = {e.check_name: e for e in v4["result"].get_asset_check_evaluations()}
    assert {"fidelity_tier1", "constant_student_guard"} <= set(checks)
    summary = fidelity["summary"]
    routing = dict(v4["evaluation"]["routing"].select("task", "route").iter_rows())
    distilled = [t for t, r in routing.items() if r == "distil"]
    assert sorted(summary.filter(pl.col("verdict") != "not_judged")["task"].to_list()) == sorted(distilled)
    assert set(fidelity["tier1"]["task"].to_list()) == set(distilled)
    assert checks["constant_student_guard"].passed
    assert checks["fidelity_tier1"].passed == fidelity["tier1"]["passed"].all()
    # the students are real models: on the binary tasks they rank about as well as the teacher,
    # and clearly above chance wherever the teacher is (top_mcc_shift is near chance for both)
    cmp = fidelity["test_comparison"].filter(pl.col("metric") == "auc")
    assert cmp.height == 7 and (cmp["student"] >= cmp["teacher"] - 0.03).all(), cmp
    learnable = cmp.filter(pl.col("teacher") > 0.6)
    assert learnable.height >= 5 and (learnable["student"] > 0.6).all(), cmp
    assert abs(cmp["student"].mean() - cmp["teacher"].mean()) < 0.03, cmp


def test_checks_are_declared_blocking(v4):
    declared = declared_checks()
    assert declared["fidelity_report"] == {"fidelity_tier1": True, "constant_student_guard": True}


def test_a_tampered_student_file_is_refused(v4, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(v4["data_dir"], data)
    row = v4["students"]["manifest"].filter(pl.col("model_file").is_not_null()).row(0, named=True)
    path = data / row["model_file"]
    text = path.read_bytes()
    path.write_bytes(text.replace(b"learning_rate", b"learning_ratX", 1) if b"learning_rate" in text else text + b"\n")
    with pytest.raises(Exception, match="refused"):
        dl.load_students(v4["students"]["manifest"], data)
    result = dg.materialize(ALL_DATASET_ASSETS, selection=["fidelity_report"], partition_key="v4",
                            resources=resources_for(data), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "refused" in str(failure.event_specific_data.error) and row["task"] in str(failure.event_specific_data.error)
