"""PersLay expert: permutation invariance over diagram points, variable point counts, the diagram
of a known series, shape and an empty diagram."""

import numpy as np
import torch

from finai_assets.lib import features as feat
from finai_assets.lib.ple.experts import build_expert
from finai_assets.lib.ple.experts.perslay import PersLayExpert
from finai_assets.lib.schema import DEFAULT_CUTOFF
from finai_assets_tests.test_features import KNOWN_DIAGRAM, known_series_transactions

P = 8
PD_COLUMNS = [f"pd_{i:02d}_{f}" for i in range(P) for f in ("birth", "death", "mask")]
COLUMNS = ["pers_total", "pers_max", *PD_COLUMNS, "pers_count"]  # pd_ columns among others


def rows(diagrams: list[list[tuple[float, float, float]]], other: float = 0.3) -> torch.Tensor:
    """One feature row per diagram, given as (birth, death, mask) per slot, in COLUMNS order."""
    x = torch.full((len(diagrams), len(COLUMNS)), other)
    for r, diagram in enumerate(diagrams):
        for i, point in enumerate(diagram):
            for f, value in zip(("birth", "death", "mask"), point):
                x[r, COLUMNS.index(f"pd_{i:02d}_{f}")] = value
    return x


def expert(**options) -> PersLayExpert:
    torch.manual_seed(0)
    return PersLayExpert(COLUMNS, 16, **options).eval()


def test_output_shape_and_accepts():
    model = expert()
    x = torch.randn(5, len(COLUMNS))
    assert model(x).shape == (5, 16) and model.aux_loss().item() == 0.0
    assert PersLayExpert.accepts(COLUMNS) and not PersLayExpert.accepts(["pers_total", "pers_max"])
    assert not PersLayExpert.accepts(["pd_00_birth", "pd_00_death"])  # a slot without its mask
    assert build_expert("perslay", COLUMNS, 8).P == P and expert(points=3).P == 3


def test_permuting_the_point_slots_leaves_the_output_unchanged():
    model = expert()
    torch.manual_seed(1)
    births = torch.rand(4, P) * 5
    points = [[(b, b + 2 * torch.rand(()).item(), float(i < 3 + r)) for i, b in enumerate(births[r].tolist())] for r in range(4)]
    x = rows(points)
    permutation = torch.randperm(P)
    shuffled = rows([[row[int(i)] for i in permutation] for row in points])
    assert not torch.equal(x, shuffled)
    torch.testing.assert_close(model(shuffled), model(x), rtol=1e-5, atol=1e-6)


def test_padding_values_and_positions_do_not_matter_but_a_real_point_does():
    model = expert()
    a, b = (0.5, 3.0, 1.0), (1.5, 2.0, 1.0)
    two = rows([[a, b] + [(0.0, 0.0, 0.0)] * (P - 2)])
    # the same two points elsewhere, padding slots holding arbitrary values
    junk = [(7.0, 9.0, 0.0), (-3.0, 4.0, 0.0), (2.0, 2.5, 0.0)]
    moved = rows([[junk[0], a, junk[1], junk[2], b, junk[0], junk[1], junk[2]]])
    torch.testing.assert_close(model(moved), model(two), rtol=1e-5, atol=1e-6)
    three = rows([[a, b, (2.0, 6.0, 1.0)] + [(0.0, 0.0, 0.0)] * (P - 3)])
    assert (model(three) - model(two)).abs().max() > 1e-3
    # a masked point with the same values as a real one is ignored: the mask decides
    masked = rows([[a, b, (2.0, 6.0, 0.0)] + [(0.0, 0.0, 0.0)] * (P - 3)])
    torch.testing.assert_close(model(masked), model(two), rtol=1e-5, atol=1e-6)


def test_empty_diagram_is_finite_and_gradients_flow():
    model = expert().train()
    x = rows([[(0.0, 0.0, 0.0)] * P, [(0.0, 4.0, 1.0), (1.0, 2.0, 1.0)] + [(0.0, 0.0, 0.0)] * (P - 2)])
    out = model(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.centres.grad.abs().sum() > 0 and model.weight[0].weight.grad.abs().sum() > 0


def test_the_diagram_of_a_known_series_from_the_feature_code_matches_the_hand_computation():
    table = feat._persistence(known_series_transactions(), DEFAULT_CUTOFF)
    columns = [c for c in table.columns if c != "ncodpers"]
    model = PersLayExpert(columns, 8)
    x = torch.tensor(table.select(columns).to_numpy(), dtype=torch.float32)
    points, mask = model.diagram(x)
    np.testing.assert_allclose(points[0, : len(KNOWN_DIAGRAM)].numpy(), KNOWN_DIAGRAM, atol=1e-5)
    assert mask[0].tolist() == [True] * len(KNOWN_DIAGRAM) + [False] * (feat.DIAGRAM_POINTS - len(KNOWN_DIAGRAM))
    # the expert reads the same thing from the feature code's row as from the hand-written diagram
    by_hand = torch.zeros_like(x)
    for i, c in enumerate(columns):
        if c.startswith("pers_"):
            by_hand[0, i] = x[0, i]
    for k, (birth, death) in enumerate(KNOWN_DIAGRAM):
        for f, value in (("birth", birth), ("death", death), ("mask", 1.0)):
            by_hand[0, columns.index(f"pd_{k:02d}_{f}")] = value
    torch.testing.assert_close(model(x), model(by_hand), rtol=1e-5, atol=1e-5)
