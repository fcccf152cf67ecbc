"""PLE: Progressive Layered Extraction (Tang et al., RecSys 2020) with heterogeneous experts.

    x [B, F] ─┬─ route columns ─> 7 shared experts (layer 0: DeepFM, Temporal, HGCN, PersLay,
              │                                     Causal, LightGCN, Optimal Transport)
              └─ full row ──────> task-specific MLP experts (per task)
    each extraction layer l (a CGC):
        task t:  h_t = Σ_k g_tk(in_t) · e_k   over [experts of t ‖ shared experts]
        shared:  h_s = Σ_k g_sk(in_s) · e_k   over all experts (feeds layer l+1; not after the last)
        layers l >= 1: shared and task experts are MLPs over h_s and h_t of the layer below
    task t: tower MLP(h_t) -> head (1 logit | K logits | 1 value)

Gates are softmax (default) or sigmoid normalised by their sum, and look at the layer's input,
as in the paper. The model returns the logits per task, layer-0 task gate weights (for the
gate heatmap) and the experts' auxiliary loss (NOTEARS and reconstruction of the Causal expert).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from finai_assets.lib.ple.config import PLEConfig
from finai_assets.lib.ple.experts import build_expert, expert_class
from finai_assets.lib.ple.tasks import TaskSpec


@dataclasses.dataclass
class PLEOutput:
    logits: dict[str, Tensor]  # binary/regression [B], multiclass [B, K]
    gates: dict[str, Tensor]  # layer-0 gate of each task [B, task_experts + shared experts]
    aux_loss: Tensor  # scalar


def route(columns: Sequence[str], experts: Sequence[str], schema: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """expert -> the columns it reads. With a schema (column -> experts, the feature table's
    `schema`), each expert gets the columns routed to it; without one (the generic API), each
    expert is offered every column. Experts that cannot read what they get are left out."""
    routed = {}
    for name in experts:
        mine = [c for c in columns if name in schema.get(c, ())] if schema is not None else list(columns)
        if mine and expert_class(name).accepts(mine):
            routed[name] = mine
    if not routed:
        raise ValueError(f"no expert of {list(experts)} can read the {len(columns)} feature columns: check the feature schema routing")
    return routed


def mlp(dims: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> SiLU -> Dropout blocks."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.SiLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class Gate(nn.Module):
    """Mixing weights over n experts from the gate's input: softmax, or sigmoid / sum."""

    def __init__(self, in_dim: int, n_experts: int, kind: str) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, n_experts)
        self.kind = kind

    def forward(self, h: Tensor) -> Tensor:
        logits = self.proj(h)
        if self.kind == "softmax":
            return logits.softmax(-1)
        s = torch.sigmoid(logits)
        return s / s.sum(-1, keepdim=True)


def mix(gate: Tensor, expert_outs: Tensor) -> Tensor:
    """[B, n] x [B, n, d] -> [B, d]"""
    assert gate.shape == expert_outs.shape[:2], (gate.shape, expert_outs.shape)
    return torch.einsum("bn,bnd->bd", gate, expert_outs)


class ExtractionLayer(nn.Module):
    """One CGC: task-specific experts per task, shared experts, and their gates."""

    def __init__(self, tasks: Sequence[str], task_in: int, shared: nn.ModuleDict, shared_in_dim: int,
                 config: PLEConfig, last: bool, shared_index: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        d, k = config.expert_dim, config.task_experts
        self.tasks = list(tasks)
        self.shared = shared  # layer 0: heterogeneous experts over routed columns; else MLPs over h_s
        self.shared_index = shared_index  # layer 0: expert -> column indices of x
        for name, index in (shared_index or {}).items():
            self.register_buffer(f"index_{name}", index, persistent=False)
        self.task_experts = nn.ModuleDict({t: nn.ModuleList(mlp([task_in, d], config.dropout) for _ in range(k)) for t in tasks})
        n_shared = len(shared)
        self.task_gates = nn.ModuleDict({t: Gate(task_in, k + n_shared, config.gate) for t in tasks})
        self.shared_gate = None if last else Gate(shared_in_dim, k * len(tasks) + n_shared, config.gate)

    def forward(self, task_in: Mapping[str, Tensor], shared_in: Tensor, shared_gate_in: Tensor | None = None
                ) -> tuple[dict[str, Tensor], Tensor | None, dict[str, Tensor]]:
        if self.shared_index is not None:
            shared_outs = [e(shared_in[:, getattr(self, f"index_{n}")]) for n, e in self.shared.items()]
        else:
            shared_outs = [e(shared_in) for e in self.shared.values()]
        shared_stack = torch.stack(shared_outs, 1)  # [B, S, d]
        outs, gates, all_task = {}, {}, []
        for t in self.tasks:
            own = torch.stack([e(task_in[t]) for e in self.task_experts[t]], 1)  # [B, k, d]
            all_task.append(own)
            g = self.task_gates[t](task_in[t])
            outs[t], gates[t] = mix(g, torch.cat([own, shared_stack], 1)), g
        shared_out = None
        if self.shared_gate is not None:
            everything = torch.cat([*all_task, shared_stack], 1)
            shared_out = mix(self.shared_gate(shared_in if shared_gate_in is None else shared_gate_in), everything)
        return outs, shared_out, gates


class PLE(nn.Module):
    def __init__(self, columns: Sequence[str], tasks: Sequence[TaskSpec], config: PLEConfig = PLEConfig(),
                 schema: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__()
        self.columns, self.specs, self.config = list(columns), list(tasks), config
        names = [s.name for s in self.specs]
        assert len(set(names)) == len(names), f"duplicate task names {names}"
        d, n_in = config.expert_dim, len(self.columns)
        self.input_norm = nn.BatchNorm1d(n_in)
        self.routing = route(self.columns, config.experts, schema)
        position = {c: i for i, c in enumerate(self.columns)}
        index = {e: torch.tensor([position[c] for c in cols], dtype=torch.long) for e, cols in self.routing.items()}
        experts0 = nn.ModuleDict({e: build_expert(e, cols, d) for e, cols in self.routing.items()})
        layers = [ExtractionLayer(names, n_in, experts0, n_in, config, last=config.extraction_layers == 1, shared_index=index)]
        for layer in range(1, config.extraction_layers):
            shared = nn.ModuleDict({f"mlp{i}": mlp([d, d], config.dropout) for i in range(config.shared_mlp_experts)})
            layers.append(ExtractionLayer(names, d, shared, d, config, last=layer == config.extraction_layers - 1))
        self.layers = nn.ModuleList(layers)
        self.towers = nn.ModuleDict({s.name: mlp([d, *config.tower_dims], config.dropout) for s in self.specs})
        last = config.tower_dims[-1] if config.tower_dims else d
        self.heads = nn.ModuleDict({s.name: nn.Linear(last, s.out_dim) for s in self.specs})

    @property
    def expert_names(self) -> list[str]:
        """Layer-0 gate columns: the task's own experts, then the shared experts in order."""
        return [f"task_expert_{i}" for i in range(self.config.task_experts)] + list(self.routing)

    def forward(self, x: Tensor) -> PLEOutput:
        B = x.shape[0]
        assert x.shape == (B, len(self.columns)), f"expected [B, {len(self.columns)}] features, got {tuple(x.shape)}"
        z = self.input_norm(x)  # unscaled columns (sequence, diagram) reach task experts and gates standardised
        task_in = {s.name: z for s in self.specs}
        shared_in, gates0 = x, None  # layer-0 shared experts read the raw columns routed to them
        for i, layer in enumerate(self.layers):
            task_in, shared_out, gates = layer(task_in, shared_in, z if i == 0 else None)
            gates0 = gates if gates0 is None else gates0
            shared_in = shared_out
        logits = {}
        for s in self.specs:
            out = self.heads[s.name](self.towers[s.name](task_in[s.name]))
            logits[s.name] = out if s.type == "multiclass" else out.squeeze(-1)
        aux = sum((e.aux_loss() for e in self.layers[0].shared.values()), x.new_zeros(()))
        return PLEOutput(logits, gates0, aux)

    def parameters_per_expert(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        out = {e: count(m) for e, m in self.layers[0].shared.items()}
        out["task_experts_and_gates"] = sum(count(layer.task_experts) + count(layer.task_gates) for layer in self.layers)
        out["upper_shared_layers"] = sum(count(layer.shared) + count(layer.shared_gate or nn.Module()) for layer in self.layers[1:]) + (
            count(self.layers[0].shared_gate) if self.layers[0].shared_gate is not None else 0)
        out["towers_and_heads"] = count(self.towers) + count(self.heads)
        return out


class SharedBottom(nn.Module):
    """The baseline: one shared MLP over all features, then the same towers and heads."""

    def __init__(self, columns: Sequence[str], tasks: Sequence[TaskSpec], hidden: tuple[int, ...] = (128, 64),
                 tower_dims: tuple[int, ...] = (64, 32), dropout: float = 0.1) -> None:
        super().__init__()
        self.columns, self.specs = list(columns), list(tasks)
        self.bottom = mlp([len(self.columns), *hidden], dropout)
        self.towers = nn.ModuleDict({s.name: mlp([hidden[-1], *tower_dims], dropout) for s in self.specs})
        self.heads = nn.ModuleDict({s.name: nn.Linear(tower_dims[-1], s.out_dim) for s in self.specs})

    def forward(self, x: Tensor) -> PLEOutput:
        assert x.dim() == 2 and x.shape[1] == len(self.columns), f"expected [B, {len(self.columns)}], got {tuple(x.shape)}"
        h = self.bottom(x)
        logits = {}
        for s in self.specs:
            out = self.heads[s.name](self.towers[s.name](h))
            logits[s.name] = out if s.type == "multiclass" else out.squeeze(-1)
        return PLEOutput(logits, {}, x.new_zeros(()))
