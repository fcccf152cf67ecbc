"""Small PNG figures for asset metadata (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

import base64
import io

import polars as pl


def png_markdown(fig, alt: str) -> str:
    """A figure as a base64 PNG inside markdown (the way Dagster metadata shows images)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def recipe_figure(acquisition: pl.DataFrame, segment: pl.DataFrame, group_rates: pl.DataFrame,
                  band: tuple[float, float] | None, segment_band: tuple[float, float], title: str) -> str:
    """Monthly acquisition / segment-move rates against their bands, and the true base rate of
    'acquires anything' per protected group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    months = acquisition["fecha_dato"].to_list()
    for group in [c for c in acquisition.columns if c not in ("fecha_dato", "customers")]:
        left.plot(months, acquisition[group].to_list(), marker=".", label=f"acquire {group}")
    left.plot(segment["fecha_dato"].to_list(), segment["rate"].to_list(), "k--", label="segment moves")
    left.axhspan(*segment_band, color="grey", alpha=0.15, label=f"segment band {segment_band}")
    if band is not None:
        left.axhspan(*band, color="green", alpha=0.15, label=f"acquisition band {band}")
    left.set(title="monthly rates", ylabel="share of customers")
    left.tick_params(axis="x", rotation=45)
    left.legend(fontsize=7)
    labels = [f"{a}:{g}" for a, g in group_rates.select("attribute", "group").iter_rows()]
    right.barh(labels, group_rates["rate"].to_list(), color="tab:blue", label="true base rate")
    right.scatter(group_rates["realised_rate"].to_list(), labels, color="k", s=8, label="realised")
    right.set(title="post-cutoff 'acquires anything' by protected group", xlabel="rate")
    right.tick_params(axis="y", labelsize=7)
    right.legend(fontsize=7)
    fig.suptitle(title)
    return png_markdown(fig, title)
