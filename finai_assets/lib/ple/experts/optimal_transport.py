"""Optimal-transport expert: entropic OT (Sinkhorn) distances to learned prototype distributions.

    a = softmax(Linear(x))                      a customer's distribution over `bins` support points
    b_k = softmax(theta_k), k < prototypes      learnable reference distributions
    C_ij = |u_i - u_j|^2                        learnable ground cost between support embeddings u
                                                (nonnegative, symmetric, zero diagonal; ~1 at init)
    d_k = OT_eps(a, b_k, C)                     entropic OT cost, by Sinkhorn
    out = MLP(d_1..d_K)                         -> [B, out_dim]

Sinkhorn runs in the log domain (dual potentials f, g updated with logsumexp), so it stays finite
for small epsilon; epsilon is in the units of the cost.

Gradients come from the envelope theorem, not from the iterations: OT_eps is the optimum of its
dual  <f, a> + <g, b> - eps <exp((f + g - C) / eps), 1> + eps,  so at the converged potentials
its gradients are f (wrt a), g (wrt b) and the plan P (wrt C). The iterations run without
autograd and the dual is evaluated once at the detached potentials: a training step costs one
forward Sinkhorn and no per-iteration memory (backpropagating 30 unrolled iterations was ~70 % of
a teacher step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


SCALING_LIMIT = 50.0  # max(C) / epsilon below which exp(-C / epsilon) stays far from float32 underflow


def sinkhorn(a: Tensor, b: Tensor, C: Tensor, epsilon: float, iterations: int) -> tuple[Tensor, Tensor]:
    """Entropic OT between the histograms a [..., n] and b [..., m] (each summing to 1) under the
    cost C [..., n, m] (broadcast over the leading dims): the plan [..., n, m] and its transport
    cost <plan, C> [...]. Log-domain updates; the last update fits the column marginals exactly.
    Autograd unrolls every iteration: the reference the envelope gradient is tested against."""
    n, m = a.shape[-1], b.shape[-1]
    assert C.shape[-2:] == (n, m), (a.shape, b.shape, C.shape)
    tiny = torch.finfo(a.dtype).tiny
    log_a, log_b = a.clamp_min(tiny).log(), b.clamp_min(tiny).log()
    shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1], C.shape[:-2])
    f = a.new_zeros(*shape, n)
    g = b.new_zeros(*shape, m)
    for _ in range(iterations):
        f = epsilon * log_a - epsilon * torch.logsumexp((g[..., None, :] - C) / epsilon, dim=-1)
        g = epsilon * log_b - epsilon * torch.logsumexp((f[..., :, None] - C) / epsilon, dim=-2)
    plan = torch.exp((f[..., :, None] + g[..., None, :] - C) / epsilon)
    return plan, (plan * C).sum((-2, -1))


@torch.no_grad()
def sinkhorn_potentials(a: Tensor, b: Tensor, C: Tensor, epsilon: float, iterations: int) -> tuple[Tensor, Tensor]:
    """The dual potentials f [..., n], g [..., m] after `iterations` Sinkhorn updates (no autograd:
    see `entropic_ot`). Scaling form (u = a / K v, v = b / K^T u with K = exp(-C / eps): two
    small matmuls per update) while K cannot underflow, the log domain otherwise."""
    n, m = a.shape[-1], b.shape[-1]
    assert C.shape[-2:] == (n, m), (a.shape, b.shape, C.shape)
    tiny = torch.finfo(a.dtype).tiny
    a, b = a.clamp_min(tiny), b.clamp_min(tiny)
    shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1], C.shape[:-2])
    if C.dim() == 2 and float(C.max()) / epsilon < SCALING_LIMIT:
        K = torch.exp(-C / epsilon)
        a, b = a.expand(*shape, n), b.expand(*shape, m)
        v = torch.ones_like(b)
        for _ in range(iterations):
            u = a / (v @ K.T).clamp_min(tiny)
            v = b / (u @ K).clamp_min(tiny)
        return epsilon * u.log(), epsilon * v.log()
    log_a, log_b = a.log(), b.log()
    f = a.new_zeros(*shape, n)
    g = b.new_zeros(*shape, m)
    neg_C = -C / epsilon
    for _ in range(iterations):
        f = epsilon * (log_a - torch.logsumexp(g[..., None, :] / epsilon + neg_C, dim=-1))
        g = epsilon * (log_b - torch.logsumexp(f[..., :, None] / epsilon + neg_C, dim=-2))
    return f, g


def entropic_ot(a: Tensor, b: Tensor, C: Tensor, epsilon: float, iterations: int) -> Tensor:
    """The entropic OT cost [...] of a [..., n] and b [..., m] under C [..., n, m], differentiable
    in a, b and C through the envelope theorem: the dual objective evaluated at the converged,
    detached potentials has gradients f, g and the plan (the same as differentiating the exact
    optimum), at the cost of one plan evaluation."""
    f, g = sinkhorn_potentials(a.detach(), b.detach(), C.detach(), epsilon, iterations)
    plan = torch.exp((f[..., :, None] + g[..., None, :] - C) / epsilon)
    return (f * a).sum(-1) + (g * b).sum(-1) - epsilon * plan.sum((-2, -1)) + epsilon


class OptimalTransportExpert(nn.Module):
    """x -> distribution over bins -> Sinkhorn distances to learned prototypes -> MLP -> [B, out_dim]."""

    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, bins: int = 16, prototypes: int = 8,
                 epsilon: float = 0.1, iterations: int = 30, hidden: int = 64, support_dim: int = 4) -> None:
        super().__init__()
        assert self.accepts(columns), "OptimalTransportExpert needs at least one column"
        assert epsilon > 0 and iterations >= 1
        self.n_in, self.bins, self.prototypes = len(columns), bins, prototypes
        self.epsilon, self.iterations = epsilon, iterations
        self.to_bins = nn.Linear(self.n_in, bins)
        self.prototype_logits = nn.Parameter(torch.randn(prototypes, bins))
        # E|u_i - u_j|^2 = 2 * support_dim * var = 1 at init
        self.support = nn.Parameter(torch.randn(bins, support_dim) / (2 * support_dim) ** 0.5)
        self.head = nn.Sequential(nn.Linear(prototypes, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        return len(columns) > 0

    def ground_cost(self) -> Tensor:
        """Squared Euclidean distances between the support embeddings [bins, bins]."""
        diff = self.support[:, None, :] - self.support[None, :, :]
        return diff.pow(2).sum(-1)

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        assert x.shape == (B, self.n_in), x.shape
        a = torch.softmax(self.to_bins(x), dim=-1)  # [B, bins]
        b = torch.softmax(self.prototype_logits, dim=-1)  # [K, bins]
        dist = entropic_ot(a[:, None, :], b[None, :, :], self.ground_cost(), self.epsilon, self.iterations)
        assert dist.shape == (B, self.prototypes)
        out = self.head(dist)
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        return self.support.new_zeros(())
