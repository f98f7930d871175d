"""Training curves of the ``ship`` runs (issue #15): validation PSNR / SSIM and training loss per epoch.

    python bench/ship_curves.py [--runs nasn=DIR dccnn=DIR unet=DIR] [--out bench/results/ship_curves.png]

Reads each run folder's ``history.json`` (what ``nascsmri train`` writes after every epoch;
default: the runs' committed snapshots ``bench/results/ship_<model>_inprogress``, those that
exist) and plots the three curves side by side, one line per network, the best validation
epoch marked. Prints, per run, the epochs done, the best validation epoch and its PSNR / SSIM
and the sum of the epochs' wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.files import save_figure

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {"nasn": "NasN", "dccnn": "DCCNN-3", "unet": "U-net"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="*", default=None, metavar="MODEL=DIR")
    ap.add_argument("--out", type=Path, default=RESULTS / "ship_curves.png")
    args = ap.parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.runs) if args.runs else {
        m: str(RESULTS / f"ship_{m}_inprogress") for m in NAMES if (RESULTS / f"ship_{m}_inprogress" / "history.json").exists()}
    histories = {}
    for model, folder in runs.items():
        path = Path(folder) / "history.json"
        if not path.exists():
            raise SystemExit(f"ship_curves: {path}: no such file")
        histories[model] = json.loads(path.read_text())
    summary = {}
    for model, h in histories.items():
        best = max(h, key=lambda e: e["psnr"])
        summary[model] = {"epochs": len(h), "best_epoch": best["epoch"], "psnr": best["psnr"], "ssim": best["ssim"],
                          "hours": sum(e["seconds"] for e in h) / 3600}
        print(f"{NAMES.get(model, model):8s} {len(h):3d} epochs, best epoch {best['epoch']} "
              f"(0-based): {best['psnr']:.2f} dB / {best['ssim']:.4f}, {summary[model]['hours']:.2f} h of epochs")
    figure(histories, args.out)
    print(f"wrote {args.out}")
    return summary


def figure(histories: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4), constrained_layout=True)
    axes = fig.subplots(1, 3)
    for model, h in histories.items():
        epochs = [e["epoch"] + 1 for e in h]
        for ax, key in zip(axes, ("psnr", "ssim", "train_loss")):
            line, = ax.plot(epochs, [e[key] for e in h], label=NAMES.get(model, model))
            if key != "train_loss":
                best = max(h, key=lambda e: e["psnr"])
                ax.plot([best["epoch"] + 1], [best[key]], "o", color=line.get_color())
    for ax, title in zip(axes, ("validation PSNR dB (mean of 4x, 8x)", "validation SSIM", "training loss (l1+ssim)")):
        ax.set_title(title)
        ax.set_xlabel("epoch (1,000 steps of batch 2)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("ship preset: the same data, steps, schedule (lr / 10 at epoch 21), loss and seed; dot = best")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
