"""Masked per-task losses and how they are weighted into one training loss.

A null label (NaN) is masked out: it contributes no loss and no gradient. Each task uses the loss
its registry entry declares: binary BCE or focal (γ = 2, no α: no hidden class weight),
multiclass cross-entropy, regression MSE or Huber (δ = 1). Regression targets arrive
standardised (train mean/std), so their losses are on the same scale as the others.

Uncertainty weighting (Kendall et al., in the "s = log σ²" form), the default:

    L_total = Σ_t w_t · (exp(−s_t) · L_t + s_t),   s_t = clamp(log σ_t², −4, 4)

The `+ s_t` regulariser keeps σ_t from growing without bound; its optimum is s_t = log L_t, so a
noisier task (larger L_t) gets a larger σ_t and a smaller share. w_t (the task's configured
weight) multiplies the whole term. A known broken variant has `+ s/2`, no w_t and no clamps
(docs/defects.md#uncertainty-weighting): the tests pin each of the three.
Options: fixed (Σ w_t L_t), GradNorm (Chen et al. 2018, α = 1.5) and DWA (Liu et al. 2019, T = 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finai_assets.lib.ple.tasks import TaskSpec

LOG_VAR_CLAMP = 4.0
FOCAL_GAMMA = 2.0


def focal_loss(logits: Tensor, target: Tensor, gamma: float = FOCAL_GAMMA) -> Tensor:
    """mean of −(1 − p_t)^γ log p_t on logits (log p_t by logsigmoid: stable for any logit)."""
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    log_pt = target * log_p + (1 - target) * log_not_p
    return (-(1 - log_pt.exp()) ** gamma * log_pt).mean()


def masked_loss(spec: TaskSpec, logits: Tensor, target: Tensor) -> Tensor:
    """Mean loss over the rows whose label is not null; an exact zero (still in the graph) when
    the batch has none."""
    assert target.shape[0] == logits.shape[0], (logits.shape, target.shape)
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    z, y = logits[mask], target[mask]
    kind = spec.loss_name
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(z, y)
    if kind == "focal":
        return focal_loss(z, y)
    if kind == "cross_entropy":
        assert logits.shape[1:] == (spec.classes,), (spec.name, logits.shape)
        return F.cross_entropy(z, y.long())
    if kind == "huber":
        return F.huber_loss(z, y, delta=1.0)
    return F.mse_loss(z, y)


class FixedWeighting(nn.Module):
    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor(list(weights), dtype=torch.float32))

    def forward(self, losses: Tensor) -> Tensor:
        assert losses.shape == self.w.shape, (losses.shape, self.w.shape)
        return (self.w * losses).sum()


class UncertaintyWeighting(nn.Module):
    def __init__(self, weights: Sequence[float], clamp: float = LOG_VAR_CLAMP) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor(list(weights), dtype=torch.float32))
        self.log_var = nn.Parameter(torch.zeros(len(weights)))  # s_t = log σ_t², init 0
        self.clamp = clamp

    @property
    def s(self) -> Tensor:
        return self.log_var.clamp(-self.clamp, self.clamp)

    def sigma(self) -> Tensor:
        return torch.exp(0.5 * self.s)

    def forward(self, losses: Tensor) -> Tensor:
        assert losses.shape == self.w.shape, (losses.shape, self.w.shape)
        s = self.s
        return (self.w * (torch.exp(-s) * losses + s)).sum()


class DWAWeighting(nn.Module):
    """λ_t = T · softmax_t(r_t / temperature), r_t = L_t(e−1) / L_t(e−2), from epoch means; λ = 1
    for the first two epochs."""

    def __init__(self, weights: Sequence[float], temperature: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor(list(weights), dtype=torch.float32))
        self.register_buffer("lam", torch.ones(len(weights)))
        self.temperature = temperature
        self.history: list[Tensor] = []

    def end_epoch(self, mean_losses: Tensor) -> None:
        self.history = [*self.history[-1:], mean_losses.detach().float().cpu()]
        if len(self.history) == 2:
            r = self.history[1] / self.history[0].clamp_min(1e-12)
            self.lam = (len(r) * torch.softmax(r / self.temperature, 0)).to(self.lam.device)

    def forward(self, losses: Tensor) -> Tensor:
        return (self.w * self.lam * losses).sum()


class GradNormWeighting(nn.Module):
    """Task weights ω_t (sum = T) learnt so that each task's gradient norm on the shared
    parameters tracks mean_norm · (relative inverse training rate)^α."""

    def __init__(self, weights: Sequence[float], alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor(list(weights), dtype=torch.float32))
        self.omega = nn.Parameter(torch.ones(len(weights)))
        self.alpha, self.lr = alpha, lr
        self.initial: Tensor | None = None

    def forward(self, losses: Tensor) -> Tensor:
        return (self.w * self.omega.detach() * losses).sum()

    def rebalance(self, losses: Tensor, shared: Sequence[nn.Parameter]) -> None:
        """One GradNorm step on ω from this batch's (undetached) task losses."""
        if self.initial is None:
            self.initial = losses.detach().clamp_min(1e-12)
        norms = torch.stack([
            torch.cat([g.flatten() for g in torch.autograd.grad(self.omega[t] * losses[t], shared, retain_graph=True, create_graph=True, allow_unused=True) if g is not None]).norm()
            for t in range(len(losses))
        ])
        ratio = losses.detach() / self.initial
        target = (norms.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        grad = torch.autograd.grad((norms - target).abs().sum(), self.omega, retain_graph=True)[0]
        with torch.no_grad():
            self.omega -= self.lr * grad
            self.omega.clamp_(min=1e-3)
            self.omega *= len(losses) / self.omega.sum()


WEIGHTINGS = {"uncertainty": UncertaintyWeighting, "fixed": FixedWeighting, "dwa": DWAWeighting, "gradnorm": GradNormWeighting}


def make_weighting(kind: str, specs: Sequence[TaskSpec]) -> nn.Module:
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {kind!r}; choose one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[kind]([s.weight for s in specs])
