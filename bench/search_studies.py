"""The paper's search studies under the search-vs-random protocol: nodes 2 / 3 / 4 (its Table 2)
and search space B (its Table 3) (issue #16).

    python bench/search_studies.py --data data/brain [--out runs/search_studies]
        [--studies A2 A3 A4 B3] [--methods darts] [--seeds 0] [--select perturb]
        [--reuse A3=runs/search_vs_random] [--search-preset cpu] [--train-preset cpu]
        [--categories ...] [--max-slices N]

Each study (``A3`` = space A, 3 nodes) searches with every method and seed exactly as
``bench/search_vs_random.py`` does (``nascsmri search --preset SEARCH --method M --seed S``, no
skip cap), derives the cell by argmax and/or perturbation-based selection (``--select``;
perturbation by default, since plain DARTS' argmax collapsed onto all skips in every search of
the protocol), retrains each distinct cell with the protocol's budget and seed and scores it on
the same held-out cases, slices and masks. The stages are the protocol's own functions, so a
study whose folder is the protocol's run (``--reuse A3=runs/search_vs_random``, the default when
that folder exists) costs nothing: its searches, retrainings and scores are read from there.
Every stage is skipped when its result exists and resumes from its checkpoint when killed.

Reports per cell its GFLOPs and parameters (320x320, :func:`backend.models.model_info`), mean
PSNR / SSIM over every slice of every case at 4x and 8x, and the paired difference against the
reference study's cell (``--reference``, default the ``A3`` study's first cell) with a 95%
bootstrap interval, beside the paper's knee figures for the same setting. Writes
``RESULTS/results.json`` and ``results.md`` (default ``bench/results/search_studies``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_vs_random as P  # noqa: E402  (the protocol's stages)

from backend import benchmark as B  # noqa: E402
from backend.config import SEARCH_PRESETS, TRAIN_PRESETS  # noqa: E402
from backend.datasets import dataset_files  # noqa: E402
from backend.files import atomic_write_bytes, write_json  # noqa: E402
from backend.machine import describe  # noqa: E402
from backend.models import model_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "search_studies"
STUDIES = {"A2": ("A", 2), "A3": ("A", 3), "A4": ("A", 4), "B3": ("B", 3)}
# the paper's knee results (its Tables 1-3; ../shared/REFERENCE.md): PSNR dB, GFLOPs
PAPER = {"A2": (29.78, 11.37), "A3": (29.83, 15.07), "A4": (29.87, 18.76), "B3": (29.81, 12.44)}


def study_cells(args, name: str, out: Path) -> dict[str, dict]:
    """Searched (and selected) cells of one study, retrained and scored: ``{cell: result}``."""
    space, nodes = STUDIES[name]
    sub = argparse.Namespace(**{**vars(args), "out": out, "space": space, "nodes": nodes})
    out.mkdir(parents=True, exist_ok=True)
    cells = {}
    for method in args.methods:
        for seed in args.seeds:
            genotype = P.searched_cell(sub, method, seed)
            if "argmax" in args.select:
                cells[f"{method}_seed{seed}"] = genotype
            if "perturb" in args.select:
                cells[f"{method}+perturb_seed{seed}"] = P.perturbed_cell(sub, method, seed)
    cases = list(B.build_cases(dataset_files(args.data, "test"), out / "cases", args.categories, args.max_slices))
    cache = json.loads((out / "scores.json").read_text()) if (out / "scores.json").exists() else {}
    results = P.retrain_and_score(sub, cells, cache, cases)
    for cell, genotype in cells.items():
        results[cell].update(params=model_info("nasn", genotype=genotype)["params"], all_skip=P.is_all_skip(genotype))
    return results


def report(args, studies: dict[str, dict]) -> dict:
    ref_study, ref_cell = args.reference.split(":", 1) if ":" in args.reference else (args.reference, None)
    ref_cells = studies.get(ref_study) or {}
    ref = ref_cells.get(ref_cell) if ref_cell else next(iter(ref_cells.values()), None)
    ref_name = f"{ref_study}:{ref_cell or next(iter(ref_cells), '-')}"
    rows = {}
    for study, cells in studies.items():
        for cell, r in cells.items():
            row = {"study": study, "space": STUDIES[study][0], "nodes": STUDIES[study][1], "cell": cell,
                   "genotype": r["genotype"], "gflops": r["gflops"], "params": r["params"],
                   "trained_as": r["trained_as"], "all_skip": r["all_skip"],
                   "mean_psnr": float(np.mean(r["psnr"])), "mean_ssim": float(np.mean(r["ssim"])),
                   "std_psnr": float(np.std(r["psnr"])), "n_slices": len(r["psnr"]),
                   "paper_psnr": PAPER[study][0], "paper_gflops": PAPER[study][1]}
            if ref is not None and r is not ref:
                row["vs_reference"] = {k: B.paired(r[k], ref[k], seed=5) for k in ("psnr", "ssim")}
            rows[f"{study}:{cell}"] = row
    out = {"benchmark": "search_studies", "machine": describe(), "search_preset": args.search_preset,
           "train_preset": args.train_preset, "reference": ref_name, "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", out)
    lines = [f"Search studies (search {args.search_preset}, retrain {args.train_preset}, same cases, masks and "
             f"seed for every cell); differences against {ref_name}; paper: knee, its own budget", "",
             "| study | cell | GFLOPs | params | PSNR dB ± std | SSIM | Δ PSNR vs reference [95% CI] | Δ SSIM "
             "| paper PSNR / GFLOPs |", "|---|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        d = row.get("vs_reference")
        delta = (f"{d['psnr']['mean']:+.2f} [{d['psnr']['ci_low']:+.2f}, {d['psnr']['ci_high']:+.2f}] | "
                 f"{d['ssim']['mean']:+.4f}") if d else "(reference) | -"
        skip = " (all skips)" if row["all_skip"] else ""
        lines.append(f"| {row['study']} | {row['cell']}{skip} | {row['gflops']:.2f} | {row['params'] / 1e3:.1f}K | "
                     f"{row['mean_psnr']:.2f} ± {row['std_psnr']:.2f} | {row['mean_ssim']:.4f} | {delta} | "
                     f"{row['paper_psnr']:.2f} / {row['paper_gflops']:.2f}G |")
    atomic_write_bytes(args.results / "results.md", ("\n".join(lines) + "\n").encode())
    _figure(out, args.results / "results.png")
    print("\n".join(lines))
    return out


def _figure(report: dict, path: Path) -> None:
    """Each cell's paired PSNR and SSIM difference from the reference cell (95% interval), with
    its GFLOPs and the paper's PSNR for the same study in the labels."""
    from matplotlib.figure import Figure

    from backend.files import save_figure

    rows = list(report["rows"].values())
    fig = Figure(figsize=(11, 1.6 + 0.45 * len(rows)), constrained_layout=True)
    axes = fig.subplots(1, 2)
    labels = [f"{r['study']} {r['cell']}{' (all skips)' if r['all_skip'] else ''}\n{r['gflops']:.2f} GFLOPs; "
              f"paper {r['paper_psnr']:.2f} dB / {r['paper_gflops']:.2f} G" for r in rows]
    for ax, key, label in [(axes[0], "psnr", f"PSNR - {report['reference']} (dB)"),
                           (axes[1], "ssim", f"SSIM - {report['reference']}")]:
        diffs = [r.get("vs_reference", {}).get(key, {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}) for r in rows]
        means = [d["mean"] for d in diffs]
        ax.barh(range(len(rows)), means, color=["tab:grey" if "vs_reference" not in r else "tab:blue" for r in rows],
                xerr=[[m - d["ci_low"] for m, d in zip(means, diffs)], [d["ci_high"] - m for m, d in zip(means, diffs)]],
                capsize=2)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), labels if ax is axes[0] else [""] * len(rows), fontsize=7)
        ax.set_xlabel(label)
    axes[0].set_title("grey: the reference cell; whiskers: 95% bootstrap interval of the paired difference", fontsize=8)
    save_figure(fig, path, dpi=90)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/search_studies"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    ap.add_argument("--methods", nargs="+", default=["darts"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--select", nargs="+", default=["perturb"], choices=["argmax", "perturb"])
    ap.add_argument("--reuse", nargs="*", default=None, metavar="STUDY=DIR",
                    help="a study's run folder elsewhere (default: A3=runs/search_vs_random when it exists)")
    ap.add_argument("--reference", default="A3", help="STUDY or STUDY:CELL the differences are taken against")
    ap.add_argument("--search-preset", default="cpu", choices=sorted(SEARCH_PRESETS))
    ap.add_argument("--train-preset", default="cpu", choices=sorted(TRAIN_PRESETS))
    ap.add_argument("--categories", nargs="+", default=list(B.CATEGORIES), choices=B.CATEGORIES)
    ap.add_argument("--max-slices", type=int, default=None)
    ap.add_argument("--search-set", type=json.loads, default={}, metavar="JSON")
    ap.add_argument("--train-set", type=json.loads, default={}, metavar="JSON")
    args = ap.parse_args(argv)
    if args.reuse is None:
        default = Path("runs/search_vs_random")
        args.reuse = [f"A3={default}"] if default.is_dir() else []
    reuse = {}
    for item in args.reuse:
        study, sep, folder = item.partition("=")
        if not sep or study not in STUDIES:
            ap.error(f"--reuse takes STUDY=DIR with STUDY one of {', '.join(STUDIES)}, not {item!r}")
        reuse[study] = Path(folder)
    studies = {s: study_cells(args, s, reuse.get(s, args.out / s)) for s in args.studies}
    return report(args, studies)


if __name__ == "__main__":
    main()
