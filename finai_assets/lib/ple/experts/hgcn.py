"""HGCN expert: a learned Poincaré-ball embedding of the MCC hierarchy read by a customer's MCC mix.

Nodes: the root (fixed at the origin), the MCC categories (first digit, code // 1000) and the
MCCs of the `mcc_share_{code}` columns. Each node is a learnable tangent vector at the origin
mapped into the ball of curvature -c by expmap0 (clipped strictly inside, norm < 1/sqrt(c)).
Initialisation follows the hierarchy: categories on evenly spread directions at ball radius 0.5,
each MCC close to its category's direction at radius 0.85, so siblings start closer than cousins.
`aux_loss` keeps the hierarchy while the experts train: children are pulled towards their parent
and must stay a margin nearer it than the other nodes one level up.

A customer's point is the Einstein midpoint of its MCC points, weighted by a softmax of the
(standardised) shares; its logmap0 and its distances to the categories, with the other routed mcc
columns, go through an MLP to out_dim.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BALL_EPS = 1e-5  # points stay within (1 - BALL_EPS) / sqrt(c) of the origin
_SHARE = re.compile(r"^mcc_share_(\d+)$")


def _norm(x: Tensor) -> Tensor:
    return x.pow(2).sum(-1, keepdim=True).clamp_min(1e-15).sqrt()  # no NaN gradient at 0


def project(x: Tensor, c: float) -> Tensor:
    """Pull points back strictly inside the ball."""
    limit = (1 - BALL_EPS) / math.sqrt(c)
    return x * (limit / _norm(x)).clamp(max=1.0)


def mobius_add(x: Tensor, y: Tensor, c: float) -> Tensor:
    xy, x2, y2 = (x * y).sum(-1, keepdim=True), x.pow(2).sum(-1, keepdim=True), y.pow(2).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    return num / (1 + 2 * c * xy + c**2 * x2 * y2).clamp_min(1e-15)


def expmap0(v: Tensor, c: float) -> Tensor:
    sc = math.sqrt(c)
    n = _norm(v)
    return project(torch.tanh(sc * n) * v / (sc * n), c)


def logmap0(y: Tensor, c: float) -> Tensor:
    sc = math.sqrt(c)
    n = _norm(y)
    return torch.atanh((sc * n).clamp(max=1 - BALL_EPS)) * y / (sc * n)


def poincare_distance(x: Tensor, y: Tensor, c: float) -> Tensor:
    """d_c(x, y) = 2/sqrt(c) atanh(sqrt(c) |(-x) ⊕ y|), over the last dim (broadcasting)."""
    sc = math.sqrt(c)
    return 2 / sc * torch.atanh((sc * _norm(mobius_add(-x, y, c))).clamp(max=1 - BALL_EPS)).squeeze(-1)


def einstein_midpoint(points: Tensor, weights: Tensor, c: float) -> Tensor:
    """Weighted midpoint of ball points [n, d] per row of weights [B, n] -> [B, d] (via Klein)."""
    klein = 2 * points / (1 + c * points.pow(2).sum(-1, keepdim=True))
    gamma = 1 / (1 - c * klein.pow(2).sum(-1, keepdim=True)).clamp_min(1e-15).sqrt()
    w = weights * gamma.squeeze(-1)
    mid = (w @ klein) / w.sum(-1, keepdim=True).clamp_min(1e-15)
    return project(mid / (1 + (1 - c * mid.pow(2).sum(-1, keepdim=True)).clamp_min(0).sqrt()), c)


class HGCNExpert(nn.Module):
    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, ball_dim: int = 8, curvature: float = 1.0,
                 hidden: int = 64, aux_weight: float = 0.1, margin: float = 1.0) -> None:
        super().__init__()
        assert self.accepts(columns), "HGCN needs at least two mcc_share_ columns"
        assert ball_dim >= 2 and curvature > 0
        self.c, self.ball_dim, self.out_dim = curvature, ball_dim, out_dim
        self.aux_weight, self.margin = aux_weight, margin
        self.n_columns = len(columns)
        share = [(i, int(m.group(1))) for i, c in enumerate(columns) if (m := _SHARE.match(c))]
        categories = sorted({code // 1000 for _, code in share})
        self.mccs = [code for _, code in share]
        self.categories = categories
        share_positions = [i for i, _ in share]
        other = [i for i in range(len(columns)) if i not in share_positions]
        self.register_buffer("share_index", torch.tensor(share_positions), persistent=False)
        self.register_buffer("other_index", torch.tensor(other, dtype=torch.long), persistent=False)
        self.register_buffer("parent", torch.tensor([categories.index(code // 1000) for code in self.mccs]), persistent=False)

        # init: category k at angle 2πk/n in the first plane, each MCC within gap/8 of its category,
        # so siblings are at most gap/4 apart in angle and cousins at least 3 gap/4
        n_cat, sc = len(categories), math.sqrt(curvature)
        gap = 2 * math.pi / n_cat
        angle = torch.arange(n_cat) * gap
        direction = torch.zeros(n_cat, ball_dim)
        direction[:, 0], direction[:, 1] = torch.cos(angle), torch.sin(angle)
        jitter = torch.randn(len(self.mccs), ball_dim)
        base = direction[self.parent]
        jitter = F.normalize(jitter - (jitter * base).sum(-1, keepdim=True) * base, dim=-1)
        mcc_direction = F.normalize(base + math.tan(gap / 8) * jitter, dim=-1)  # at most gap/8 off
        self.category_tangent = nn.Parameter(direction * math.atanh(0.5) / sc)
        self.mcc_tangent = nn.Parameter(mcc_direction * math.atanh(0.85) / sc)

        self.log_temperature = nn.Parameter(torch.zeros(()))  # share softmax sharpness
        width = ball_dim + n_cat + len(self.other_index)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        return sum(bool(_SHARE.match(c)) for c in columns) >= 2

    def points(self) -> tuple[Tensor, Tensor, Tensor]:
        """Ball points of the root [1, d], the categories [n_cat, d] and the MCCs [n_mcc, d]."""
        cats, mccs = expmap0(self.category_tangent, self.c), expmap0(self.mcc_tangent, self.c)
        return torch.zeros_like(cats[:1]), cats, mccs

    def node_points(self) -> Tensor:
        """Every node (root, categories, MCCs) as one [n_nodes, d] tensor."""
        return torch.cat(self.points(), 0)

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        assert x.shape == (B, self.n_columns), x.shape
        _, cats, mccs = self.points()
        weights = torch.softmax(x[:, self.share_index] * self.log_temperature.exp(), dim=1)
        customer = einstein_midpoint(mccs, weights, self.c)
        assert customer.shape == (B, self.ball_dim)
        to_categories = poincare_distance(customer.unsqueeze(1), cats.unsqueeze(0), self.c)
        features = torch.cat([logmap0(customer, self.c), to_categories, x[:, self.other_index]], 1)
        out = self.mlp(features)
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        """aux_weight x the hierarchy loss: every child is pulled towards its parent (mean distance)
        and must sit at least `margin` nearer its parent than any other node one level up (hinge;
        an MCC's candidates are the categories, a category's are the root and the other categories)."""
        root, cats, mccs = self.points()
        mcc_to_cat = poincare_distance(mccs.unsqueeze(1), cats.unsqueeze(0), self.c)  # [n_mcc, n_cat]
        cat_to_cat = poincare_distance(cats.unsqueeze(1), cats.unsqueeze(0), self.c)  # [n_cat, n_cat]
        cat_to_root = poincare_distance(cats, root, self.c)  # [n_cat]
        own = mcc_to_cat.gather(1, self.parent.unsqueeze(1))  # [n_mcc, 1]
        is_parent = F.one_hot(self.parent, len(self.categories)).bool()
        mcc_hinge = F.relu(self.margin + own - mcc_to_cat).masked_fill(is_parent, 0).sum(1)
        is_self = torch.eye(len(self.categories), dtype=torch.bool, device=cats.device)
        cat_hinge = F.relu(self.margin + cat_to_root.unsqueeze(1) - cat_to_cat).masked_fill(is_self, 0).sum(1)
        pull = own.mean() + cat_to_root.mean()
        return self.aux_weight * (pull + mcc_hinge.mean() + cat_hinge.mean())
