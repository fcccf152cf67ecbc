"""LightGCN expert (He et al., SIGIR 2020) over the customer-product holdings graph.

The graph: customers and the P products of the routed `hold_*` columns, an edge where the customer
holds the product. Holdings arrive standardised (0/1 flag minus the train mean over the train std),
so held <=> value > 0. (A product held by every train customer has std 0, is left centred only and
reads as 0 = not held; a null flag was filled as not held.)

Embeddings: learnable product embeddings E_p [P, d]; a customer's initial embedding is a Linear over
its non-holding routed columns (the precomputed inductive `graph_e*` embedding, product counts, ...),
or a shared learnable vector when none is routed. Propagation, with no weights and no nonlinearity:

    A = [[0, R], [R^T, 0]],   A_hat = D^{-1/2} A D^{-1/2},   e^(k+1) = A_hat e^(k),
    final = mean(e^(0), ..., e^(L))                          (the paper's alpha_k = 1 / (L + 1))

computed in the factored form R_hat = D_c^{-1/2} R D_p^{-1/2} (B x P matmuls, never the (B+P)^2
matrix); a node of degree 0 receives zero messages. The customer's final embedding -> MLP -> out_dim.

Train vs eval, as in BatchNorm. The customer side only ever reads per-product messages
q^k_j = D_p_j^{-1/2} p^k_j (k = 0..L-1):

    c_final = (c^0 + sum_k D_c^{-1/2} R q^k) / (L + 1),
    q^0_j = E_p_j / sqrt(B * share_j),   q^k_j = mean over j's holders h of D_c_h^{-1/2} c^(k-1)_h  (k >= 1)

and these depend on the other customers (share_j = fraction of customers holding j, B = number of
customers). Train mode propagates over the batch's graph (exactly `propagate`) and updates running
averages (EMA) of share_j, B and the holder means; eval mode builds q^k from those buffers only, so a
customer's output is a function of its own row, whatever the batch it is scored in.
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


def holder_means(R: Tensor, customer_emb: Tensor, product_emb: Tensor, layers: int) -> Tensor:
    """The batch's q^1..q^(L-1) [L-1, P, d]: q^k_j = mean over j's holders h of D_c_h^{-1/2} c^(k-1)_h
    (0 for a product nobody in the batch holds); q^0 = D_p^{-1/2} E_p is used to build c^1, c^2, ..."""
    B, P = R.shape
    inv_c = _inv_sqrt(R.sum(1))[:, None]
    holders = R.sum(0)[:, None]
    q = [_inv_sqrt(holders) * product_emb]
    c = customer_emb
    for _ in range(layers - 1):
        h = (R.T @ (inv_c * c)) / holders.clamp(min=1)  # q^k from c^(k-1)
        c = inv_c * (R @ q[-1])  # c^k from q^(k-1)
        q.append(h)
    out = torch.stack(q[1:]) if layers > 1 else product_emb.new_zeros(0, P, product_emb.shape[1])
    assert out.shape == (max(layers - 1, 0), P, product_emb.shape[1])
    return out


def customer_side(R: Tensor, customer_emb: Tensor, messages: Tensor) -> Tensor:
    """Final customer embeddings [B, d] from the product messages q^0..q^(L-1) [L, P, d]:
    (c^0 + sum_k D_c^{-1/2} R q^k) / (L + 1); row i reads only R[i] and customer_emb[i]."""
    B, P = R.shape
    L, d = messages.shape[0], customer_emb.shape[1]
    assert customer_emb.shape == (B, d) and messages.shape == (L, P, d), (R.shape, customer_emb.shape, messages.shape)
    inv_c = _inv_sqrt(R.sum(1))[:, None]
    c_sum = customer_emb
    for q in messages:
        c_sum = c_sum + inv_c * (R @ q)
    return c_sum / (L + 1)


class LightGCNExpert(nn.Module):
    """Holdings graph + non-holding columns -> LightGCN customer embedding -> [B, out_dim].

    Train mode: propagation over the batch's graph, running buffers updated with `momentum`.
    Eval mode: the graph's other customers enter only through the buffers. Before any training step
    the buffers describe a graph of one customer (running_customers = 1, running_share = 0.5, holder
    means 0): a held product sends its raw embedding (the effective product degree B * share is
    clamped to >= 1, the customer itself holds it), so nothing divides by zero.
    """

    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, embed_dim: int = 16, layers: int = 2,
                 momentum: float = 0.1) -> None:
        super().__init__()
        columns = list(columns)
        assert self.accepts(columns), "LightGCNExpert needs at least two hold_* columns"
        assert layers >= 0 and 0.0 < momentum <= 1.0
        self.n_in, self.layers, self.momentum = len(columns), layers, momentum
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
        # running statistics of the training graphs (in the state_dict, hence in the checkpoint)
        self.register_buffer("running_customers", torch.tensor(1.0))
        self.register_buffer("running_share", torch.full((len(hold),), 0.5))
        self.register_buffer("running_holder_means", torch.zeros(max(layers - 1, 0), len(hold), embed_dim))

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        return sum(c.startswith("hold_") for c in columns) >= 2

    @torch.no_grad()
    def _update_running(self, R: Tensor, c0: Tensor) -> None:
        m, dtype = self.momentum, self.running_share.dtype
        self.running_customers.lerp_(self.running_customers.new_tensor(R.shape[0]), m)
        self.running_share.lerp_(R.mean(0).to(dtype), m)
        held = (R.sum(0) > 0)[None, :, None]  # a product nobody in the batch holds keeps its holder means
        batch = holder_means(R, c0, self.product_emb, self.layers).to(dtype)
        self.running_holder_means.copy_(torch.where(held, self.running_holder_means.lerp(batch, m), self.running_holder_means))

    def _running_messages(self) -> Tensor:
        degree = (self.running_customers * self.running_share).clamp(min=1.0)[:, None]
        q0 = degree.rsqrt() * self.product_emb
        return torch.cat([q0[None], self.running_holder_means])[: self.layers]

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        assert x.shape == (B, self.n_in), x.shape
        R = (x[:, self.hold_idx] > 0).to(x.dtype)  # held <=> standardised flag > 0
        if self.customer_init is not None:
            c0 = self.customer_init(x[:, self.other_idx])
        else:
            c0 = self.customer_start.expand(B, -1)
        if self.training:
            c, _ = propagate(R, c0, self.product_emb, self.layers)
            self._update_running(R, c0)
        else:
            c = customer_side(R, c0, self._running_messages())
        out = self.head(c)
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        return self.product_emb.new_zeros(())
