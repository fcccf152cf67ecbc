"""Optimal-transport expert: Sinkhorn plans have the right marginals and approach exact OT."""

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment, linprog

from finai_assets.lib.ple.experts.optimal_transport import OptimalTransportExpert, entropic_ot, sinkhorn

COLUMNS = ["age", "log_renta", "product_count", "txn_30d_sum", "persona_p0"]


def test_plan_marginals_match_a_and_b_batched_over_pairs():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(5, 6), -1)
    b = torch.softmax(torch.randn(5, 7), -1)
    C = torch.rand(6, 7)
    plan, cost = sinkhorn(a, b, C, epsilon=0.1, iterations=300)
    assert plan.shape == (5, 6, 7) and cost.shape == (5,)
    assert (plan >= 0).all()
    torch.testing.assert_close(plan.sum(-1), a, atol=1e-4, rtol=0)
    torch.testing.assert_close(plan.sum(-2), b, atol=1e-4, rtol=0)
    torch.testing.assert_close(cost, (plan * C).sum((-2, -1)))
    # one cost per pair broadcasts like a shared one
    plan2, _ = sinkhorn(a, b, C.expand(5, 6, 7), epsilon=0.1, iterations=300)
    torch.testing.assert_close(plan2, plan)


def test_uniform_four_points_approaches_the_assignment_cost():
    rng = np.random.default_rng(1)
    C = rng.uniform(0.0, 1.0, (4, 4))
    rows, cols = linear_sum_assignment(C)
    exact = C[rows, cols].sum() / 4
    u = torch.full((4,), 0.25, dtype=torch.float64)
    errors = []
    for eps in (0.1, 0.03, 0.01):
        _, cost = sinkhorn(u, u, torch.from_numpy(C), epsilon=eps, iterations=3000)
        errors.append(abs(cost.item() - exact) / exact)
    assert errors[-1] < 1e-2, errors
    assert errors[0] > errors[1] > errors[2], errors


def test_three_by_three_non_uniform_matches_the_linear_program():
    rng = np.random.default_rng(2)
    C = rng.uniform(0.0, 1.0, (3, 3))
    a, b = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.2, 0.6])
    # min <P, C>  s.t.  P 1 = a,  P^T 1 = b,  P >= 0
    A_eq = np.vstack([np.kron(np.eye(3), np.ones(3)), np.kron(np.ones(3), np.eye(3))])
    exact = linprog(C.ravel(), A_eq=A_eq, b_eq=np.concatenate([a, b]), bounds=(0, None)).fun
    _, cost = sinkhorn(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(C), epsilon=0.01, iterations=3000)
    assert abs(cost.item() - exact) / exact < 1e-2, (cost.item(), exact)


def test_distance_of_a_distribution_to_itself_vanishes_for_small_epsilon():
    torch.manual_seed(3)
    a = torch.softmax(torch.randn(6, dtype=torch.float64), -1)
    C = torch.rand(6, 6, dtype=torch.float64) + 0.5
    C = (C + C.T) / 2
    C.fill_diagonal_(0)
    _, cost = sinkhorn(a, a, C, epsilon=0.01, iterations=500)
    assert cost.item() < 1e-6
    _, far = sinkhorn(a, torch.roll(a, 1), C, epsilon=0.01, iterations=500)
    assert far.item() > 0.1


def test_tiny_epsilon_stays_finite_forward_and_backward():
    torch.manual_seed(4)
    a = torch.softmax(torch.randn(3, 16) * 5, -1)  # peaked: some entries near float32 underflow
    b = torch.softmax(torch.randn(3, 16) * 5, -1)
    plan, cost = sinkhorn(a, b, torch.rand(16, 16) * 2, epsilon=1e-3, iterations=50)
    assert torch.isfinite(plan).all() and torch.isfinite(cost).all()
    expert = OptimalTransportExpert(COLUMNS, out_dim=8, epsilon=1e-3, iterations=30)
    out = expert(torch.randn(16, len(COLUMNS)) * 3)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in expert.parameters())


def test_empty_bins_keep_the_plan_and_its_gradients_finite():
    torch.manual_seed(7)
    a_logits = torch.randn(4, requires_grad=True)
    b_logits = torch.randn(4, requires_grad=True)
    # two bins with exactly zero mass, as softmax underflow produces
    a = torch.softmax(a_logits + torch.tensor([0.0, -torch.inf, 0.0, -torch.inf]), -1)
    b = torch.softmax(b_logits, -1)
    plan, cost = sinkhorn(a, b, torch.rand(4, 4), epsilon=0.05, iterations=300)
    assert torch.isfinite(plan).all() and plan[[1, 3]].abs().max() < 1e-30
    torch.testing.assert_close(plan.sum(-1), a, atol=1e-4, rtol=0)
    cost.backward()
    for logits in (a_logits, b_logits):
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_ground_cost_is_a_squared_distance():
    torch.manual_seed(5)
    C = OptimalTransportExpert(COLUMNS, bins=10).ground_cost()
    assert C.shape == (10, 10)
    assert (C >= 0).all()
    torch.testing.assert_close(C.diagonal(), torch.zeros(10))
    torch.testing.assert_close(C, C.T)
    assert C.sum() > 0


def test_output_shape_aux_loss_and_gradients_reach_the_prototypes():
    torch.manual_seed(6)
    expert = OptimalTransportExpert(COLUMNS, out_dim=12, bins=8, prototypes=5, hidden=16)
    x = torch.randn(20, len(COLUMNS))
    out = expert(x)
    assert out.shape == (20, 12) and torch.isfinite(out).all()
    aux = expert.aux_loss()
    assert aux.shape == () and aux.item() == 0.0
    out.pow(2).mean().backward()
    for p in (expert.prototype_logits, expert.support, expert.to_bins.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert expert.prototype_logits.grad.abs().sum(1).min() > 0  # every prototype gets a gradient
    assert OptimalTransportExpert.accepts(["age"]) and not OptimalTransportExpert.accepts([])


def _unrolled_entropic_cost(a, b, support, epsilon, iterations):
    """<P, C> + eps sum P log P with autograd through every log-domain Sinkhorn iteration."""
    C = (support[:, None] - support[None]).pow(2).sum(-1)
    plan, cost = sinkhorn(a, b, C, epsilon, iterations)
    return cost + epsilon * (plan * plan.clamp_min(1e-300).log()).sum((-2, -1))


def test_envelope_gradient_matches_the_unrolled_gradient():
    torch.manual_seed(8)
    a = torch.softmax(torch.randn(5, 1, 16, dtype=torch.float64), -1).requires_grad_()
    b = torch.softmax(torch.randn(1, 8, 16, dtype=torch.float64), -1).requires_grad_()
    support = (torch.randn(16, 4, dtype=torch.float64) / 3).requires_grad_()
    C = (support[:, None] - support[None]).pow(2).sum(-1)
    envelope = entropic_ot(a, b, C, 0.1, 2000)
    unrolled = _unrolled_entropic_cost(a, b, support, 0.1, 2000)
    torch.testing.assert_close(envelope, unrolled, atol=1e-8, rtol=1e-8)
    g_env = torch.autograd.grad(envelope.sum(), (a, b, support))
    g_unr = torch.autograd.grad(unrolled.sum(), (a, b, support))
    centre = lambda g: g - g.mean(-1, keepdim=True)  # noqa: E731  (a, b live on the simplex)
    torch.testing.assert_close(centre(g_env[0]), centre(g_unr[0]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(centre(g_env[1]), centre(g_unr[1]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(g_env[2], g_unr[2], atol=1e-6, rtol=1e-6)


def test_scaling_and_log_domain_potentials_agree():
    torch.manual_seed(9)
    a = torch.softmax(torch.randn(6, 1, 16, dtype=torch.float64), -1)
    b = torch.softmax(torch.randn(1, 4, 16, dtype=torch.float64), -1)
    C = torch.rand(16, 16, dtype=torch.float64)
    scaling = entropic_ot(a, b, C, 0.1, 300)  # max(C) / eps = 10: scaling form
    log_domain = entropic_ot(a, b, C.expand(6, 4, 16, 16), 0.1, 300)  # batched C: log domain
    torch.testing.assert_close(scaling, log_domain, atol=1e-8, rtol=1e-8)


def test_expert_output_of_a_row_does_not_depend_on_its_batch():
    torch.manual_seed(10)
    expert = OptimalTransportExpert(COLUMNS).eval()
    x = torch.randn(64, len(COLUMNS))
    with torch.inference_mode():
        torch.testing.assert_close(expert(x)[:8], expert(x[:8]), atol=1e-5, rtol=1e-5)
