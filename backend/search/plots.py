"""Pictures of a search: the derived cell as a graph, and the alpha weights over epochs."""

from __future__ import annotations

import os

import numpy as np

from ..models import SPACES, Genotype
from .supernet import edge_offsets

OP_COLOURS = {
    "sep_conv_3x3": "tab:blue", "dil_2_conv_3x3": "tab:orange", "dil_3_conv_3x3": "tab:green",
    "conv_9x1_1x9": "tab:purple", "skip_connect": "tab:gray", "none": "black",
}


def _save(fig, path) -> None:
    from ..files import save_figure

    save_figure(fig, path, dpi=100, bbox_inches="tight")


def draw_cell(genotype: Genotype, path: str | os.PathLike, title: str = "") -> None:
    """The cell as a graph: inputs C(l-2), C(l-1) on the left, nodes, the concat output."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    n = genotype.num_nodes
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for i in range(n):
        pos[i + 2] = (1.6 * (i + 1), 1.2 * ((i % 2) - 0.5) * (1 if n > 1 else 0))
    out = (1.6 * (n + 1), 0.0)
    fig = Figure(figsize=(2.4 * (n + 2), 3.8))
    ax = fig.subplots()
    for node, op, src in genotype.edges():
        a, b = pos[src], pos[node + 2]
        rad = 0.25 if src + 1 != node + 2 else 0.0
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=2,
                                     color=OP_COLOURS.get(op, "k"), connectionstyle=f"arc3,rad={rad}",
                                     shrinkA=18, shrinkB=18))
        mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + rad * 0.6
        ax.text(mx, my, op, fontsize=8, ha="center", va="center", color=OP_COLOURS.get(op, "k"),
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
    for i in range(n):
        ax.add_patch(FancyArrowPatch(pos[i + 2], out, arrowstyle="-|>", mutation_scale=10, lw=1,
                                     color="lightgray", shrinkA=18, shrinkB=18, linestyle="--"))
    labels = {0: "C(l-2)", 1: "C(l-1)", **{i + 2: f"node {i + 1}" for i in range(n)}}
    for k, (x, y) in pos.items():
        colour = "#cde" if k < 2 else "#fdb"
        ax.text(x, y, labels[k], ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.5", facecolor=colour, edgecolor="k"))
    ax.text(*out, "concat\nC(l)", ha="center", va="center", fontsize=9,
            bbox=dict(boxstyle="round,pad=0.5", facecolor="#dfd", edgecolor="k"))
    ax.set_xlim(-0.8, out[0] + 0.8)
    ax.set_ylim(-1.8, 1.8)
    ax.axis("off")
    ax.set_title(title or f"cell, space {genotype.space}, {n} nodes", fontsize=10)
    _save(fig, path)


def draw_alphas(history: list[list[list[float]]], space: str, nodes: int, path: str | os.PathLike) -> None:
    """Softmax weight of every operation on every edge, per epoch (one panel per edge)."""
    from matplotlib.figure import Figure

    weights = np.asarray(history)  # (epochs, edges, ops)
    names = SPACES[space]
    offsets = edge_offsets(nodes)
    fig = Figure(figsize=(2.6 * (nodes + 1), 2.1 * nodes), layout="constrained")
    axes = fig.subplots(nodes, nodes + 1, squeeze=False, sharey=True)
    epochs = np.arange(1, weights.shape[0] + 1)
    for i in range(nodes):
        for j in range(nodes + 1):
            ax = axes[i][j]
            if j >= i + 2:
                ax.axis("off")
                continue
            for k, name in enumerate(names):
                ax.plot(epochs, weights[:, offsets[i] + j, k], color=OP_COLOURS.get(name, "k"), lw=1.5,
                        label=name if (i, j) == (0, 0) else None)
            src = ["C(l-2)", "C(l-1)"][j] if j < 2 else f"node {j - 1}"
            ax.set_title(f"{src} -> node {i + 1}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.legend(loc="lower right", fontsize=7)
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("softmax(alpha)", fontsize=8)
    _save(fig, path)


def draw_signal(history: list[dict], threshold: float, path: str | os.PathLike) -> None:
    """Per edge and epoch the margin between the best and second operation, and the entropy of
    the edge's weights (``log(#ops)`` = uniform): does the search learn anything?"""
    from matplotlib.figure import Figure

    from ..files import save_figure

    epochs = np.arange(1, len(history) + 1)
    margins = np.asarray([h["edge_margin"] for h in history])
    entropy = np.asarray([h["edge_entropy"] for h in history])
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for e in range(margins.shape[1]):
        left.plot(epochs, margins[:, e], lw=1.2)
        right.plot(epochs, entropy[:, e], lw=1.2)
    left.axhline(threshold, color="black", ls="--", lw=0.8, label=f"no-signal threshold {threshold:g}")
    right.axhline(history[-1]["uniform_entropy"], color="black", ls="--", lw=0.8, label="uniform")
    warm = sum(1 for h in history if h.get("warmup"))
    for ax, label in ((left, "best - second operation weight"), (right, "entropy of the edge's weights (nats)")):
        if warm:
            ax.axvspan(0.5, warm + 0.5, color="0.9", label="weights-only warm-up")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    left.set_title("margin per edge (one line per edge)", fontsize=9)
    right.set_title("entropy per edge", fontsize=9)
    save_figure(fig, path, dpi=100)
