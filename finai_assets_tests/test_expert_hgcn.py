"""HGCN expert: points stay inside the ball, siblings closer than cousins, the ball maps; shape."""

import math

import pytest
import torch

from finai_assets.lib.ple.experts import build_expert
from finai_assets.lib.ple.experts.hgcn import (
    HGCNExpert,
    einstein_midpoint,
    expmap0,
    logmap0,
    poincare_distance,
)

MCCS = [4111, 4121, 4812, 4900, 5311, 5411, 5499, 5541, 5651, 5732, 5812, 5814, 5912, 5999, 6011, 7011, 7832, 7997, 8011, 8062]
COLUMNS = (["mcc_distinct_90d"] + [f"mcc_share_{m}" for m in MCCS] + [f"mcc_l1_share_{d}" for d in range(10)]
           + ["mcc_tree_x", "mcc_tree_y"])


def sibling_cousin_distances(expert: HGCNExpert) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairwise MCC distances and the sibling / cousin masks (self-pairs excluded)."""
    _, _, mccs = expert.points()
    d = poincare_distance(mccs.unsqueeze(1), mccs.unsqueeze(0), expert.c).detach()
    same = expert.parent.unsqueeze(0) == expert.parent.unsqueeze(1)
    siblings = same & ~torch.eye(len(MCCS), dtype=torch.bool)
    return d, siblings, ~same


def every_sibling_closer_than_every_cousin(expert: HGCNExpert) -> bool:
    d, siblings, cousins = sibling_cousin_distances(expert)
    return bool(d[siblings].max() < d[cousins].min())


def train(expert: HGCNExpert, steps: int, lr: float, with_aux: bool) -> None:
    g = torch.Generator().manual_seed(1)
    x, target = torch.randn(64, len(COLUMNS), generator=g), torch.randn(64, expert.out_dim, generator=g)
    opt = torch.optim.Adam(expert.parameters(), lr=lr)
    for _ in range(steps):
        loss = (expert(x) - target).pow(2).mean() + (expert.aux_loss() if with_aux else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_logmap0_inverts_expmap0():
    torch.manual_seed(0)
    for c in (0.5, 1.0, 2.0):
        v = torch.randn(50, 6, dtype=torch.float64) * torch.linspace(0.01, 2.5, 50, dtype=torch.float64).unsqueeze(1) / math.sqrt(c * 6)
        assert torch.allclose(logmap0(expmap0(v, c), c), v, rtol=0, atol=1e-10)
        y = expmap0(v, c)
        assert torch.allclose(expmap0(logmap0(y, c), c), y, rtol=0, atol=1e-10)


def test_poincare_distance_matches_the_closed_form():
    torch.manual_seed(0)
    x, y = expmap0(torch.randn(30, 4, dtype=torch.float64), 1.0), expmap0(torch.randn(30, 4, dtype=torch.float64), 1.0)
    closed = torch.acosh(1 + 2 * (x - y).pow(2).sum(-1) / ((1 - x.pow(2).sum(-1)) * (1 - y.pow(2).sum(-1))))
    assert torch.allclose(poincare_distance(x, y, 1.0), closed, rtol=1e-8, atol=1e-8)
    assert torch.allclose(poincare_distance(x, y, 1.0), poincare_distance(y, x, 1.0), atol=1e-10)
    assert torch.allclose(poincare_distance(torch.zeros_like(y), y, 1.0), 2 * torch.atanh(y.norm(dim=-1)), atol=1e-10)


def test_einstein_midpoint_of_one_point_and_of_opposite_points():
    p = torch.tensor([[0.3, -0.5], [-0.3, 0.5]], dtype=torch.float64)
    assert torch.allclose(einstein_midpoint(p, torch.tensor([[1.0, 0.0]], dtype=torch.float64), 1.0), p[:1], atol=1e-12)
    assert torch.allclose(einstein_midpoint(p, torch.tensor([[0.5, 0.5]], dtype=torch.float64), 1.0), torch.zeros(1, 2, dtype=torch.float64), atol=1e-12)


def test_every_node_is_strictly_inside_the_ball_even_after_large_steps():
    for c in (1.0, 2.0):
        torch.manual_seed(0)
        expert = HGCNExpert(COLUMNS, 8, curvature=c)
        assert expert.node_points().shape == (1 + 5 + len(MCCS), 8)  # root, categories 4..8, MCCs
        assert (expert.node_points().norm(dim=-1) < 1 / math.sqrt(c)).all()
        train(expert, steps=5, lr=10.0, with_aux=True)
        points = expert.node_points()
        assert torch.isfinite(points).all() and (points.norm(dim=-1) < 1 / math.sqrt(c)).all()
        assert points.norm(dim=-1).max() > 0.9 / math.sqrt(c)  # the big steps did push points outwards
    far = expmap0(torch.full((3, 8), 1e6), 1.0)
    assert (far.norm(dim=-1) < 1).all() and torch.isfinite(logmap0(far, 1.0)).all()


def test_siblings_start_closer_than_cousins_for_every_pair():
    for seed, ball_dim, c in ((0, 8, 1.0), (1, 2, 1.0), (2, 4, 0.5), (3, 16, 2.0)):
        torch.manual_seed(seed)
        expert = HGCNExpert(COLUMNS, 8, ball_dim=ball_dim, curvature=c)
        d, siblings, cousins = sibling_cousin_distances(expert)
        assert d[siblings].mean() < d[cousins].mean()
        assert every_sibling_closer_than_every_cousin(expert), (seed, ball_dim, c)


def test_aux_loss_keeps_siblings_closer_than_cousins_while_training():
    torch.manual_seed(0)
    expert = HGCNExpert(COLUMNS, 8)
    train(expert, steps=10, lr=0.05, with_aux=True)
    d, siblings, cousins = sibling_cousin_distances(expert)
    assert d[siblings].mean() < 0.5 * d[cousins].mean()
    assert every_sibling_closer_than_every_cousin(expert)
    torch.manual_seed(0)
    unregularised = HGCNExpert(COLUMNS, 8, aux_weight=0.0)  # the same training without the aux loss
    train(unregularised, steps=10, lr=0.05, with_aux=True)
    assert not every_sibling_closer_than_every_cousin(unregularised)


def test_aux_loss_grows_when_an_mcc_sits_with_its_cousins():
    torch.manual_seed(0)
    expert = HGCNExpert(COLUMNS, 8)
    with torch.no_grad():
        before = float(expert.aux_loss())
        expert.mcc_tangent[MCCS.index(4111)] = expert.mcc_tangent[MCCS.index(5411)]  # category 4 -> 5's place
        after = float(expert.aux_loss())
    assert after > before + 0.02 and before > 0
    assert expert.aux_loss().shape == ()


def test_output_shape_gradients_and_accepts():
    torch.manual_seed(0)
    expert = build_expert("hgcn", COLUMNS, 12, ball_dim=4, hidden=32)
    x = torch.randn(7, len(COLUMNS))
    out = expert(x)
    assert out.shape == (7, 12) and torch.isfinite(out).all()
    (out.pow(2).mean() + expert.aux_loss()).backward()
    for name, p in expert.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert HGCNExpert.accepts(["mcc_share_5411", "mcc_share_5812"])
    assert not HGCNExpert.accepts(["mcc_share_5411", "mcc_l1_share_5", "mcc_tree_x"])
    with pytest.raises(ValueError):
        build_expert("hgcn", ["mcc_share_5411", "mcc_distinct_90d"], 8)
