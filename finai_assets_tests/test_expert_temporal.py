"""Temporal expert: order-sensitive, padding-invariant, finite on an empty sequence; shape."""

import pytest
import torch

from finai_assets.lib.ple.experts import build_expert
from finai_assets.lib.ple.experts.temporal import FIELDS, TemporalExpert

K = 8
# the feature table's layout: sorted seq_ names, plus txn_windows columns routed to the expert
COLUMNS = sorted(f"seq_{s:02d}_{f}" for s in range(K) for f in FIELDS) + ["txn_30d_count", "txn_90d_log_sum"]
POS = {c: i for i, c in enumerate(COLUMNS)}


def batch(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Rows with the given number of real transactions in slots 00.. (newest first), zero padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), len(COLUMNS))
    for b, n in enumerate(lengths):
        for s in range(n):
            x[b, POS[f"seq_{s:02d}_amount"]] = 1 + 5 * torch.rand((), generator=g)
            x[b, POS[f"seq_{s:02d}_mcc"]] = float(torch.randint(1, 22, (), generator=g))
            x[b, POS[f"seq_{s:02d}_hour"]] = float(torch.randint(0, 24, (), generator=g))
            x[b, POS[f"seq_{s:02d}_age_days"]] = 3.0 * s + 10 * torch.rand((), generator=g)
            x[b, POS[f"seq_{s:02d}_mask"]] = 1.0
    x[:, POS["txn_30d_count"]] = torch.randn(len(lengths), generator=g)
    x[:, POS["txn_90d_log_sum"]] = torch.randn(len(lengths), generator=g)
    return x


def expert(out_dim: int = 16) -> TemporalExpert:
    torch.manual_seed(0)
    return build_expert("temporal", COLUMNS, out_dim, d_model=16, heads=2, layers=1).eval()


def move_slot(x: torch.Tensor, b: int, src: int, dst: int, source: torch.Tensor) -> None:
    for f in FIELDS:
        x[b, POS[f"seq_{dst:02d}_{f}"]] = source[b, POS[f"seq_{src:02d}_{f}"]]


def test_output_shape_and_aux_loss():
    out = expert(12)(batch([0, 1, 5, K]))
    assert out.shape == (4, 12) and torch.isfinite(out).all()
    assert expert().aux_loss().shape == ()


def test_permuting_the_real_transactions_changes_the_output():
    m = expert()
    x = batch([5, K, 3])
    permuted = x.clone()
    for b, n in enumerate([5, K, 3]):
        for s in range(n):  # reverse the order of the real transactions, padding stays
            move_slot(permuted, b, s, n - 1 - s, x)
    with torch.no_grad():
        diff = (m(x) - m(permuted)).abs().amax(1)
    assert (diff > 1e-3).all(), diff


def test_both_encoders_are_order_sensitive():
    m = expert()
    x = batch([6])
    swapped = x.clone()
    move_slot(swapped, 0, 0, 1, x)
    move_slot(swapped, 0, 1, 0, x)
    for logits in ([20.0, -20.0], [-20.0, 20.0]):  # GRU only, then transformer only
        with torch.no_grad():
            m.mix_logits.copy_(torch.tensor(logits))
            assert (m(x) - m(swapped)).abs().max() > 1e-3, logits


def test_values_in_padded_slots_do_not_change_the_output():
    m = expert()
    lengths = [0, 1, 4, K - 1]
    x = batch(lengths)
    noisy = x.clone()
    g = torch.Generator().manual_seed(1)
    for b, n in enumerate(lengths):
        for s in range(n, K):
            for f in ("amount", "mcc", "hour", "age_days"):
                noisy[b, POS[f"seq_{s:02d}_{f}"]] = 1e3 * torch.randn((), generator=g)
    with torch.no_grad():
        assert torch.allclose(m(x), m(noisy), rtol=0, atol=1e-6)


def test_only_the_ordered_real_transactions_matter_not_their_slots():
    """A row whose real transactions sit in slots 0, 2, 5 (holes of padding between them) reads
    like the same transactions in slots 0, 1, 2."""
    m = expert()
    x = batch([3])
    spread = torch.zeros_like(x)
    spread[:, -2:] = x[:, -2:]
    for src, dst in ((0, 0), (1, 2), (2, 5)):
        move_slot(spread, 0, src, dst, x)
    with torch.no_grad():
        assert torch.allclose(m(x), m(spread), rtol=0, atol=1e-6)


def test_empty_sequence_is_finite_with_finite_gradients():
    m = expert().train()
    x = batch([0, 0, 3])
    garbage = torch.randn(K, 4)  # non-zero values in the padded slots of row 1
    for s in range(K):
        for j, f in enumerate(("amount", "mcc", "hour", "age_days")):
            x[1, POS[f"seq_{s:02d}_{f}"]] = garbage[s, j]
    out = m(x)
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert m.empty.grad.abs().sum() > 0  # the empty rows reach their learned vector
    m.eval()
    with torch.no_grad():
        empty_only = m(batch([0, 0]))
    assert torch.isfinite(empty_only).all()


def test_accepts_needs_masks_with_all_their_fields():
    assert TemporalExpert.accepts(COLUMNS)
    assert not TemporalExpert.accepts(["txn_30d_count"])
    assert not TemporalExpert.accepts([c for c in COLUMNS if c != "seq_03_hour"])
    assert not TemporalExpert.accepts([c for c in COLUMNS if not c.endswith("_mask")])
    with pytest.raises(ValueError):
        build_expert("temporal", ["txn_30d_count"], 8)
    only_seq = [c for c in COLUMNS if c.startswith("seq_")]
    torch.manual_seed(0)
    x = batch([2, 0])[:, [POS[c] for c in only_seq]]
    assert TemporalExpert(only_seq, 8)(x).shape == (2, 8)  # no other columns: no extra linear


def test_the_number_of_padded_slots_does_not_change_the_output():
    """The same transactions read through K = 8 or K = 12 slots (same weights) give the same output."""
    m = expert()
    long_columns = sorted(f"seq_{s:02d}_{f}" for s in range(K + 4) for f in FIELDS) + COLUMNS[-2:]
    longer = TemporalExpert(long_columns, 16, d_model=16, heads=2, layers=1).eval()
    state = m.state_dict()
    state["position.weight"] = torch.cat([state["position.weight"], torch.randn(4, 16)])
    longer.load_state_dict(state)
    x = batch([0, 2, K])
    x_long = torch.zeros(3, len(long_columns))
    for j, c in enumerate(long_columns):
        if c in POS:
            x_long[:, j] = x[:, POS[c]]
    with torch.no_grad():
        assert torch.allclose(m(x), longer(x_long), rtol=0, atol=1e-6)
