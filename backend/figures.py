"""Figures people look at: side-by-side reconstructions with error maps."""

from __future__ import annotations

import os

import numpy as np


def side_by_side(
    reference: np.ndarray,
    rows: dict[str, dict[str, np.ndarray]],
    path: str | os.PathLike,
    titles: dict[str, dict[str, str]] | None = None,
    error_scale: float = 0.25,
) -> None:
    """Grid figure: one row per setting (e.g. ``"4x"``), columns reference | methods, and a second
    row per setting with ``|method - reference|`` maps (scaled to ``error_scale * max``).

    Args:
        reference: magnitude slice ``(H, W)``.
        rows: ``{row label: {method: magnitude slice}}``.
        titles: optional ``{row label: {method: title}}`` (e.g. with PSNR/SSIM).
    """
    from matplotlib.figure import Figure

    from .files import save_figure

    methods = list(next(iter(rows.values())).keys())
    ncols = 1 + len(methods)
    fig = Figure(figsize=(2.6 * ncols, 2.7 * 2 * len(rows)))
    axes = fig.subplots(2 * len(rows), ncols, squeeze=False)
    vmax = float(np.percentile(reference, 99.5)) or float(reference.max()) or 1.0
    emax = error_scale * vmax
    for r, (label, images) in enumerate(rows.items()):
        top, bottom = axes[2 * r], axes[2 * r + 1]
        top[0].imshow(reference, cmap="gray", vmin=0, vmax=vmax)
        top[0].set_title("reference", fontsize=9)
        bottom[0].axis("off")
        bottom[0].text(0.5, 0.5, f"{label}\n|error| x{1 / error_scale:g}", ha="center", va="center", fontsize=11)
        for c, name in enumerate(methods, start=1):
            img = images[name]
            top[c].imshow(img, cmap="gray", vmin=0, vmax=vmax)
            title = (titles or {}).get(label, {}).get(name, name)
            top[c].set_title(f"{label} {title}", fontsize=8)
            im = bottom[c].imshow(np.abs(img - reference), cmap="inferno", vmin=0, vmax=emax)
        for ax in list(top) + list(bottom[1:]):
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=list(bottom[1:]), fraction=0.02, pad=0.01)
    save_figure(fig, path, dpi=90, bbox_inches="tight")
