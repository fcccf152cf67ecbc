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


def training_curves_figure(history: pl.DataFrame, title: str) -> str:
    """Per-task training losses, the validation composite, and the learnt uncertainty sigmas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train_loss/", "train loss"), ("sigma/", "uncertainty sigma")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    epochs = history["epoch"].to_list()
    for ax, (prefix, label) in zip(axes, panels):
        for c in [c for c in history.columns if c.startswith(prefix)]:
            ax.plot(epochs, history[c].to_list(), marker=".", label=c[len(prefix):])
        ax.set(title=label, xlabel="epoch")
        ax.legend(fontsize=6)
    axes[2].plot(epochs, history["val_composite"].to_list(), "k-o")
    axes[2].set(title="validation composite (selection)", xlabel="epoch")
    fig.suptitle(title)
    return png_markdown(fig, "training curves")


def gate_heatmap_figure(gates: pl.DataFrame, title: str) -> str:
    """Mean layer-0 gate weight, task x expert."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experts = [c for c in gates.columns if c != "task"]
    values = gates.select(experts).to_numpy()
    fig, ax = plt.subplots(figsize=(1.1 * len(experts) + 3, 0.4 * gates.height + 2))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=max(float(values.max()), 1e-9), aspect="auto")
    ax.set_xticks(range(len(experts)), experts, rotation=45, ha="right")
    ax.set_yticks(range(gates.height), gates["task"].to_list())
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return png_markdown(fig, "gate weights")


def fairness_figure(groups_table: pl.DataFrame, task: str, title: str, operating_point: str = "top_k") -> str:
    """Per protected attribute, the selection rate of each group for every model at
    `operating_point` and for the labels, with bootstrap CI error bars; groups below the
    minimum size are hatched and starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = groups_table.filter(
        (pl.col("task") == task) & ((pl.col("operating_point") == operating_point) | (pl.col("model") == "labels"))
    )
    if rows.filter(pl.col("model") != "labels").is_empty():
        raise ValueError(f"groups_table has no model rows for task {task!r} at operating point {operating_point!r}")
    attributes = rows["attribute"].unique(maintain_order=True).to_list()
    models = rows["model"].unique(maintain_order=True).to_list()
    series = [*(m for m in models if m != "labels"), *(["labels"] if "labels" in models else [])]  # no labels before outcomes
    fig, axes = plt.subplots(1, len(attributes), figsize=(4 * len(attributes), 4), squeeze=False)
    width = 0.8 / len(series)
    for ax, attribute in zip(axes[0], attributes):
        part = rows.filter(pl.col("attribute") == attribute)
        group_names = part["group"].unique(maintain_order=True).to_list()
        for k, model in enumerate(series):
            bars = part.filter(pl.col("model") == model).fill_null(float("nan"))
            rate = bars["selection_rate"].to_numpy()
            errors = np.abs(np.vstack([rate - bars["sel_ci_low"].to_numpy(), bars["sel_ci_high"].to_numpy() - rate]))
            drawn = ax.bar(np.arange(len(group_names)) + (k - (len(series) - 1) / 2) * width, rate, width,
                           yerr=errors, capsize=2, label=model, color=f"C{k}")
            for patch, status in zip(drawn.patches, bars["status"].to_list()):
                if status == "insufficient_data":
                    patch.set_hatch("//")
                    patch.set_alpha(0.4)
        insufficient = set(part.filter(pl.col("status") == "insufficient_data")["group"].to_list())
        ax.set_xticks(range(len(group_names)), [f"{g}*" if g in insufficient else g for g in group_names],
                      rotation=45, ha="right", fontsize=7)
        ax.set_title(attribute)
    axes[0][0].set_ylabel("selection rate")
    axes[0][0].legend(fontsize=7, title="* hatched: below minimum size", title_fontsize=6)
    fig.suptitle(f"{title} ({task}, {operating_point})")
    return png_markdown(fig, title)


def drift_figure(table: pl.DataFrame, warn: float, breach: float, title: str, top: int = 25) -> str:
    """The `top` largest PSI values (features and predictions) against the warn and breach lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = table.sort("psi", descending=True, nulls_last=True).head(top).reverse()
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * worst.height)))
    colours = ["tab:red" if p >= breach else "tab:orange" if p >= warn else "tab:green" for p in worst["psi"].to_list()]
    ax.barh([f"{c} ({k[0]})" for c, k in zip(worst["column"].to_list(), worst["kind"].to_list())], worst["psi"].to_list(), color=colours)
    ax.axvline(warn, color="tab:orange", linestyle="--", label=f"warn {warn}")
    ax.axvline(breach, color="tab:red", linestyle="--", label=f"breach {breach}")
    ax.set(title=title, xlabel="PSI vs the champion's training features")
    ax.legend(fontsize=7)
    return png_markdown(fig, title)
