"""PersLay expert (Carriere et al., AISTATS 2020): a permutation-invariant layer over the points
of each customer's persistence diagram.

The `pd_{i:02d}_{birth|death|mask}` columns give a diagram [B, P, 2] and a mask [B, P] (1 = real
point, 0 = padding). Each point p = (birth, lifetime = death - birth) is mapped by
- phi: a learnable rational-hat structure element with phi_dim centres c_k and radii r_k,
  phi_k(p) = 1 / (1 + |p - c_k|_1) - 1 / (1 + ||r_k| - |p - c_k|_1|);
- psi: a learnable weight psi(p) >= 0 (softplus of a small MLP on p);
- rho: the masked sum over points of psi(p) * phi(p), so point order and padding values do not
  matter and an empty diagram gives 0.
The result and the other routed persistence columns (pers_total, ...) go through an MLP -> out_dim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

FIELDS = ("birth", "death", "mask")
_PD = re.compile(r"^pd_(\d{2})_(" + "|".join(FIELDS) + r")$")
CENTRE_RANGE = 8.0  # centres start uniform on [0, 8]^2: monthly log1p spend levels (log1p(3000) ~ 8)


def _slots(columns: Sequence[str]) -> dict[int, dict[str, int]]:
    """slot -> field -> column position, for every pd_ column."""
    slots: dict[int, dict[str, int]] = {}
    for i, c in enumerate(columns):
        if m := _PD.match(c):
            slots.setdefault(int(m.group(1)), {})[m.group(2)] = i
    return slots


class PersLayExpert(nn.Module):
    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, phi_dim: int = 32, points: int | None = None) -> None:
        super().__init__()
        assert self.accepts(columns), "PersLay needs pd_XX_birth/death/mask columns"
        slots = _slots(columns)
        order = sorted(slots)[:points]  # the `points` most persistent slots (all when None)
        assert points is None or len(order) == points, f"asked for {points} diagram points, the columns hold {len(slots)}"
        self.P, self.phi_dim, self.out_dim, self.n_columns = len(order), phi_dim, out_dim, len(columns)
        self.register_buffer("pd_index", torch.tensor([[slots[s][f] for f in FIELDS] for s in order]), persistent=False)
        pd_positions = {i for s in slots.values() for i in s.values()}
        other = [i for i in range(len(columns)) if i not in pd_positions]
        self.register_buffer("other_index", torch.tensor(other, dtype=torch.long), persistent=False)

        self.centres = nn.Parameter(CENTRE_RANGE * torch.rand(phi_dim, 2))
        self.radii = nn.Parameter(0.5 + torch.rand(phi_dim))
        self.weight = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))  # psi before softplus
        self.head = nn.Sequential(
            nn.LayerNorm(phi_dim + len(other)), nn.Linear(phi_dim + len(other), out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        slots = _slots(columns)
        return bool(slots) and all(len(s) == len(FIELDS) for s in slots.values())

    def diagram(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, n] -> points [B, P, 2] as (birth, death) and the real-point mask [B, P] (bool)."""
        B = x.shape[0]
        pd = x[:, self.pd_index]  # [B, P, 3]
        points, mask = pd[..., :2], pd[..., 2] > 0.5
        assert points.shape == (B, self.P, 2) and mask.shape == (B, self.P)
        return points, mask

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        assert x.shape == (B, self.n_columns), f"expected [B, {self.n_columns}], got {tuple(x.shape)}"
        points, mask = self.diagram(x)
        birth, death = points.unbind(-1)
        p = torch.stack([birth, death - birth], dim=-1)  # (birth, lifetime)
        distance = (p.unsqueeze(2) - self.centres).abs().sum(-1)  # [B, P, phi_dim], L1 to each centre
        phi = 1 / (1 + distance) - 1 / (1 + (self.radii.abs() - distance).abs())
        psi = F.softplus(self.weight(p))  # [B, P, 1], >= 0
        terms = torch.where(mask.unsqueeze(-1), psi * phi, torch.zeros_like(phi))  # padding contributes 0
        rho = terms.sum(1)
        assert rho.shape == (B, self.phi_dim)
        out = self.head(torch.cat([rho, x[:, self.other_index]], dim=1))
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        return torch.zeros((), device=self.centres.device)
