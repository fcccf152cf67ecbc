"""LightGCN expert (He et al., SIGIR 2020) over the customer-product graph of the batch.

The graph: the batch's B customers and the P products of the routed `hold_*` columns, an edge where
the customer holds the product. Holdings arrive standardised (0/1 flag minus the train mean over the
train std), so held <=> value > 0. (A product held by every train customer has std 0, is left
centred only and reads as 0 = not held; a null flag was filled as not held.)

Embeddings: learnable product embeddings E_p [P, d]; a customer's initial embedding is a Linear over
its non-holding routed columns (the precomputed inductive `graph_e*` embedding, product counts, ...),
or a shared learnable vector when none is routed. Propagation, with no weights and no nonlinearity:

    A = [[0, R], [R^T, 0]],   A_hat = D^{-1/2} A D^{-1/2},   e^(k+1) = A_hat e^(k),
    final = mean(e^(0), ..., e^(L))                          (the paper's alpha_k = 1 / (L + 1))

computed in the factored form R_hat = D_c^{-1/2} R D_p^{-1/2} (B x P matmuls, never the (B+P)^2
matrix); a node of degree 0 receives zero messages. The customer's final embedding -> MLP -> out_dim.

Messages pass customer -> product -> customer, so for layers >= 2 a customer's output depends on
the other customers of its batch (the graph is the batch's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _inv_sqrt(degree: Tensor) -> Tensor:
    """degree^(-1/2), and 0 where the degree is 0 (no inf, no NaN gradient)."""
    positive = degree > 0
    return torch.where(positive, torch.where(positive, degree, torch.ones_like(degree)).rsqrt(), torch.zeros_like(degree))


def propagate(R: Tensor, customer_emb: Tensor, product_emb: Tensor, layers: int) -> tuple[Tensor, Tensor]:
    """LightGCN propagation on the bipartite graph R [B, P] (nonnegative edge weights, 0 = no edge):
    returns the final (mean over layers 0..L) customer [B, d] and product [P, d] embeddings."""
    B, P = R.shape
    d = customer_emb.shape[1]
    assert customer_emb.shape == (B, d) and product_emb.shape == (P, d), (R.shape, customer_emb.shape, product_emb.shape)
    assert layers >= 0
    R_hat = _inv_sqrt(R.sum(1))[:, None] * R * _inv_sqrt(R.sum(0))[None, :]
    c, p = customer_emb, product_emb
    c_sum, p_sum = c, p
    for _ in range(layers):
        c, p = R_hat @ p, R_hat.T @ c  # one step of e <- A_hat e on both sides at once
        c_sum, p_sum = c_sum + c, p_sum + p
    return c_sum / (layers + 1), p_sum / (layers + 1)


class LightGCNExpert(nn.Module):
    """Holdings graph of the batch + non-holding columns -> LightGCN customer embedding -> [B, out_dim]."""

    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, embed_dim: int = 16, layers: int = 2) -> None:
        super().__init__()
        columns = list(columns)
        assert self.accepts(columns), "LightGCNExpert needs at least two hold_* columns"
        self.n_in, self.layers = len(columns), layers
        hold = [i for i, c in enumerate(columns) if c.startswith("hold_")]
        other = [i for i, c in enumerate(columns) if not c.startswith("hold_")]
        self.register_buffer("hold_idx", torch.tensor(hold, dtype=torch.long), persistent=False)
        self.register_buffer("other_idx", torch.tensor(other, dtype=torch.long), persistent=False)
        self.product_emb = nn.Parameter(torch.randn(len(hold), embed_dim) * 0.1)
        # nn.Linear(0, d) is legal but warns at init; with no other columns customers share a start
        self.customer_init = nn.Linear(len(other), embed_dim) if other else None
        self.customer_start = None if other else nn.Parameter(torch.randn(embed_dim) * 0.1)
        self.head = nn.Sequential(nn.Linear(embed_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self.out_dim = out_dim

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        return sum(c.startswith("hold_") for c in columns) >= 2

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        assert x.shape == (B, self.n_in), x.shape
        R = (x[:, self.hold_idx] > 0).to(x.dtype)  # held <=> standardised flag > 0
        if self.customer_init is not None:
            c0 = self.customer_init(x[:, self.other_idx])
        else:
            c0 = self.customer_start.expand(B, -1)
        c, _ = propagate(R, c0, self.product_emb, self.layers)
        out = self.head(c)
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        return self.product_emb.new_zeros(())
