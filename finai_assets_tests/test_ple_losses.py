"""Masked losses and loss weighting (docs/defects.md#uncertainty-weighting: sign, w_t and clamps)."""

import math

import numpy as np
import pytest
import torch

from finai_assets.lib.ple.losses import (
    DWAWeighting,
    GradNormWeighting,
    UncertaintyWeighting,
    make_weighting,
    masked_loss,
)
from finai_assets.lib.ple.tasks import TaskSpec

BINARY = TaskSpec("b", "binary")
MULTI = TaskSpec("m", "multiclass", classes=3)
REG = TaskSpec("r", "regression")


@pytest.mark.parametrize("spec,shape,target", [
    (BINARY, (6,), [1.0, math.nan, 0.0, math.nan, 1.0, 0.0]),
    (MULTI, (6, 3), [2.0, math.nan, 0.0, math.nan, 1.0, 0.0]),
    (REG, (6,), [0.5, math.nan, -1.0, math.nan, 2.0, 0.0]),
])
def test_a_null_label_contributes_no_loss_and_no_gradient(spec, shape, target):
    torch.manual_seed(0)
    logits = torch.randn(shape, requires_grad=True)
    y = torch.tensor(target)
    masked_loss(spec, logits, y).backward()
    null = torch.isnan(y)
    assert torch.all(logits.grad[null] == 0)
    assert torch.all(logits.grad[~null].abs().sum(-1 if logits.dim() > 1 else 0) > 0)
    # ...and the loss equals the loss of the labelled rows alone: nothing was zero-filled
    alone = masked_loss(spec, logits.detach()[~null], y[~null])
    assert torch.isclose(masked_loss(spec, logits.detach(), y), alone)


def test_a_batch_without_labels_gives_an_exact_zero_that_keeps_the_graph():
    logits = torch.randn(4, requires_grad=True)
    loss = masked_loss(BINARY, logits, torch.full((4,), math.nan))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def _optimise_s(losses, weights=(1.0, 1.0), steps=3000):
    weighting = UncertaintyWeighting(weights)
    opt = torch.optim.Adam(weighting.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        weighting(torch.tensor(losses)).backward()
        opt.step()
    return weighting


def test_s_converges_to_log_of_the_task_loss():
    """The optimum of exp(-s)L + s is s = log L: a '+ s/2' regulariser would land on log(2L), a
    flipped sign would run to the clamp."""
    losses = (0.5, 2.0, 0.1)
    w = _optimise_s(losses, weights=(1.0, 1.0, 1.0))
    assert np.allclose(w.s.detach().numpy(), np.log(losses), atol=0.02)


def test_the_task_weight_multiplies_the_whole_term():
    w = UncertaintyWeighting([1.0, 3.0])
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([0.5, -0.25]))
    losses = torch.tensor([0.8, 1.7], requires_grad=True)
    total = w(losses)
    expected = 1.0 * (math.exp(-0.5) * 0.8 + 0.5) + 3.0 * (math.exp(0.25) * 1.7 - 0.25)
    assert math.isclose(total.item(), expected, rel_tol=1e-6)
    total.backward()  # d total / d L_t = w_t exp(-s_t): dropping w_t breaks this
    assert np.allclose(losses.grad.numpy(), [math.exp(-0.5), 3.0 * math.exp(0.25)], rtol=1e-6)
    # with different weights the optimum of each s_t is still log L_t (w_t scales the whole term)
    assert np.allclose(_optimise_s((0.5, 2.0), weights=(1.0, 3.0)).s.detach().numpy(), np.log([0.5, 2.0]), atol=0.02)


def test_the_log_variance_is_clamped_to_plus_minus_four():
    w = _optimise_s((1e3, 1e-4), steps=1500)
    assert np.allclose(w.s.detach().numpy(), [4.0, -4.0])
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([9.0, -9.0]))
    total = w(torch.tensor([1.0, 1.0]))
    assert math.isclose(total.item(), math.exp(-4) + 4 + math.exp(4) - 4, rel_tol=1e-6)
    total.backward()
    assert torch.all(w.log_var.grad == 0)  # beyond the clamp nothing moves


def test_a_noisier_task_gets_a_larger_sigma():
    """Two regression tasks on the same inputs, one with 10x the label noise, trained jointly
    with the weighting: sigma_noisy > sigma_clean and each s_t lands near log of its MSE."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 5, generator=g)
    y_clean = x @ torch.tensor([1.0, -1.0, 0.5, 0.0, 0.0]) + 0.1 * torch.randn(4000, generator=g)
    y_noisy = x @ torch.tensor([0.0, 0.5, 1.0, -1.0, 0.0]) + 1.0 * torch.randn(4000, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2)
    weighting = UncertaintyWeighting([1.0, 1.0])
    opt = torch.optim.Adam([*model.parameters(), weighting.log_var], lr=0.02)
    for _ in range(1500):
        opt.zero_grad()
        out = model(x)
        losses = torch.stack([masked_loss(REG, out[:, 0], y_clean), masked_loss(REG, out[:, 1], y_noisy)])
        weighting(losses).backward()
        opt.step()
    sigma = weighting.sigma().detach().numpy()
    assert sigma[1] > 5 * sigma[0]
    clamped_log_mse = np.clip(np.log(losses.detach().numpy()), -4, 4)  # the clean MSE ~0.01 sits below e^-4
    assert np.allclose(weighting.s.detach().numpy(), clamped_log_mse, atol=0.1)


def test_dwa_favours_the_task_whose_loss_falls_slowest():
    dwa = DWAWeighting([1.0, 1.0])
    dwa.end_epoch(torch.tensor([1.0, 1.0]))
    assert torch.allclose(dwa.lam, torch.ones(2))  # one epoch: no ratio yet
    dwa.end_epoch(torch.tensor([0.5, 0.95]))
    assert dwa.lam[1] > dwa.lam[0] and math.isclose(dwa.lam.sum().item(), 2.0, rel_tol=1e-6)


def test_gradnorm_lowers_the_weight_of_the_task_with_the_larger_gradient():
    torch.manual_seed(0)
    shared = torch.nn.Linear(4, 4)
    heads = torch.nn.Linear(4, 2)
    x = torch.randn(256, 4)
    gn = GradNormWeighting([1.0, 1.0])
    for _ in range(50):
        out = heads(shared(x))
        losses = torch.stack([(out[:, 0] - 1).pow(2).mean(), 10 * (out[:, 1] + 1).pow(2).mean()])
        gn.rebalance(losses, list(shared.parameters()))
    assert gn.omega[1] < gn.omega[0] and math.isclose(gn.omega.sum().item(), 2.0, rel_tol=1e-5)


def test_an_unknown_weighting_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="uncertainty, fixed, dwa, gradnorm"):
        make_weighting("kendall", [BINARY])


def test_the_declared_losses_are_the_ones_applied():
    torch.manual_seed(0)
    z, y = torch.randn(50), (torch.rand(50) < 0.3).float()
    p = torch.sigmoid(z.double())
    pt = torch.where(y.bool(), p, 1 - p)
    hand = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    assert torch.isclose(masked_loss(TaskSpec("f", "binary", loss="focal"), z, y).double(), hand, rtol=1e-5)
    assert masked_loss(TaskSpec("f", "binary", loss="focal"), z, y) < masked_loss(BINARY, z, y)  # easy examples down-weighted
    r, t = torch.randn(50) * 3, torch.randn(50)
    err = (r - t).abs()
    huber = torch.where(err < 1, 0.5 * err ** 2, err - 0.5).mean()
    assert torch.isclose(masked_loss(TaskSpec("h", "regression", loss="huber"), r, t), huber, rtol=1e-5)
    assert torch.isclose(masked_loss(REG, r, t), ((r - t) ** 2).mean(), rtol=1e-5)
    assert torch.isfinite(masked_loss(TaskSpec("f", "binary", loss="focal"), torch.tensor([80.0, -80.0]), torch.tensor([0.0, 1.0])))


def test_a_loss_that_does_not_fit_the_task_type_is_refused():
    with pytest.raises(ValueError, match="takes the loss bce or focal"):
        TaskSpec("t", "binary", loss="huber")
