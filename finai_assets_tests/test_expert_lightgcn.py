"""LightGCN expert: the factored propagation equals the dense normalised-adjacency propagation; in eval
mode a customer's output depends on its own row only (running graph statistics, BatchNorm-style)."""

import copy

import pytest
import torch

from finai_assets.lib.ple.experts.lightgcn import LightGCNExpert, customer_side, holder_means, propagate

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


def _population(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised-looking rows (held <=> > 0) whose product j is held with rate 0.05 + 0.85 j / 23."""
    g = torch.Generator().manual_seed(seed)
    rates = 0.05 + 0.85 * torch.arange(24) / 23
    held = torch.rand(n, 24, generator=g) < rates
    x = torch.randn(n, len(COLUMNS), generator=g)
    x[:, :24] = torch.where(held, 0.8, -0.6)
    return x, held.float().mean(0)


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_customer_side_of_batch_messages_equals_propagate(layers):
    torch.manual_seed(8)
    R = (torch.rand(11, 7) > 0.55).double()
    R[3] = 0  # an isolated customer
    R[:, 5] = 0  # an isolated product
    c0, p0 = torch.randn(11, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    deg_p = R.sum(0)
    q0 = torch.where(deg_p > 0, deg_p.clamp(min=1).rsqrt(), 0.0)[:, None] * p0
    messages = torch.cat([q0[None], holder_means(R, c0, p0, layers)])[:layers]
    c = customer_side(R, c0, messages)
    torch.testing.assert_close(c, propagate(R, c0, p0, layers)[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(c, dense_propagation(R, c0, p0, layers)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_eval_equals_train_on_the_batch_its_statistics_came_from(layers):
    torch.manual_seed(9)
    expert = LightGCNExpert(COLUMNS, out_dim=6, embed_dim=8, layers=layers, momentum=1.0)
    x, _ = _population(300, seed=10)
    train_out = expert.train()(x)
    eval_out = expert.eval()(x)
    torch.testing.assert_close(eval_out, train_out.detach(), atol=1e-5, rtol=0)


def test_eval_output_of_a_customer_does_not_depend_on_its_batch():
    torch.manual_seed(11)
    expert = LightGCNExpert(COLUMNS, out_dim=8, embed_dim=8, layers=2)
    pop, _ = _population(2048, seed=12)
    optimizer = torch.optim.SGD(expert.parameters(), lr=0.05)
    for step in range(20):  # real training steps: parameters and buffers both move
        out = expert.train()(pop[step * 100:(step + 1) * 100])
        optimizer.zero_grad()
        out.pow(2).mean().backward()
        optimizer.step()
    customer = pop[2000:2001]
    batch_a = torch.cat([pop[:50], customer, pop[50:300]])
    batch_b = torch.cat([pop[1500:1520], customer])
    batch_b[:20, :24] = 0.8  # B's other customers hold everything
    expert.eval()
    with torch.no_grad():
        alone, in_a, in_b = expert(customer)[0], expert(batch_a)[50], expert(batch_b)[20]
    torch.testing.assert_close(in_a, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(in_b, alone, atol=1e-6, rtol=0)
    # the same check fails in train mode, where the graph is the batch's (on a copy: it moves the buffers)
    trained = copy.deepcopy(expert).train()
    with torch.no_grad():
        assert (trained(batch_a)[50] - trained(batch_b)[20]).abs().max() > 1e-3


def test_running_statistics_approach_the_population_after_train_forwards():
    torch.manual_seed(13)
    expert = LightGCNExpert(COLUMNS, out_dim=4, embed_dim=8, layers=3)
    torch.testing.assert_close(expert.running_share, torch.full((24,), 0.5))
    assert expert.running_customers.item() == 1.0 and expert.running_holder_means.abs().sum() == 0
    pop, rates = _population(8192, seed=14)
    g = torch.Generator().manual_seed(15)
    expert.train()
    with torch.no_grad():
        for _ in range(60):
            expert(pop[torch.randint(0, 8192, (1024,), generator=g)])
    assert (expert.running_share - rates).abs().max() < 0.02
    assert abs(expert.running_customers.item() - 1024) < 3.0  # 0.9^60 * 1023 = 1.8 of the start remains
    # holder means of layer 1 approach the population's (per-product mean over holders of D_c^-1/2 c0)
    R = (pop[:, :24] > 0).float()
    c0 = expert.customer_init(pop[:, 24:]).detach()
    population = holder_means(R, c0, expert.product_emb.detach(), 3)
    error = (expert.running_holder_means[0] - population[0]).abs().max()
    assert error < 0.25 * population[0].abs().max()  # the untrained default (0) is off by the full size


def test_buffers_are_in_the_state_dict_and_restore_eval_outputs():
    torch.manual_seed(16)
    expert = LightGCNExpert(COLUMNS, out_dim=5, embed_dim=8, layers=2)
    state = expert.state_dict()
    for name in ("running_customers", "running_share", "running_holder_means"):
        assert name in state
    assert state["running_holder_means"].shape == (1, 24, 8)
    pop, _ = _population(1024, seed=17)
    expert.train()
    with torch.no_grad():
        for start in range(0, 1024, 256):
            expert(pop[start:start + 256])
    restored = LightGCNExpert(COLUMNS, out_dim=5, embed_dim=8, layers=2)
    fresh_params_only = copy.deepcopy(restored)
    fresh_params_only.load_state_dict({k: v for k, v in expert.state_dict().items() if not k.startswith("running_")}, strict=False)
    restored.load_state_dict(expert.state_dict())
    expert.eval(), restored.eval(), fresh_params_only.eval()
    x = pop[:64]
    with torch.no_grad():
        torch.testing.assert_close(restored(x), expert(x), atol=0, rtol=0)
        assert (fresh_params_only(x) - expert(x)).abs().max() > 1e-3  # the buffers carry information


def test_default_buffers_score_a_customer_as_a_graph_of_one_and_never_divide_by_zero():
    torch.manual_seed(18)
    expert = LightGCNExpert(COLUMNS, out_dim=4, embed_dim=8, layers=1)
    x, _ = _population(16, seed=19)
    x[0, :24] = 0.8  # holds everything
    x[1, :24] = -0.6  # holds nothing
    with torch.no_grad():
        eval_out = expert.eval()(x)
        assert torch.isfinite(eval_out).all()
        for i in range(16):  # untrained eval == train mode on a batch of just that customer
            torch.testing.assert_close(eval_out[i], expert.train()(x[i:i + 1])[0], atol=1e-6, rtol=0)
