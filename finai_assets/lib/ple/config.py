"""Configuration of the teacher's model and training loop, importable without torch (the Dagster
launchpad config takes its defaults from here)."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

from finai_assets.lib.ple.experts import EXPERTS


@dataclasses.dataclass(frozen=True)
class PLEConfig:
    expert_dim: int = 64
    extraction_layers: int = 2
    task_experts: int = 1  # task-specific experts per task and layer
    shared_mlp_experts: int = 2  # homogeneous shared experts of layers >= 1
    gate: Literal["softmax", "sigmoid"] = "softmax"
    tower_dims: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    experts: tuple[str, ...] = tuple(EXPERTS)

    def __post_init__(self) -> None:
        assert self.extraction_layers >= 1 and self.task_experts >= 1 and self.shared_mlp_experts >= 1
        assert self.gate in ("softmax", "sigmoid"), self.gate
        unknown = set(self.experts) - set(EXPERTS)
        assert not unknown, f"unknown experts {sorted(unknown)}"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    clip_norm: float = 5.0
    patience: int = 3  # epochs without a better validation composite
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    max_train_rows: int | None = None  # a seeded subset of train rows when set
    threads: int | None = None  # None: every core (training runs one step at a time, in the `heavy` pool)
    loss_weighting: str = "uncertainty"  # uncertainty | fixed | gradnorm | dwa
    aux_weight: float = 1.0  # the experts' auxiliary losses
    gradnorm_interval: int = 10  # steps between GradNorm rebalances


def training_threads(requested: int | None) -> int:
    """Threads for a training step: as requested, else every core. Training steps sit in the
    `heavy` pool, which runs one at a time; every other step keeps one thread, so the machine is
    never oversubscribed (an oversubscribed OpenMP pool is an order of magnitude slower)."""
    return requested or os.cpu_count() or 1
