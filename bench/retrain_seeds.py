"""Retraining noise of the search-vs-random protocol's leading cells (issue #16, item 6).

    python bench/retrain_seeds.py --data data/brain [--out runs/search_vs_random]
        [--cells random4 "shipped (darts, skip cap 2)"] [--seeds 1 2] [--results bench/results/retrain_seeds]
        [--train-preset cpu] [--train-set JSON] [--categories ...] [--max-slices N]

The protocol (``bench/search_vs_random.py``) retrained every cell once (``train --preset cpu
--seed 0``), so a lead of 0.1 dB between two cells may be the luck of one training. Here each
named cell (its genotype from ``OUT/genotypes/NAME.json``, as the protocol saved it) is
retrained with the same preset and each of ``--seeds`` (into ``OUT/train_NAME_seedS``) and
scored on the protocol's cases (``OUT/cases``: the same held-out slices, seeded masks and metric
code) into ``OUT/scores.json`` under ``NAME_seedS``; seed 0 is the protocol's own run. Reports
per cell each seed's mean PSNR / SSIM, their mean and standard deviation over seeds, and the
paired difference of the first cell minus each other one per seed and on the seed-averaged
per-slice scores (95% bootstrap interval over slices). Every stage is skipped when its result
exists and a killed training resumes from its checkpoint. Writes ``RESULTS/results.json``,
``results.md`` and ``results.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

import search_vs_random as P
from backend import benchmark as B
from backend.config import TRAIN_PRESETS, TrainConfig, apply_preset
from backend.datasets import dataset_files
from backend.files import atomic_write_bytes, save_figure, write_json
from backend.machine import describe
from backend.models import Genotype
from backend.training.train import train

RESULTS = Path(__file__).resolve().parent / "results" / "retrain_seeds"


def weights_for(args, name: str, seed: int) -> Path:
    """The cell's protocol weights (seed 0) or its retraining with ``seed``."""
    if seed == 0:
        return args.out / f"train_{name}" / "best.safetensors"
    out = args.out / f"train_{name}_seed{seed}"
    if not P._done(out):
        config = apply_preset(TrainConfig(model="nasn", genotype=str(args.out / "genotypes" / f"{name}.json"),
                                          data=str(args.data), preset=args.train_preset, seed=seed), TRAIN_PRESETS,
                              args.train_set)
        P._finish(train(config, str(out), resume=(out / "checkpoint.pt").exists()))
    return out / "best.safetensors"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/search_vs_random"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--cells", nargs="+", default=["random4", "shipped (darts, skip cap 2)"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--train-preset", default="cpu", choices=sorted(TRAIN_PRESETS))
    ap.add_argument("--categories", nargs="+", default=list(B.CATEGORIES), choices=B.CATEGORIES,
                    help="the protocol's (it must have been run with the same)")
    ap.add_argument("--max-slices", type=int, default=None, help="the protocol's")
    ap.add_argument("--train-set", type=json.loads, default={}, metavar="JSON", help="TrainConfig fields over the preset")
    args = ap.parse_args(argv)
    for name in args.cells:
        if not (args.out / "genotypes" / f"{name}.json").exists():
            raise SystemExit(f"retrain_seeds: {args.out / 'genotypes' / (name + '.json')}: no such cell in the protocol")
    cases = list(B.build_cases(dataset_files(args.data, "test"), args.out / "cases", args.categories, args.max_slices))
    cache = json.loads((args.out / "scores.json").read_text()) if (args.out / "scores.json").exists() else {}
    seeds = [0] + [s for s in args.seeds if s != 0]
    per = {}  # cell -> seed -> {"psnr": [...], "ssim": [...]}
    for seed in seeds:  # seed by seed: each finished seed compares every cell
        for name in args.cells:
            key = name if seed == 0 else f"{name}_seed{seed}"
            if seed == 0 and key not in cache:
                raise SystemExit(f"retrain_seeds: the protocol has not scored {name} yet")
            per.setdefault(name, {})[seed] = P.scores(args, cache, key, weights_for(args, name, seed), "nasn", cases)
    return report(args, per, seeds)


def report(args, per: dict, seeds: list[int]) -> dict:
    cells = list(per)
    rows = {}
    for name in cells:
        means = {s: {k: float(np.mean(per[name][s][k])) for k in ("psnr", "ssim")} for s in seeds}
        rows[name] = {"seeds": {str(s): means[s] for s in seeds},
                      **{k: {"mean": statistics.mean(means[s][k] for s in seeds),
                             "std": statistics.stdev(means[s][k] for s in seeds) if len(seeds) > 1 else 0.0}
                         for k in ("psnr", "ssim")}}
    first = cells[0]
    averaged = {n: {k: np.mean([per[n][s][k] for s in seeds], axis=0).tolist() for k in ("psnr", "ssim")} for n in cells}
    for name in cells[1:]:
        rows[name][f"{first}_minus"] = {
            "per_seed": {str(s): {k: B.paired(per[first][s][k], per[name][s][k], seed=7) for k in ("psnr", "ssim")}
                         for s in seeds},
            "seed_averaged": {k: B.paired(averaged[first][k], averaged[name][k], seed=7) for k in ("psnr", "ssim")}}
    out = {"benchmark": "retrain_seeds", "machine": describe(), "train_preset": args.train_preset, "seeds": seeds,
           "slices": len(per[first][seeds[0]]["psnr"]), "cells": rows}
    lines = [f"Retraining seeds ({args.train_preset} preset) of the protocol's cells, {out['slices']} held-out slices "
             f"(the protocol's cases and masks); PSNR dB / SSIM, mean over slices", "",
             "| cell | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std over seeds |",
             "|---|" + "---|" * (len(seeds) + 1)]
    for name in cells:
        r = rows[name]
        lines.append(f"| {name} | " + " | ".join(f"{r['seeds'][str(s)]['psnr']:.2f} / {r['seeds'][str(s)]['ssim']:.4f}"
                                                  for s in seeds)
                     + f" | {r['psnr']['mean']:.2f} ± {r['psnr']['std']:.2f} / {r['ssim']['mean']:.4f} ± {r['ssim']['std']:.4f} |")
    lines += ["", f"Paired {first} − X: mean [95% bootstrap CI over slices] (slices where {first} is better)", "",
              "| X | " + " | ".join(f"seed {s} ΔPSNR" for s in seeds) + " | seed-averaged ΔPSNR | seed-averaged ΔSSIM |",
              "|---|" + "---|" * (len(seeds) + 2)]
    fmt = lambda d, n=2: f"{d['mean']:+.{n}f} [{d['ci_low']:+.{n}f}, {d['ci_high']:+.{n}f}] ({d['wins']}/{d['n']})"  # noqa: E731
    for name in cells[1:]:
        d = rows[name][f"{first}_minus"]
        lines.append(f"| {name} | " + " | ".join(fmt(d["per_seed"][str(s)]["psnr"]) for s in seeds)
                     + f" | {fmt(d['seed_averaged']['psnr'])} | {fmt(d['seed_averaged']['ssim'], 4)} |")
    text = "\n".join(lines) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", out)
    atomic_write_bytes(args.results / "results.md", text.encode())
    figure(rows, seeds, args.results / "results.png")
    print(text)
    return out


def figure(rows: dict, seeds: list[int], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4), constrained_layout=True)
    for ax, key, unit in zip(fig.subplots(1, 2), ("psnr", "ssim"), ("dB", "")):
        for i, (name, r) in enumerate(rows.items()):
            values = [r["seeds"][str(s)][key] for s in seeds]
            ax.scatter([i] * len(values), values, color="tab:blue", zorder=3)
            for s, v in zip(seeds, values):
                ax.annotate(f"seed {s}", (i, v), textcoords="offset points", xytext=(6, -3), fontsize=7)
            ax.hlines(r[key]["mean"], i - 0.25, i + 0.25, color="k")
        ax.set_xticks(range(len(rows)), list(rows), fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel(f"mean {key.upper()} {unit}".strip())
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Retraining seeds: each seed's mean over the held-out slices (bar: mean over seeds)")
    save_figure(fig, path)


if __name__ == "__main__":  # run as a script: bench/ is on sys.path
    main()
