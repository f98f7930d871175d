"""2-D sampling patterns against the 1-D column mask at the same acceleration (issue #21).

    python bench/masks_2d.py --data data/brain [--accelerations 4 8] [--masks random poisson gaussian2d]
        [--methods zero-filled tv dccnn nasn] [--out bench/results/masks_2d] [--max-files N]

The held-out test volumes of a prepared dataset (``nascsmri data prepare``), each reconstructed
as ``nascsmri reconstruct --mask KIND --acceleration A`` does it (the per-volume seed from the
file name, the same for every method), with the shipped weights -- trained on column masks
only: the 2-D rows say how the networks carry over to a pattern they never saw, with the data
consistency on the pattern. Per mask, acceleration and method: per-slice PSNR/SSIM mean +- std,
the realised acceleration, and for each 2-D mask the paired difference NasN - TV with a 95%
bootstrap CI. Writes ``OUT/results.json``, ``OUT/results.md`` and ``OUT/masks_2d.png`` (one test
slice: each mask, its zero-filled image, NasN and NasN's error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from backend import config as cfg
from backend.benchmark import paired, slice_metrics
from backend.datasets import dataset_files
from backend.files import atomic_write_bytes, save_figure, write_json
from backend.machine import describe
from backend.progress import run
from backend.recon import make_reconstructor, reconstruct_volume

RESULTS = Path(__file__).resolve().parent / "results" / "masks_2d"
NAMES = {"zero-filled": "zero-filled", "tv": "TV", "dccnn": "DCCNN-3", "nasn": "NasN"}


def figure(examples: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(examples)
    fig, axes = plt.subplots(len(rows), 4, figsize=(11, 2.8 * len(rows)), constrained_layout=True)
    for row, key in zip(np.atleast_2d(axes), rows):
        ex = examples[key]
        ref = ex["reference"]
        top = float(np.percentile(ref, 99.5))
        panels = [(ex["mask"], f"{key}: mask ({ex['realised']:.2f}x)", "gray", (0, 1)),
                  (ex["zero-filled"], f"zero-filled {ex['psnr_zf']:.1f} dB", "gray", (0, top)),
                  (ex["nasn"], f"NasN {ex['psnr_nasn']:.1f} dB", "gray", (0, top)),
                  (np.abs(ex["nasn"] - ref) / ref.max() * 100, "|NasN - reference| (% of max)", "magma", (0, 10))]
        for ax, (image, title, cmap, (lo, hi)) in zip(row, panels):
            shown = ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.set_axis_off()
        fig.colorbar(shown, ax=row[-1], fraction=0.046)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    ap.add_argument("--masks", nargs="+", default=["random", "poisson", "gaussian2d"])
    ap.add_argument("--methods", nargs="+", default=list(NAMES))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--max-files", type=int, default=None, help="only the first N test volumes (smoke runs)")
    args = ap.parse_args()
    files = dataset_files(args.data, "test")[:args.max_files]
    reconstructors = {m: make_reconstructor(cfg.ReconConfig(model=m)) for m in args.methods}
    rows, examples = [], {}
    for acc in args.accelerations:
        for kind in args.masks:
            metrics = {m: {"psnr": [], "ssim": []} for m in args.methods}
            realised = []
            for k, path in enumerate(files):
                for method in args.methods:
                    config = cfg.ReconConfig(model=method, mask=kind, acceleration=acc)
                    result = run(reconstruct_volume(path, config, reconstructors[method]))
                    for name, values in slice_metrics(result.reference, result.reconstruction).items():
                        metrics[method][name] += values
                    if method == args.methods[0]:
                        realised.append(result.mask.realised_acceleration)
                    if k == 0 and acc == max(args.accelerations) and method == "nasn":
                        i = len(result.reference) // 2
                        examples[kind] = {"mask": np.broadcast_to(result.mask.sampling, result.info.grid),
                                          "reference": result.reference[i], "zero-filled": result.zero_filled[i],
                                          "nasn": result.reconstruction[i], "realised": result.mask.realised_acceleration,
                                          "psnr_zf": slice_metrics(result.reference, result.zero_filled)["psnr"][i],
                                          "psnr_nasn": metrics["nasn"]["psnr"][-len(result.reference) + i]}
                print(f"{acc:g}x {kind}: {path.name} done", file=sys.stderr, flush=True)
            for method in args.methods:
                m = metrics[method]
                row = {"acceleration": acc, "mask": kind, "method": method, "slices": len(m["psnr"]),
                       "realised_acceleration": float(np.mean(realised)),
                       "psnr": [float(np.mean(m["psnr"])), float(np.std(m["psnr"]))],
                       "ssim": [float(np.mean(m["ssim"])), float(np.std(m["ssim"]))]}
                if method == "nasn" and "tv" in metrics:
                    row["nasn_minus_tv"] = {k: paired(m[k], metrics["tv"][k]) for k in ("psnr", "ssim")}
                rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python bench/masks_2d.py " + " ".join(sys.argv[1:])
    write_json(args.out / "results.json", {"command": command, "machine": describe(), "files": [f.name for f in files],
                                           "rows": rows})
    lines = [f"`{command}` ({len(files)} test volumes, shipped weights)", "",
             "| acc | mask | realised | method | PSNR dB | SSIM | NasN - TV PSNR [95% CI] | NasN - TV SSIM [95% CI] |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.get("nasn_minus_tv")
        cells = ["", ""] if d is None else [f"{d[k]['mean']:+.3f} [{d[k]['ci_low']:+.3f}, {d[k]['ci_high']:+.3f}]"
                                            for k in ("psnr", "ssim")]
        lines.append(f"| {r['acceleration']:g}x | {r['mask']} | {r['realised_acceleration']:.2f} | "
                     f"{NAMES.get(r['method'], r['method'])} | {r['psnr'][0]:.2f} +- {r['psnr'][1]:.2f} | "
                     f"{r['ssim'][0]:.4f} +- {r['ssim'][1]:.4f} | {cells[0]} | {cells[1]} |")
    atomic_write_bytes(args.out / "results.md", ("\n".join(lines) + "\n").encode())
    if examples:
        figure(examples, args.out / "masks_2d.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
