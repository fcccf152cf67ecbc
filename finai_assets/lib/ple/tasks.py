"""Task specs: what the model, the losses and the metrics need to know about each task."""

from __future__ import annotations

import dataclasses
from typing import Literal

TaskType = Literal["binary", "multiclass", "regression"]
# the losses each type may declare (the registry's `loss`); the first is the default
LOSSES: dict[str, tuple[str, ...]] = {"binary": ("bce", "focal"), "multiclass": ("cross_entropy",), "regression": ("mse", "huber")}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    type: TaskType
    classes: int = 1  # K for multiclass; 1 otherwise (one logit or one value)
    group: str = "default"
    weight: float = 1.0  # w_t of the loss weighting
    loss: str = ""  # one of LOSSES[type]; "" = the type's default

    def __post_init__(self) -> None:
        if self.type == "multiclass" and self.classes < 2:
            raise ValueError(f"task {self.name!r}: a multiclass task needs classes >= 2, got {self.classes}")
        if self.type != "multiclass" and self.classes != 1:
            raise ValueError(f"task {self.name!r}: a {self.type} task has one output, got classes={self.classes}")
        if self.loss and self.loss not in LOSSES[self.type]:
            raise ValueError(f"task {self.name!r}: a {self.type} task takes the loss {' or '.join(LOSSES[self.type])}, got {self.loss!r}")
        if self.weight <= 0:
            raise ValueError(f"task {self.name!r}: the loss weight must be > 0, got {self.weight}")

    @property
    def loss_name(self) -> str:
        return self.loss or LOSSES[self.type][0]

    @property
    def out_dim(self) -> int:
        return self.classes
