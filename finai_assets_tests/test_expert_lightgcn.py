"""LightGCN expert: the factored propagation equals the dense normalised-adjacency propagation."""

import pytest
import torch

from finai_assets.lib.ple.experts.lightgcn import LightGCNExpert, propagate

PRODUCTS = [f"hold_ind_p{i}_ult1" for i in range(24)]
COLUMNS = PRODUCTS + [f"graph_e{k}" for k in range(8)] + ["product_count", "group_count_0"]


def dense_propagation(R: torch.Tensor, c0: torch.Tensor, p0: torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook form: A = [[0, R], [R^T, 0]], A_hat = D^-1/2 A D^-1/2 (0 for isolated nodes),
    final = mean_k A_hat^k E0."""
    B, P = R.shape
    A = torch.zeros(B + P, B + P, dtype=R.dtype)
    A[:B, B:] = R
    A[B:, :B] = R.T
    deg = A.sum(1)
    d = torch.tensor([v ** -0.5 if v > 0 else 0.0 for v in deg.tolist()], dtype=R.dtype)
    A_hat = d[:, None] * A * d[None, :]
    E0 = torch.cat([c0, p0])
    final = sum(torch.linalg.matrix_power(A_hat, k) @ E0 for k in range(layers + 1)) / (layers + 1)
    return final[:B], final[B:]


def test_toy_graph_equals_dense_propagation_and_isolated_customer_keeps_its_start():
    torch.manual_seed(0)
    R = torch.tensor([[1, 1, 0],
                      [0, 1, 1],
                      [0, 0, 0],  # isolated customer
                      [1, 0, 1]], dtype=torch.float64)
    c0, p0 = torch.randn(4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    for layers in (1, 2, 3):
        c, p = propagate(R, c0, p0, layers)
        c_ref, p_ref = dense_propagation(R, c0, p0, layers)
        torch.testing.assert_close(c, c_ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(p, p_ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(c[2], c0[2] / (layers + 1), atol=1e-12, rtol=0)
        assert torch.isfinite(c).all() and torch.isfinite(p).all()
    # propagation really mixes: a connected customer's embedding is not its scaled start
    c, _ = propagate(R, c0, p0, 2)
    assert (c[0] - c0[0] / 3).abs().max() > 1e-2


def test_zero_layers_is_identity():
    torch.manual_seed(1)
    R = (torch.rand(6, 4) > 0.5).double()
    c0, p0 = torch.randn(6, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    c, p = propagate(R, c0, p0, 0)
    torch.testing.assert_close(c, c0)
    torch.testing.assert_close(p, p0)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_random_graph_with_isolated_nodes_equals_dense_propagation(seed):
    torch.manual_seed(seed)
    R = (torch.rand(9, 6) > 0.6).double()
    R[4] = 0  # an isolated customer
    R[:, 2] = 0  # an isolated product
    R[0, 0] = 1.0
    c0, p0 = torch.randn(9, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    c, p = propagate(R, c0, p0, 3)
    c_ref, p_ref = dense_propagation(R, c0, p0, 3)
    torch.testing.assert_close(c, c_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(p, p_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(p[2], p0[2] / 4, atol=1e-12, rtol=0)


def test_output_shape_aux_loss_and_gradients_reach_product_embeddings():
    torch.manual_seed(5)
    expert = LightGCNExpert(COLUMNS, out_dim=12, embed_dim=8, layers=2)
    x = torch.randn(32, len(COLUMNS))
    out = expert(x)
    assert out.shape == (32, 12) and torch.isfinite(out).all()
    aux = expert.aux_loss()
    assert aux.shape == () and aux.item() == 0.0
    out.pow(2).mean().backward()
    assert expert.product_emb.grad is not None and expert.product_emb.grad.abs().sum() > 0
    assert expert.customer_init.weight.grad.abs().sum() > 0


def test_held_means_positive_standardised_value():
    torch.manual_seed(6)
    expert = LightGCNExpert(COLUMNS, out_dim=4, layers=1).eval()
    x = torch.randn(5, len(COLUMNS))
    x[:, :24] = -0.4  # nobody holds anything: every customer is isolated
    base = expert(x)
    still_not_held = x.clone()
    still_not_held[0, 3] = -0.05
    torch.testing.assert_close(expert(still_not_held), base)
    held = x.clone()
    held[0, 3] = 0.7
    changed = expert(held)
    assert (changed[0] - base[0]).abs().max() > 1e-4
    torch.testing.assert_close(changed[1:], base[1:])  # with one layer the others are untouched


def test_holdings_only_columns_and_accepts():
    torch.manual_seed(7)
    expert = LightGCNExpert(PRODUCTS, out_dim=6)
    out = expert((torch.rand(10, 24) > 0.7).float() - 0.3)
    assert out.shape == (10, 6) and torch.isfinite(out).all()
    assert LightGCNExpert.accepts(["hold_a", "hold_b", "age"])
    assert not LightGCNExpert.accepts(["hold_a", "graph_e0", "age"])
    assert not LightGCNExpert.accepts([])
