"""The PLE model and the generic training API."""

import numpy as np
import pytest
import torch

from finai_assets.lib import features as feat
from finai_assets.lib.ple.experts import EXPERTS
from finai_assets.lib.ple.metrics import task_metrics
from finai_assets.lib.ple.model import PLE, Gate, PLEConfig, mix, route
from finai_assets.lib.ple.tasks import TaskSpec
from finai_assets.lib.ple.train import TrainConfig, predict, train_ple
from finai_assets.lib.schema import PRODUCT_COLUMNS

TASKS = [TaskSpec("churn", "binary"), TaskSpec("nba", "multiclass", classes=6), TaskSpec("cross_sell", "regression")]


def feature_like(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A random matrix with the feature table's column names and value conventions."""
    rng = np.random.default_rng(seed)
    cols, values = [], []

    def add(name, v):
        cols.append(name)
        values.append(v)

    for c in ("age", "log_renta", "antiguedad", "is_active", "channel_code"):
        add(c, rng.normal(size=n))
    for c in PRODUCT_COLUMNS:
        add(f"hold_{c}", np.where(rng.random(n) < 0.3, 1.2, -0.4))
    add("product_count", rng.normal(size=n))
    for d in (7, 30, 90, 180):
        add(f"txn_{d}d_count", rng.normal(size=n))
    length = rng.integers(0, 17, n)
    for s in range(16):
        real = s < length
        add(f"seq_{s:02d}_age_days", np.where(real, s * 3.0 + rng.random(n), 0.0))
        add(f"seq_{s:02d}_amount", np.where(real, rng.gamma(2, 2, n), 0.0))
        add(f"seq_{s:02d}_hour", np.where(real, rng.integers(0, 24, n), 0.0))
        add(f"seq_{s:02d}_mask", real.astype(float))
        add(f"seq_{s:02d}_mcc", np.where(real, rng.integers(1, 22, n), 0.0))
    for m in (4111, 4121, 5411, 5412, 5812, 5814, 7011, 7997):
        add(f"mcc_share_{m}", rng.normal(size=n))
    for d in range(10):
        add(f"mcc_l1_share_{d}", rng.normal(size=n))
    for k in range(8):
        add(f"graph_e{k}", rng.normal(size=n))
    births = np.sort(rng.random((n, 8)) * 5, 1)
    for i in range(8):
        real = i < length // 3
        add(f"pd_{i:02d}_birth", np.where(real, births[:, i], 0.0))
        add(f"pd_{i:02d}_death", np.where(real, births[:, i] + rng.random(n) * 3, 0.0))
        add(f"pd_{i:02d}_mask", real.astype(float))
    add("pers_total", rng.normal(size=n))
    for k in range(6):
        add(f"persona_p{k}", rng.dirichlet(np.ones(6), n)[:, k])
    return np.stack(values, 1).astype(np.float32), cols


def schema_of(columns):
    table = feat.feature_schema(columns)
    return {c: e.split(", ") for c, e in table.select("column", "experts").iter_rows()}


@pytest.mark.parametrize("gate", ["softmax", "sigmoid"])
def test_the_feature_schema_routes_every_group_to_all_seven_experts(gate):
    X, cols = feature_like(64)
    torch.manual_seed(0)
    model = PLE(cols, TASKS, PLEConfig(expert_dim=16, tower_dims=(16,), gate=gate), schema_of(cols))
    assert list(model.routing) == list(EXPERTS)
    assert {c[:4] for c in model.routing["temporal"]} == {"seq_", "txn_"}
    assert all(c.startswith("hold_") or c == "product_count" or c.startswith("graph_") for c in model.routing["lightgcn"])
    assert set(model.routing["perslay"]) == {c for c in cols if c.startswith(("pd_", "pers_"))}
    out = model(torch.tensor(X))
    assert out.logits["churn"].shape == (64,) and out.logits["nba"].shape == (64, 6) and out.logits["cross_sell"].shape == (64,)
    for t, g in out.gates.items():
        assert g.shape == (64, 1 + 7) and torch.allclose(g.sum(-1), torch.ones(64), atol=1e-5) and (g >= 0).all()
    assert torch.isfinite(out.aux_loss) and out.aux_loss > 0  # the causal expert's NOTEARS + reconstruction
    sizes = model.parameters_per_expert()
    assert set(EXPERTS) <= set(sizes) and all(v > 0 for v in sizes.values())
    with pytest.raises(AssertionError, match="expected"):
        model(torch.tensor(X[:, :-1]))


def test_a_gate_concentrates_on_the_only_informative_expert():
    """Four expert outputs, only the second carries the target: training the gate (and a linear
    head) puts nearly all its weight there."""
    torch.manual_seed(0)
    n, d = 2048, 8
    x = torch.randn(n, 5)
    signal = torch.randn(n, d)
    y = signal[:, 0] * 2 + signal[:, 1]
    experts = torch.stack([torch.randn(n, d), signal, torch.randn(n, d), torch.randn(n, d)], 1)
    gate, head = Gate(5, 4, "softmax"), torch.nn.Linear(d, 1)
    opt = torch.optim.Adam([*gate.parameters(), *head.parameters()], lr=0.03)
    for _ in range(400):
        opt.zero_grad()
        loss = (head(mix(gate(x), experts)).squeeze(-1) - y).pow(2).mean()
        loss.backward()
        opt.step()
    weights = gate(x).mean(0).detach()
    assert weights.argmax().item() == 1 and weights[1] > 0.9


def test_route_without_a_schema_builds_only_the_experts_whose_inputs_exist():
    routing = route([f"x{i}" for i in range(6)], list(EXPERTS))
    assert set(routing) == {"deepfm", "causal", "optimal_transport"}
    with pytest.raises(ValueError, match="no expert"):
        route(["x0"], ["temporal", "hgcn"])


def plain_problem(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    logit = 1.5 * X[:, 0] - X[:, 1] + X[:, 2] * X[:, 3]
    y_bin = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    y_bin[rng.random(n) < 0.1] = np.nan  # null labels are masked
    y_reg = 2 * X[:, 4] - X[:, 5] + 0.5 * rng.normal(size=n)
    split = np.where(rng.random(n) < 0.75, "train", "val")
    return X, {"buy": y_bin, "spend": y_reg}, split


def test_the_generic_api_trains_a_plain_two_task_problem():
    X, targets, split = plain_problem()
    specs = [TaskSpec("buy", "binary"), TaskSpec("spend", "regression")]
    cfg = TrainConfig(epochs=6, batch_size=256, threads=1, patience=6)
    logs = []
    result = train_ple(X, [f"x{i}" for i in range(8)], targets, split, specs,
                       model_config=PLEConfig(expert_dim=16, tower_dims=(16,)), train_config=cfg, log=logs.append)
    assert set(result.model.routing) == {"deepfm", "causal", "optimal_transport"}
    assert result.val_metrics["buy"]["auc"] > 0.75 and result.val_metrics["spend"]["r2"] > 0.7
    assert len(result.history) == 6 and any(m.startswith("epoch 1/6") for m in logs)
    assert all(f"sigma/{t}" in result.history[-1] for t in ("buy", "spend"))
    # same seed, same predictions
    again = train_ple(X, [f"x{i}" for i in range(8)], targets, split, specs,
                      model_config=PLEConfig(expert_dim=16, tower_dims=(16,)), train_config=cfg)
    p1 = predict(result.model, X[split == "val"], specs, result.target_scaling)
    p2 = predict(again.model, X[split == "val"], specs, again.target_scaling)
    assert all(np.array_equal(p1[t], p2[t]) for t in p1)
    val = split == "val"
    assert task_metrics(specs[0], targets["buy"][val], p1["buy"])["auc"] == pytest.approx(result.val_metrics["buy"]["auc"])


def test_missing_targets_are_refused():
    X, targets, split = plain_problem(200)
    with pytest.raises(ValueError, match="no targets for tasks"):
        train_ple(X, [f"x{i}" for i in range(8)], {"buy": targets["buy"]}, split,
                  [TaskSpec("buy", "binary"), TaskSpec("spend", "regression")])
