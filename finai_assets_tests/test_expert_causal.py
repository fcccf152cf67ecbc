"""Causal expert: the NOTEARS acyclicity h(W) (zero on DAGs, positive with cycles, with a
gradient), the auxiliary loss reducing a cycle, shape and the masked diagonal."""

import torch

from finai_assets.lib.ple.experts import build_expert
from finai_assets.lib.ple.experts.causal import CausalExpert, notears_h

COLUMNS = [f"f{i}" for i in range(12)]


def test_h_is_zero_for_a_dag():
    torch.manual_seed(0)
    for d in (3, 8, 16):
        W = torch.triu(torch.randn(d, d) * 2, diagonal=1)  # strictly upper triangular: a DAG
        assert abs(notears_h(W).item()) < 1e-6
        order = torch.randperm(d)  # any relabelling of a DAG is still a DAG
        assert abs(notears_h(W[order][:, order]).item()) < 1e-6
    assert notears_h(torch.zeros(5, 5)).item() == 0.0


def test_h_is_positive_with_a_cycle_and_has_a_gradient():
    two = torch.zeros(4, 4)
    two[0, 1], two[1, 0] = 0.8, -0.5  # 0 -> 1 -> 0
    # tr(exp(A)) - d for a 2-cycle with weights a, b: 2(cosh(sqrt(a b)) - 1), a = 0.64, b = 0.25
    expected = 2 * (torch.cosh(torch.tensor(0.64 * 0.25).sqrt()) - 1)
    torch.testing.assert_close(notears_h(two), expected, rtol=1e-5, atol=1e-7)
    three = torch.zeros(5, 5)
    three[1, 2], three[2, 4], three[4, 1] = 0.7, 0.9, -0.6  # 1 -> 2 -> 4 -> 1
    for W in (two, three):
        W = W.clone().requires_grad_(True)
        h = notears_h(W)
        assert h.item() > 1e-3
        h.backward()
        assert W.grad.abs().sum() > 0
    # a DAG edge added to the 3-cycle changes nothing about its gradient on the DAG edge: zero
    dag_edge = three.clone()
    dag_edge[0, 3] = 1.0
    W = dag_edge.requires_grad_(True)
    notears_h(W).backward()
    assert W.grad[0, 3].item() == 0.0 and W.grad[1, 2].item() != 0.0


def test_shape_aux_and_zero_diagonal():
    torch.manual_seed(0)
    model = CausalExpert(COLUMNS, 16, n_vars=6, hidden=(32, 16))
    with torch.no_grad():
        model.W.fill_diagonal_(5.0)  # a self-loop in the raw parameter is masked away
    assert model.adjacency().diagonal().abs().max().item() == 0.0
    assert model.aux_loss().shape == ()  # before any forward: the DAG and sparsity terms only
    out = model(torch.randn(7, len(COLUMNS)))
    assert out.shape == (7, 16) and torch.isfinite(out).all()
    aux = model.aux_loss()
    assert aux.shape == () and aux.item() > 0
    expected = (0.01 * notears_h(model.adjacency()) + 1e-3 * model.adjacency().abs().sum() + 0.5 * model._recon)
    torch.testing.assert_close(aux, expected)
    assert build_expert("causal", COLUMNS, 8).n_vars == 8


def test_optimising_the_aux_loss_alone_breaks_a_cycle():
    torch.manual_seed(0)
    model = CausalExpert(COLUMNS, 8, n_vars=4)
    with torch.no_grad():
        model.W.zero_()
        model.W[0, 1], model.W[1, 2], model.W[2, 0] = 1.0, 1.0, 1.0  # 0 -> 1 -> 2 -> 0
    x = torch.randn(64, len(COLUMNS))
    before = notears_h(model.adjacency()).item()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        optimiser.zero_grad()
        model(x)
        model.aux_loss().backward()
        optimiser.step()
    after = notears_h(model.adjacency()).item()
    assert before > 0.1 and after < 0.5 * before
