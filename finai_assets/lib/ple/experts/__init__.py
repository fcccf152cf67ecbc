"""The seven shared experts of the PLE teacher, one file each, behind one contract:

    class SomeExpert(nn.Module):
        def __init__(self, columns: Sequence[str], out_dim: int = 64, *, <typed options>) -> None
        def forward(self, x: Tensor) -> Tensor      # x [B, len(columns)] float32, columns in the
                                                    # given order -> [B, out_dim]
        def aux_loss(self) -> Tensor                # scalar auxiliary loss of the last forward
                                                    # (0 when the expert has none)
        @staticmethod
        def accepts(columns: Sequence[str]) -> bool # whether the columns hold what it needs

Experts parse the structure they need from the column names of the feature table
(`seq_{slot:02d}_{field}`, `mcc_share_{mcc}`, `hold_{product column}`, `pd_{i:02d}_{birth,death,mask}`,
...); standardised columns arrive as the feature table holds them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

# expert name -> "module:Class" (imported lazily: torch loads only when a model is built)
EXPERTS: dict[str, str] = {
    "deepfm": "deepfm:DeepFMExpert",
    "temporal": "temporal:TemporalExpert",
    "hgcn": "hgcn:HGCNExpert",
    "perslay": "perslay:PersLayExpert",
    "causal": "causal:CausalExpert",
    "lightgcn": "lightgcn:LightGCNExpert",
    "optimal_transport": "optimal_transport:OptimalTransportExpert",
}


def expert_class(name: str) -> type:
    if name not in EXPERTS:
        raise ValueError(f"unknown expert {name!r}; known: {', '.join(EXPERTS)}")
    module, cls = EXPERTS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def build_expert(name: str, columns: Sequence[str], out_dim: int, **options):
    cls = expert_class(name)
    if not cls.accepts(columns):
        raise ValueError(f"expert {name!r} cannot read the columns routed to it ({len(columns)} columns, e.g. {list(columns)[:3]})")
    return cls(columns, out_dim, **options)
