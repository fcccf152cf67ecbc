"""DeepFM expert: every routed column is one numeric field of a factorisation machine.

Field i has an embedding v_i scaled by its value, e_i = x_i v_i [embed_dim]. Three views of the
fields are combined by a linear layer into out_dim:
- first order:  w0 + Σ w_i x_i                                   [B, 1]
- FM second order: 0.5 [(Σ e_i)² − Σ e_i²] = Σ_{i<j} e_i ∘ e_j   [B, embed_dim]
- deep:  an MLP over the concatenated e_1 ‖ ... ‖ e_n              [B, hidden[-1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class DeepFMExpert(nn.Module):
    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, embed_dim: int = 8,
                 hidden: tuple[int, ...] = (128, 64), dropout: float = 0.1) -> None:
        super().__init__()
        assert self.accepts(columns), "DeepFM needs at least one column"
        self.n_fields, self.embed_dim, self.out_dim = len(columns), embed_dim, out_dim
        self.field_embedding = nn.Parameter(0.1 * torch.randn(self.n_fields, embed_dim))
        self.linear = nn.Linear(self.n_fields, 1)
        layers: list[nn.Module] = []
        width = self.n_fields * embed_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.SiLU(), nn.Dropout(dropout)]
            width = h
        self.deep = nn.Sequential(*layers)
        self.combine = nn.Linear(embed_dim + 1 + width, out_dim)

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        return len(columns) > 0

    def embeddings(self, x: Tensor) -> Tensor:
        """e_i = x_i v_i: [B, n_fields] -> [B, n_fields, embed_dim]."""
        assert x.ndim == 2 and x.shape[1] == self.n_fields, x.shape
        return x.unsqueeze(-1) * self.field_embedding

    def fm_term(self, x: Tensor) -> Tensor:
        """The FM pairwise interactions Σ_{i<j} e_i ∘ e_j per embedding dim: [B, embed_dim]."""
        e = self.embeddings(x)
        return 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1))

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        assert x.shape == (B, self.n_fields), x.shape
        deep = self.deep(self.embeddings(x).reshape(B, -1))
        out = self.combine(torch.cat([self.fm_term(x), self.linear(x), deep], dim=1))
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        return self.field_embedding.new_zeros(())
