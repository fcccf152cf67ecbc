"""PLE checkpoint: atomic save with sha256, verified weights-only load, schema match."""

import dataclasses
import hashlib
import pickle

import numpy as np
import pytest
import torch

from finai_assets.lib.ple.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from finai_assets.lib.ple.tasks import TaskSpec

COLUMNS = ["age", "log_renta", "hold_ind_cco_fin_ult1", "txn_30d_amount", "seq_00_mcc"]
TASKS = [dataclasses.asdict(TaskSpec("churn", "binary")), dataclasses.asdict(TaskSpec("next_product", "multiclass", classes=4))]
RAN: list[str] = []


def _record(tag: str) -> None:
    RAN.append(tag)


class Payload:
    """Unpickling this would call _record: a stand-in for arbitrary code in a pickle."""

    def __reduce__(self):
        return (_record, ("unpickled",))


def _save(path, **override):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    kwargs = {
        "state_dict": model.state_dict(),
        "config": {"lr": 1e-3, "layers": [64, 32], "gate": "softmax", "seed": 0, "amp": False, "cap": None},
        "metrics": {"composite": np.float64(0.71), "churn": {"auc": 0.8, "rows": 120}},
        "feature_columns": COLUMNS, "tasks": TASKS,
    }
    kwargs.update(override)
    return model, save_checkpoint(path, **kwargs)


def test_round_trip_keeps_tensors_config_metrics_and_schema(tmp_path):
    path = tmp_path / "teacher.pt"
    model, digest = _save(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.with_suffix(".sha256").read_text() == f"{digest}  teacher.pt\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.pt", "teacher.sha256"]  # no temp file left
    ck = load_checkpoint(path, expected_sha256=digest, feature_columns=COLUMNS, tasks=TASKS)
    assert set(ck["state_dict"]) == set(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(ck["state_dict"][name], tensor)
    assert ck["config"] == {"lr": 1e-3, "layers": [64, 32], "gate": "softmax", "seed": 0, "amp": False, "cap": None}
    assert ck["metrics"] == {"composite": 0.71, "churn": {"auc": 0.8, "rows": 120}}
    assert type(ck["metrics"]["composite"]) is float  # numpy scalar stored as a plain float
    assert ck["feature_columns"] == COLUMNS and ck["tasks"] == TASKS
    fresh = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    fresh.load_state_dict(ck["state_dict"])


def test_a_value_that_is_not_plain_is_refused_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['config'\]\['when'\]: object"):
        _save(tmp_path / "teacher.pt", config={"when": object()})
    assert not list(tmp_path.iterdir())


def test_a_one_byte_tampered_file_is_refused(tmp_path):
    path = tmp_path / "teacher.pt"
    _, digest = _save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, expected_sha256=digest)
    msg = str(e.value)
    assert str(path) in msg and digest in msg and hashlib.sha256(bytes(data)).hexdigest() in msg
    assert "rematerialize ple_teacher" in msg


def test_a_replaced_file_with_a_rewritten_sidecar_is_still_refused(tmp_path):
    path = tmp_path / "teacher.pt"
    _, digest = _save(path)
    # someone trains another model and saves it in place: the sidecar now matches the new file
    other, new_digest = _save(path, metrics={"composite": 0.99})
    assert new_digest != digest and path.with_suffix(".sha256").read_text().startswith(new_digest)
    with pytest.raises(CheckpointError, match="does not match the expected " + digest):
        load_checkpoint(path, expected_sha256=digest)


@pytest.mark.parametrize(("columns", "named"), [
    (COLUMNS[:-1], r"1 column\(s\) the checkpoint needs are missing: \['seq_00_mcc'\]"),
    (COLUMNS + ["graph_e0"], r"1 extra column\(s\) the checkpoint was not trained on: \['graph_e0'\]"),
    ([COLUMNS[1], COLUMNS[0], *COLUMNS[2:]], r"columns reordered: position 0 is 'age' in the checkpoint but 'log_renta' given"),
])
def test_a_feature_schema_mismatch_is_refused_naming_the_difference(tmp_path, columns, named):
    path = tmp_path / "teacher.pt"
    _, digest = _save(path)
    with pytest.raises(CheckpointError, match="feature schema mismatch: " + named) as e:
        load_checkpoint(path, expected_sha256=digest, feature_columns=columns, tasks=TASKS)
    assert "rematerialize ple_teacher" in str(e.value)


def test_a_task_schema_mismatch_is_refused_naming_the_difference(tmp_path):
    path = tmp_path / "teacher.pt"
    _, digest = _save(path)
    five = [TASKS[0], dataclasses.asdict(TaskSpec("next_product", "multiclass", classes=5))]
    with pytest.raises(CheckpointError, match="task 'next_product': classes is 4 in the checkpoint but 5 given"):
        load_checkpoint(path, expected_sha256=digest, feature_columns=COLUMNS, tasks=five)
    with pytest.raises(CheckpointError, match=r"tasks in the checkpoint but not given: \['next_product'\]"):
        load_checkpoint(path, expected_sha256=digest, tasks=TASKS[:1])
    with pytest.raises(CheckpointError, match="task order differs"):
        load_checkpoint(path, expected_sha256=digest, tasks=TASKS[::-1])


def test_a_pickled_object_is_refused_by_weights_only_without_running_its_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "config": Payload()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # even with the right hash
    with pytest.raises(CheckpointError, match=r"refused by torch.load\(weights_only=True\)") as e:
        load_checkpoint(path, expected_sha256=digest)
    assert isinstance(e.value.__cause__, pickle.UnpicklingError)
    assert RAN == []
    torch.load(path, weights_only=False)  # control: a plain load does run it
    assert RAN == ["unpickled"]


def test_a_missing_file_is_refused_with_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist; rematerialize ple_teacher"):
        load_checkpoint(tmp_path / "nope.pt", expected_sha256="0" * 64)
