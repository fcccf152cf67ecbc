"""DeepFM expert: the FM term is the explicit pairwise interaction sum; shape; gradients."""

import pytest
import torch

from finai_assets.lib.ple.experts import build_expert
from finai_assets.lib.ple.experts.deepfm import DeepFMExpert

COLUMNS = [f"f{i}" for i in range(7)]


def test_fm_term_equals_the_explicit_pairwise_sum():
    torch.manual_seed(0)
    expert = DeepFMExpert(COLUMNS, 16, embed_dim=5).double()
    with torch.no_grad():
        expert.field_embedding.normal_()  # unit-scale embeddings: terms of order 1, not 1e-2
    x = torch.randn(4, len(COLUMNS), dtype=torch.float64)
    fm = expert.fm_term(x)
    v = expert.field_embedding.detach()
    explicit = torch.zeros(4, 5, dtype=torch.float64)
    for b in range(4):
        for i in range(len(COLUMNS)):
            for j in range(i + 1, len(COLUMNS)):
                explicit[b] += (v[i] * x[b, i]) * (v[j] * x[b, j])
    assert fm.shape == (4, 5)
    assert torch.allclose(fm, explicit, rtol=0, atol=1e-10)  # per embedding dimension
    dots = torch.tensor([
        sum(float(torch.dot(v[i] * x[b, i], v[j] * x[b, j])) for i in range(len(COLUMNS)) for j in range(i + 1, len(COLUMNS)))
        for b in range(4)
    ], dtype=torch.float64)
    assert torch.allclose(fm.sum(1), dots, rtol=0, atol=1e-10)  # summed: Σ_{i<j} <e_i, e_j>
    assert explicit.abs().min() > 1e-3 and explicit.abs().max() > 1.0  # the comparison is not between two zeros


def test_fm_term_of_a_single_field_is_zero():
    torch.manual_seed(0)
    expert = DeepFMExpert(["only"], 8).double()
    assert torch.allclose(expert.fm_term(torch.randn(3, 1, dtype=torch.float64)), torch.zeros(3, 8, dtype=torch.float64), atol=1e-12)


def test_output_shape_and_gradients_reach_every_part():
    torch.manual_seed(0)
    expert = build_expert("deepfm", COLUMNS, 12, embed_dim=4, hidden=(32, 16))
    x = torch.randn(10, len(COLUMNS))
    out = expert(x)
    assert out.shape == (10, 12) and out.dtype == torch.float32
    (out.pow(2).mean() + expert.aux_loss()).backward()
    for name, p in expert.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert expert.aux_loss().shape == () and float(expert.aux_loss()) == 0.0


def test_accepts_any_non_empty_column_list():
    assert DeepFMExpert.accepts(["a"]) and not DeepFMExpert.accepts([])
    with pytest.raises(ValueError):
        build_expert("deepfm", [], 8)
