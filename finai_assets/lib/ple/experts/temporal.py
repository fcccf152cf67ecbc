"""Temporal expert: the last K card transactions, read by a GRU and a small transformer.

The `seq_{slot:02d}_{amount|mcc|hour|age_days|mask}` columns give [B, K, 5] with slot 00 the
newest and mask 0 marking padding. Each row's real transactions are put in chronological order
(oldest first, padding after them); a step is [amount, log1p(age_days), sin/cos(hour), MCC
embedding (code 0 = padding)] projected to d_model. Padded steps are zeroed before any encoder
sees them, so their values cannot change the output.
- GRU: the hidden state after the last real step (padding comes after it, so it never enters);
- transformer: key-padding mask, learned positional embedding by recency rank, masked mean pool;
- a learned softmax mix of the two; a customer with no transaction gets a learned `empty` vector.
The other routed columns (txn_windows) go through a linear layer and are added.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

FIELDS = ("amount", "mcc", "hour", "age_days", "mask")
_SEQ = re.compile(r"^seq_(\d{2})_(" + "|".join(FIELDS) + r")$")


def _slots(columns: Sequence[str]) -> dict[int, dict[str, int]]:
    """slot -> field -> column position, for every seq_ column."""
    slots: dict[int, dict[str, int]] = {}
    for i, c in enumerate(columns):
        if m := _SEQ.match(c):
            slots.setdefault(int(m.group(1)), {})[m.group(2)] = i
    return slots


class TemporalExpert(nn.Module):
    def __init__(self, columns: Sequence[str], out_dim: int = 64, *, d_model: int = 32, heads: int = 2,
                 layers: int = 1, mcc_vocab: int = 64) -> None:
        super().__init__()
        assert self.accepts(columns), "Temporal needs seq_XX_mask columns with all their fields"
        slots = _slots(columns)
        order = sorted(slots)  # slot 00 (newest) first
        self.K, self.d_model, self.mcc_vocab, self.out_dim = len(order), d_model, mcc_vocab, out_dim
        self.n_columns = len(columns)
        self.register_buffer("seq_index", torch.tensor([[slots[s][f] for f in FIELDS] for s in order]), persistent=False)
        seq_positions = {i for s in slots.values() for i in s.values()}
        other = [i for i in range(len(columns)) if i not in seq_positions]
        self.register_buffer("other_index", torch.tensor(other, dtype=torch.long), persistent=False)

        mcc_dim = max(d_model // 4, 4)
        self.mcc_embedding = nn.Embedding(mcc_vocab, mcc_dim, padding_idx=0)
        self.step = nn.Linear(4 + mcc_dim, d_model)
        self.gru = nn.GRU(d_model, d_model, num_layers=layers, batch_first=True)
        self.position = nn.Embedding(self.K, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.1, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.mix_logits = nn.Parameter(torch.zeros(2))  # softmax weights of [gru, transformer]
        self.empty = nn.Parameter(0.02 * torch.randn(d_model))
        self.other = nn.Linear(len(other), d_model) if other else None
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.SiLU(), nn.Linear(d_model, out_dim))

    @staticmethod
    def accepts(columns: Sequence[str]) -> bool:
        slots = _slots(columns)
        masked = [s for s in slots.values() if "mask" in s]
        return bool(masked) and all(len(s) == len(FIELDS) for s in slots.values())

    def chronological(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, n] -> steps [B, K, 5] (real transactions oldest first, padding after) and lengths [B]."""
        B, K = x.shape[0], self.K
        seq = x[:, self.seq_index]  # [B, K, 5], slot 00 = newest
        real = seq[..., FIELDS.index("mask")] > 0.5
        slot = torch.arange(K, device=x.device).expand(B, K)
        key = torch.where(real, -slot, K + slot)  # real slots newest-last, then padding
        order = key.argsort(dim=1)
        seq = seq.gather(1, order.unsqueeze(-1).expand(B, K, len(FIELDS)))
        lengths = real.sum(1)
        assert seq.shape == (B, K, len(FIELDS)) and lengths.shape == (B,)
        return seq, lengths

    def forward(self, x: Tensor) -> Tensor:
        B, K = x.shape[0], self.K
        assert x.shape == (B, self.n_columns), x.shape
        seq, lengths = self.chronological(x)
        t = torch.arange(K, device=x.device)
        real = t < lengths.unsqueeze(1)  # [B, K]
        seq = torch.where(real.unsqueeze(-1), seq, torch.zeros_like(seq))  # padding values never enter

        amount, mcc, hour, age = (seq[..., FIELDS.index(f)] for f in ("amount", "mcc", "hour", "age_days"))
        angle = hour * (2 * math.pi / 24)
        numeric = torch.stack([amount, torch.log1p(age.clamp(min=0)), torch.sin(angle), torch.cos(angle)], -1)
        code = mcc.round().long().clamp(0, self.mcc_vocab - 1)
        steps = self.step(torch.cat([numeric, self.mcc_embedding(code)], -1))
        assert steps.shape == (B, K, self.d_model)

        last = (lengths - 1).clamp(min=0)
        gru_out, _ = self.gru(steps)
        h_gru = gru_out[torch.arange(B, device=x.device), last]

        recency = (last.unsqueeze(1) - t).clamp(min=0)  # 0 = the newest real transaction
        pad = ~real
        pad[:, 0] &= lengths > 0  # an empty row attends to one zero step: no all-masked softmax
        enc = self.transformer(steps + self.position(recency), src_key_padding_mask=pad)
        weights = real.unsqueeze(-1).to(enc.dtype)
        h_trf = (enc * weights).sum(1) / weights.sum(1).clamp(min=1)

        mix = torch.softmax(self.mix_logits, 0)
        h = mix[0] * h_gru + mix[1] * h_trf
        h = torch.where((lengths > 0).unsqueeze(1), h, self.empty.expand(B, -1))
        if self.other is not None:
            h = h + self.other(x[:, self.other_index])
        out = self.head(h)
        assert out.shape == (B, self.out_dim)
        return out

    def aux_loss(self) -> Tensor:
        return self.mix_logits.new_zeros(())
