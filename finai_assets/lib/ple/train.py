"""The training loop of the teacher (and of the shared-bottom baseline), kept apart from the model.

AdamW; linear warmup then cosine decay, per step; gradient clipping; masked task losses combined
by the configured weighting (+ the experts' auxiliary loss); after every epoch the validation
split is scored and the checkpoint with the best composite of per-type validation metrics is
kept (avg AUC, NDCG@3, 1 − normalised MAE; the validation loss is not a valid
criterion when task types peak at different epochs); early stopping on that composite. Seeds
fixed; `device: auto` takes CUDA when present; torch threads = cores ÷ concurrent runs.

`train_ple` is the generic API: any feature matrix + task specs, with or without a feature
schema; only the experts whose inputs exist are built.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from finai_assets.lib.ple.losses import DWAWeighting, GradNormWeighting, UncertaintyWeighting, make_weighting, masked_loss
from finai_assets.lib.ple.metrics import composite, task_metrics
from finai_assets.lib.ple.config import PLEConfig, TrainConfig, training_threads
from finai_assets.lib.ple.model import PLE
from finai_assets.lib.ple.tasks import TaskSpec


PRIMARY_METRIC = {"binary": "auc", "multiclass": "f1_macro", "regression": "r2"}


@dataclasses.dataclass
class Split:
    """Features [N, F] float32 and per-task targets [N] float (NaN = null label)."""

    X: np.ndarray
    targets: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        assert self.X.ndim == 2, self.X.shape
        for t, y in self.targets.items():
            assert y.shape == (self.X.shape[0],), (t, y.shape, self.X.shape)

    def rows(self, index: np.ndarray) -> Split:
        return Split(self.X[index], {t: y[index] for t, y in self.targets.items()})


@dataclasses.dataclass
class TrainResult:
    model: nn.Module  # best checkpoint's weights loaded, in eval mode
    target_scaling: dict[str, tuple[float, float]]  # regression task -> (mean, std) of train labels
    history: list[dict]  # one row per epoch
    best_epoch: int
    val_metrics: dict[str, dict[str, float]]
    device: str
    threads: int
    train_rows: int
    seconds: float


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is visible; use device 'auto' or 'cpu'")
    return torch.device(device)


def _shared_parameters(model: nn.Module):
    """The parameters every task shares (GradNorm's W): the layer-0 shared experts of a PLE,
    the bottom of a shared-bottom model."""
    return model.layers[0].shared.parameters() if isinstance(model, PLE) else model.bottom.parameters()


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return 0.1 + 0.9 * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _targets_tensor(split: Split, specs: Sequence[TaskSpec], scaling: Mapping[str, tuple[float, float]]) -> torch.Tensor:
    cols = []
    for s in specs:
        y = split.targets[s.name].astype(np.float64)
        if s.name in scaling:
            mean, std = scaling[s.name]
            y = (y - mean) / std
        cols.append(y)
    return torch.tensor(np.stack(cols, 1), dtype=torch.float32)


def predict(model: nn.Module, X: np.ndarray, specs: Sequence[TaskSpec], target_scaling: Mapping[str, tuple[float, float]],
            batch_size: int = 8192) -> dict[str, np.ndarray]:
    """Probabilities (binary [N], multiclass [N, K]) and values in label units (regression [N])."""
    device = next(model.parameters()).device
    model.eval()
    out: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            logits = model(torch.as_tensor(X[start:start + batch_size], dtype=torch.float32, device=device)).logits
            for s in specs:
                z = logits[s.name].float()
                if s.type == "binary":
                    v = torch.sigmoid(z)
                elif s.type == "multiclass":
                    v = torch.softmax(z, -1)
                else:
                    mean, std = target_scaling[s.name]
                    v = z * std + mean
                out[s.name].append(v.cpu().numpy().astype(np.float64))
    width = {s.name: (0, s.classes) if s.type == "multiclass" else (0,) for s in specs}
    return {t: np.concatenate(v) if v else np.zeros(width[t]) for t, v in out.items()}


def evaluate(model: nn.Module, split: Split, specs: Sequence[TaskSpec], target_scaling) -> dict[str, dict[str, float]]:
    preds = predict(model, split.X, specs, target_scaling)
    return {s.name: task_metrics(s, split.targets[s.name], preds[s.name]) for s in specs}


def fit(model: nn.Module, train: Split, val: Split, specs: Sequence[TaskSpec], config: TrainConfig = TrainConfig(),
        log: Callable[[str], None] = lambda _: None) -> TrainResult:
    """Train with `training_threads(config.threads)` torch threads, then give the process its
    previous thread count back (the next step in it may be a one-thread light step)."""
    previous, threads = torch.get_num_threads(), training_threads(config.threads)
    torch.set_num_threads(threads)
    try:
        return _fit(model, train, val, specs, config, log, threads)
    finally:
        torch.set_num_threads(previous)


def _fit(model: nn.Module, train: Split, val: Split, specs: Sequence[TaskSpec], config: TrainConfig,
         log: Callable[[str], None], threads: int) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    if config.max_train_rows is not None and train.X.shape[0] > config.max_train_rows:
        keep = np.sort(np.random.default_rng(config.seed).choice(train.X.shape[0], config.max_train_rows, replace=False))
        train = train.rows(keep)
    scaling = {}
    for s in specs:
        if s.type == "regression":
            y = train.targets[s.name][~np.isnan(train.targets[s.name])]
            if y.size < 2:
                raise ValueError(f"regression task {s.name!r} has {y.size} labelled train rows; it needs at least 2")
            scaling[s.name] = (float(y.mean()), float(y.std()) or 1.0)
    X = torch.tensor(train.X, dtype=torch.float32)
    Y = _targets_tensor(train, specs, scaling)
    model.to(device)
    weighting = make_weighting(config.loss_weighting, specs).to(device)
    params = list(model.parameters()) + ([weighting.log_var] if isinstance(weighting, UncertaintyWeighting) else [])
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(X.shape[0] / config.batch_size))
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: _lr_factor(k, config.warmup_epochs * steps_per_epoch, total))
    shared = list(_shared_parameters(model)) if isinstance(weighting, GradNormWeighting) else []
    generator = torch.Generator().manual_seed(config.seed)
    history, best, best_metrics, best_score, best_epoch, since_best, step = [], None, {}, -math.inf, 0, 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(X.shape[0], generator=generator)
        sums = torch.zeros(len(specs), dtype=torch.float64)
        for start in range(0, X.shape[0], config.batch_size):
            idx = order[start:start + config.batch_size]
            if idx.numel() < 2:  # batch norm needs two rows; a lone remainder row waits for the next epoch
                continue
            xb, yb = X[idx].to(device), Y[idx].to(device)
            out = model(xb)
            losses = torch.stack([masked_loss(s, out.logits[s.name], yb[:, i]) for i, s in enumerate(specs)])
            if shared and step % config.gradnorm_interval == 0:
                weighting.rebalance(losses, shared)
            loss = weighting(losses) + config.aux_weight * out.aux_loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch} step {step}: the training loss is {loss.item()} "
                                         f"(task losses {dict(zip([s.name for s in specs], losses.tolist()))}); lower lr or check the features for extreme values")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, config.clip_norm)
            optimizer.step()
            schedule.step()
            sums += losses.detach().cpu().double() * idx.numel()
            step += 1
        mean_losses = sums / X.shape[0]
        if isinstance(weighting, DWAWeighting):
            weighting.end_epoch(mean_losses)
        val_metrics = evaluate(model, val, specs, scaling)
        score = composite(val_metrics, specs)
        row = {"epoch": epoch, "lr": schedule.get_last_lr()[0], "val_composite": score,
               **{f"val/{s.name}": float(val_metrics[s.name].get(PRIMARY_METRIC[s.type], math.nan)) for s in specs},
               **{f"train_loss/{s.name}": float(v) for s, v in zip(specs, mean_losses)},
               **({f"sigma/{s.name}": float(v) for s, v in zip(specs, weighting.sigma().detach().cpu())} if isinstance(weighting, UncertaintyWeighting) else {})}
        history.append(row)
        improved = score > best_score
        if improved:
            best, best_metrics, best_score, best_epoch, since_best = copy.deepcopy(model.state_dict()), val_metrics, score, epoch, 0
        else:
            since_best += 1
        log(f"epoch {epoch}/{config.epochs}: train loss {float(mean_losses.sum()):.4f}, val composite {score:.4f}"
            f"{' (best)' if improved else ''}, {time.perf_counter() - started:.1f} s")
        if since_best >= config.patience:
            log(f"early stop: no better validation composite for {config.patience} epochs (best epoch {best_epoch})")
            break
    model.load_state_dict(best)
    model.eval()
    return TrainResult(model, scaling, history, best_epoch, best_metrics, str(device), threads,
                       X.shape[0], time.perf_counter() - started)


def train_ple(X: np.ndarray, columns: Sequence[str], targets: Mapping[str, np.ndarray], split: np.ndarray,
              specs: Sequence[TaskSpec], *, schema: Mapping[str, Sequence[str]] | None = None,
              model_config: PLEConfig = PLEConfig(), train_config: TrainConfig = TrainConfig(),
              log: Callable[[str], None] = lambda _: None) -> TrainResult:
    """The generic API: a PLE on any feature matrix and task specs. `split` holds "train" / "val"
    (other values are ignored); without a schema every expert is offered every column and only
    those that can read them are built."""
    missing = [s.name for s in specs if s.name not in targets]
    if missing:
        raise ValueError(f"no targets for tasks {missing}")
    assert X.shape == (split.shape[0], len(columns)), (X.shape, split.shape, len(columns))
    torch.manual_seed(train_config.seed)
    model = PLE(columns, specs, model_config, schema)
    log(f"experts built: {', '.join(model.routing)}")
    data = Split(np.asarray(X, dtype=np.float32), {s.name: np.asarray(targets[s.name], dtype=np.float64) for s in specs})
    return fit(model, data.rows(split == "train"), data.rows(split == "val"), specs, train_config, log)
