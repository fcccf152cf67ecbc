"""Causal expert: a NOTEARS-regularised latent structural model (Zheng et al., NeurIPS 2018).

z = compress(x) gives n_vars latent variables; a learnable weighted adjacency W (zero diagonal,
enforced by a mask) is a linear SEM over them: z_hat = z @ W predicts each variable from its
parents. An MLP encodes [z || z_hat] -> out_dim. The auxiliary loss of the last forward is
    dag_weight * h(W) + sparsity_weight * |W|_1 + recon_weight * |z - z W|^2 / |z|^2,
with the exact NOTEARS acyclicity h(W) = tr(exp(W o W)) - d, zero iff W is a DAG. The
reconstruction is relative to |z|^2 so shrinking z cannot make it vanish.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def notears_h(W: Tensor) -> Tensor:
    """NOTEARS acyclicity tr(exp(W o W)) - d of a square W (exact matrix exponential, float32+)."""
    d = W.shape[0]
    assert W.shape == (d, d)
    A = (W * W).to(torch.promote_types(W.dtype, torch.float32))
    return torch.linalg.matrix_exp(A).diagonal().sum() - d


class CausalExpert(nn.Module):
    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, n_vars: int = 8, hidden: tuple[int, ...] = (64,),
                 dag_weight: float = 0.01, sparsity_weight: float = 1e-3, recon_weight: float = 0.5) -> None:
        super().__init__()
        assert self.accepts(columns), "Causal needs at least one column"
        self.n_columns, self.n_vars, self.out_dim = len(columns), n_vars, out_dim
        self.dag_weight, self.sparsity_weight, self.recon_weight = dag_weight, sparsity_weight, recon_weight
        self.compress = nn.Linear(len(columns), n_vars)
        self.W = nn.Parameter(0.1 * torch.randn(n_vars, n_vars))
        self.register_buffer("off_diagonal", 1 - torch.eye(n_vars), persistent=False)
        layers, width = [], 2 * n_vars
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        self.encoder = nn.Sequential(*layers, nn.Linear(width, out_dim))
        self._recon: Tensor | None = None  # reconstruction loss of the last forward

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        return len(columns) > 0

    def adjacency(self) -> Tensor:
        """The effective weighted adjacency: W with its diagonal masked to zero."""
        return self.W * self.off_diagonal

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        assert x.shape == (B, self.n_columns), f"expected [B, {self.n_columns}], got {tuple(x.shape)}"
        z = self.compress(x)
        z_hat = z @ self.adjacency()  # each latent predicted from its parents
        assert z.shape == z_hat.shape == (B, self.n_vars)
        self._recon = (z - z_hat).pow(2).sum(1).mean() / z.pow(2).sum(1).mean().clamp_min(1e-8)
        out = self.encoder(torch.cat([z, z_hat], dim=1))
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        W = self.adjacency()
        recon = self._recon if self._recon is not None else torch.zeros((), device=W.device)
        return self.dag_weight * notears_h(W) + self.sparsity_weight * W.abs().sum() + self.recon_weight * recon
