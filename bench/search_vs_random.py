"""Does the search beat chance? Searched cells against random cells of the same space (issue #16).

    python bench/search_vs_random.py --data data/brain [--out runs/search_vs_random]
        [--methods darts beta-darts] [--seeds 0 1] [--select argmax perturb] [--random 6] [--space A] [--nodes 3]
        [--search-preset cpu] [--train-preset cpu] [--flops-tolerance 0.10]
        [--categories magnitude raw_phase ...] [--max-slices N] [--interim]

Protocol (Li & Talwalkar 2019; Yu et al. 2020): every method searches with every seed
(``nascsmri search --preset SEARCH --method M --seed S``, argmax selection, **no skip cap**), and
with ``--select perturb`` each finished supernet also gives the cell that perturbation-based
selection derives from it (:func:`backend.search.search.reselect`, named ``M+perturb_seedS``);
``--random`` cells are drawn uniformly from the same space (each node: two distinct inputs,
each with a uniformly drawn operation other than ``none``), keeping only cells whose FLOPs lie
within ``--flops-tolerance`` of the median searched cell's; when that median cell is the
all-skip one (every search collapsed, as here), FLOPs-matched random cells would be rewirings of
skips only, so the random cells get the shipped cell's FLOPs instead and the shipped cell (DARTS
with the P-DARTS skip cap of 2) joins the table; every cell (searched, random) and
DCCNN-3 is retrained with one budget and seed (``nascsmri train --preset TRAIN --seed 0``) and
scored on the held-out test volumes in the realistic benchmark's categories
(:mod:`backend.benchmark`), per slice, with the same masks. Cells with the same genotype
(several searches collapse onto the all-skip cell) are retrained once and share the scores. Reports each cell's mean PSNR/SSIM,
its rank, the paired difference of every searched cell against the median random cell with a
95% bootstrap interval, and the seed-to-seed spread of each method.

Every stage is skipped when its result exists and resumes from its checkpoint when it was
killed, so the run can continue across sessions. ``--interim`` only reports the cells that
``OUT/scores.json`` holds so far (each distinct genotype once, under the name it was trained as),
against the median of the random cells scored so far; nothing is searched, trained or scored. Writes ``RESULTS/results.json``,
``results.md`` and ``results.png`` (default ``bench/results/search_vs_random``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from backend import benchmark as B
from backend.config import SEARCH_PRESETS, TRAIN_PRESETS, ReconConfig, SearchConfig, TrainConfig, apply_preset
from backend.datasets import dataset_files
from backend.files import atomic_write_bytes, save_figure, write_json
from backend.machine import describe
from backend.models import SPACES, Genotype, model_info
from backend.models.genotype import default_genotype
from backend.recon import NetworkReconstructor, load_network
from backend.devices import resolve_device
from backend.progress import run
from backend.search.search import reselect, search
from backend.training.train import train

RESULTS = Path(__file__).resolve().parent / "results" / "search_vs_random"


def random_genotype(space: str, nodes: int, rng: np.random.Generator) -> Genotype:
    ops = [n for n in SPACES[space] if n != "none"]
    cell = []
    for i in range(nodes):
        inputs = sorted(rng.choice(i + 2, size=2, replace=False).tolist())
        cell.append(tuple((ops[int(rng.integers(len(ops)))], int(j)) for j in inputs))
    return Genotype(space, tuple(cell))


def gflops(genotype: Genotype, _cache: dict = {}) -> float:  # noqa: B006 - a deliberate memo
    """NasN's GFLOPs with this cell. They depend on the cell's operations, not on its wiring (the
    inputs an operation reads), so they are counted once per multiset of operations."""
    key = (genotype.space, tuple(sorted(op for node in genotype.nodes for op, _ in node)))
    if key not in _cache:
        _cache[key] = model_info("nasn", genotype=genotype)["gflops"]
    return _cache[key]


def is_all_skip(genotype: Genotype) -> bool:
    return all(op == "skip_connect" for node in genotype.nodes for op, _ in node)


def random_cells(space: str, nodes: int, count: int, target_gflops: float, tolerance: float, seed: int = 0,
                 max_draws: int = 100000) -> list[Genotype]:
    """``count`` distinct random cells whose NasN GFLOPs are within ``tolerance`` of the target."""
    rng = np.random.default_rng([seed, 16])
    found: list[Genotype] = []
    for _ in range(max_draws):
        g = random_genotype(space, nodes, rng)
        if g in found:
            continue
        if abs(gflops(g) / target_gflops - 1) <= tolerance:
            found.append(g)
            if len(found) == count:
                return found
    raise RuntimeError(f"only {len(found)} random cells within {tolerance:.0%} of {target_gflops:.2f} GFLOPs")


def _finish(gen) -> dict:
    return run(gen)


def searched_cell(args, method: str, seed: int) -> Genotype:
    out = args.out / f"search_{method}_seed{seed}"
    if (out / "history.json").exists() and (out / "genotype.json").exists() and _done(out):
        return Genotype.load(out / "genotype.json")
    config = apply_preset(SearchConfig(data=str(args.data), space=args.space, nodes=args.nodes, preset=args.search_preset,
                                       seed=seed, method=method, max_skip=None), SEARCH_PRESETS, args.search_set)
    _finish(search(config, str(out), resume=(out / "checkpoint.pt").exists()))
    return Genotype.load(out / "genotype.json")


def perturbed_cell(args, method: str, seed: int) -> Genotype:
    """The perturbation-selected cell of a finished search (cached next to it)."""
    out = args.out / f"search_{method}_seed{seed}"
    cached = out / "reselect_perturb.json"
    if not cached.exists():
        genotype, selection = reselect(str(out))
        write_json(cached, {"select": "perturb", "posthoc": True, **selection, "genotype": genotype.to_dict()})
    return Genotype.from_dict(json.loads(cached.read_text())["genotype"])


def _done(out: Path) -> bool:
    events = (out / "events.jsonl").read_text().splitlines() if (out / "events.jsonl").exists() else []
    return any('"kind": "done"' in line for line in events)


def trained_weights(args, name: str, model: str, genotype: Genotype | None) -> Path:
    out = args.out / f"train_{name}"
    if _done(out):
        return out / "best.safetensors"
    gfile = None
    if genotype is not None:
        gfile = args.out / "genotypes" / f"{name}.json"
        gfile.parent.mkdir(parents=True, exist_ok=True)
        genotype.save(gfile)
    config = apply_preset(TrainConfig(model=model, genotype=None if gfile is None else str(gfile), data=str(args.data),
                                      preset=args.train_preset, seed=0), TRAIN_PRESETS, args.train_set)
    _finish(train(config, str(out), resume=(out / "checkpoint.pt").exists()))
    return out / "best.safetensors"


def scores(args, cache: dict, name: str, weights: Path, model: str, cases) -> dict[str, list[float]]:
    """Per-slice PSNR/SSIM over every case and acceleration, concatenated in a fixed order."""
    if name not in cache:
        net, _ = load_network(model, weights)
        recon = NetworkReconstructor(net, resolve_device("auto"), "auto")
        out = {"psnr": [], "ssim": []}
        for category, path in cases:
            for acc in (4.0, 8.0):
                m = B.evaluate(path, lambda a: (ReconConfig(model=model, acceleration=a), recon), acc)
                out["psnr"] += m["psnr"]
                out["ssim"] += m["ssim"]
        cache[name] = out
        write_json(args.out / "scores.json", cache)
    return cache[name]


def retrain_and_score(args, cells: dict[str, Genotype], cache: dict, cases) -> dict[str, dict]:
    """Each cell retrained (once per distinct genotype: a later name shares the first one's
    training and scores) and scored: ``{name: {"genotype", "gflops", "trained_as", "psnr", "ssim"}}``."""
    results, first = {}, {}
    for name, g in cells.items():
        trained = first.setdefault(g, name)
        w = trained_weights(args, trained, "nasn", g)
        results[name] = {"genotype": g.to_dict(), "gflops": gflops(g),
                         "trained_as": trained, **scores(args, cache, trained, w, "nasn", cases)}
    return results


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/search_vs_random"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--methods", nargs="+", default=["darts", "beta-darts"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--select", nargs="+", default=["argmax", "perturb"], choices=["argmax", "perturb"])
    ap.add_argument("--random", type=int, default=6)
    ap.add_argument("--space", default="A")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--search-preset", default="cpu", choices=sorted(SEARCH_PRESETS))
    ap.add_argument("--train-preset", default="cpu", choices=sorted(TRAIN_PRESETS))
    ap.add_argument("--flops-tolerance", type=float, default=0.10)
    ap.add_argument("--categories", nargs="+", default=list(B.CATEGORIES), choices=B.CATEGORIES)
    ap.add_argument("--max-slices", type=int, default=None)
    ap.add_argument("--search-set", type=json.loads, default={}, metavar="JSON",
                    help="SearchConfig fields over the preset, e.g. '{\"epochs\": 20}'")
    ap.add_argument("--train-set", type=json.loads, default={}, metavar="JSON", help="TrainConfig fields over the preset")
    ap.add_argument("--interim", action="store_true",
                    help="only report the cells scored so far (nothing is searched, trained or scored)")
    args = ap.parse_args(argv)
    if args.interim:
        return _interim(args)
    args.out.mkdir(parents=True, exist_ok=True)
    searched = {f"{m}_seed{s}": searched_cell(args, m, s) for m in args.methods for s in args.seeds}
    if "perturb" in args.select:
        searched.update({f"{m}+perturb_seed{s}": perturbed_cell(args, m, s) for m in args.methods for s in args.seeds})
    if "argmax" not in args.select:
        searched = {n: g for n, g in searched.items() if "+perturb" in n}
    # the budget: the median searched cell's FLOPs; when that cell is the all-skip one (every
    # search collapsed), random cells of its cost would be rewirings of skips only, so the random
    # cells take the cost of the shipped cell (the P-DARTS skip cap), which then joins the table
    median = sorted(searched.values(), key=gflops)[(len(searched) - 1) // 2]
    if args.space == "A" and args.nodes == 3 and is_all_skip(median):
        searched["shipped (darts, skip cap 2)"] = default_genotype()
        target, budget = gflops(default_genotype()), "the shipped cell's (every searched median cell is all skips)"
    else:
        target, budget = statistics.median(gflops(g) for g in searched.values()), "the median searched cell's"
    randoms = {f"random{k}": g for k, g in enumerate(random_cells(args.space, args.nodes, args.random, target,
                                                                    args.flops_tolerance))}
    cases = list(B.build_cases(dataset_files(args.data, "test"), args.out / "cases", args.categories, args.max_slices))
    cache = json.loads((args.out / "scores.json").read_text()) if (args.out / "scores.json").exists() else {}
    results = retrain_and_score(args, {**searched, **randoms}, cache, cases)
    results["dccnn3"] = {"genotype": None, "gflops": model_info("dccnn")["gflops"],
                         **scores(args, cache, "dccnn3", trained_weights(args, "dccnn3", "dccnn", None), "dccnn", cases)}
    return _report(args, results, list(searched), randoms, target, budget)


def _interim(args) -> dict:
    """The report over what is scored so far (``scores.json``), nothing searched or trained: the
    cells named as they were trained, their genotypes from ``genotypes/``."""
    cache = json.loads((args.out / "scores.json").read_text()) if (args.out / "scores.json").exists() else {}
    results = {}
    for name, score in cache.items():
        gfile = args.out / "genotypes" / f"{name}.json"
        genotype = Genotype.load(gfile) if gfile.exists() else None
        if genotype is None and name != "dccnn3":
            continue
        results[name] = {"genotype": None if genotype is None else genotype.to_dict(),
                         "gflops": gflops(genotype) if genotype is not None else model_info("dccnn")["gflops"],
                         "trained_as": name, **score}
    randoms = [n for n in results if n.startswith("random")]
    if not randoms:
        raise SystemExit("search_vs_random --interim: no random cell is scored yet")
    searched = [n for n in results if not n.startswith("random") and n != "dccnn3"]
    target = statistics.median(results[n]["gflops"] for n in randoms)
    budget = f"interim: {len(randoms)} of the random cells scored"
    return _report(args, results, searched, randoms, target, budget)


def _report(args, results: dict, searched: list[str], randoms, target: float, budget: str) -> dict:
    """Rank, means, paired differences against the median random cell, the seed spread; writes
    ``results.json``, ``results.md`` and ``results.png`` under ``args.results``."""
    cells = [*searched, *randoms]
    means = {n: (float(np.mean(r["psnr"])), float(np.mean(r["ssim"]))) for n, r in results.items()}
    random_names = sorted(randoms, key=lambda n: means[n][0])
    median_random = random_names[len(random_names) // 2]
    rank = {n: 1 + sorted((means[m][0] for m in cells), reverse=True).index(means[n][0]) for n in cells}
    report = {"benchmark": "search_vs_random", "machine": describe(), "space": args.space, "nodes": args.nodes,
              "random_gflops": target, "random_budget": budget,
              "search_preset": args.search_preset, "train_preset": args.train_preset, "median_random": median_random,
              "cells": {n: {"mean_psnr": means[n][0], "mean_ssim": means[n][1], "rank_psnr": rank.get(n),
                            "gflops": results[n]["gflops"], "genotype": results[n]["genotype"],
                            "trained_as": results[n].get("trained_as", n),
                            "vs_median_random": {k: B.paired(results[n][k], results[median_random][k], seed=3)
                                                 for k in ("psnr", "ssim")}} for n in results},
              "seed_spread_psnr": _seed_spread(means, searched, args.seeds)}
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", report)
    lines = [f"Searched vs random cells (space {args.space}, {args.nodes} nodes; search {args.search_preset}, "
             f"retrain {args.train_preset}); random cells at {target:.2f} GFLOPs ± {args.flops_tolerance:.0%}, "
             f"{budget}; median random cell: {median_random}", "",
             "| cell | GFLOPs | PSNR dB | SSIM | rank (PSNR, of cells) | Δ PSNR vs median random [95% CI] | Δ SSIM |",
             "|---|---|---|---|---|---|---|"]
    for n, c in sorted(report["cells"].items(), key=lambda kv: -kv[1]["mean_psnr"]):
        p, s = c["vs_median_random"]["psnr"], c["vs_median_random"]["ssim"]
        lines.append(f"| {n} | {c['gflops']:.2f} | {c['mean_psnr']:.2f} | {c['mean_ssim']:.4f} | {c['rank_psnr'] or '-'} | "
                     f"{p['mean']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] | {s['mean']:+.4f} |")
    lines += ["", "Seed-to-seed spread (std of mean PSNR): "
              + ", ".join(f"{m} {v:.2f} dB" for m, v in report["seed_spread_psnr"].items())]
    atomic_write_bytes(args.results / "results.md", ("\n".join(lines) + "\n").encode())
    _figure(report, args.results / "results.png")
    print("\n".join(lines))
    return report


def _seed_spread(means: dict, searched: list[str], seeds) -> dict[str, float]:
    """Per method, the std over seeds of the mean PSNR (methods with two or more seeds scored)."""
    spread = {}
    for method in sorted({n.rsplit("_seed", 1)[0] for n in searched if "_seed" in n}):
        values = [means[k][0] for s in seeds if (k := f"{method}_seed{s}") in means]
        if len(values) > 1:
            spread[method] = statistics.pstdev(values)
    return spread


def _figure(report: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), constrained_layout=True)
    axes = fig.subplots(1, 2)
    cells = sorted(report["cells"].items(), key=lambda kv: kv[1]["mean_psnr"])
    colours = ["tab:grey" if n.startswith("random") else "tab:green" if n == "dccnn3" else "tab:blue" for n, _ in cells]
    # each cell's paired difference from the median random cell, with its 95% bootstrap interval
    for ax, key, label, fmt in [(axes[0], "psnr", "PSNR - median random cell (dB)", "{:+.2f}"),
                                (axes[1], "ssim", "SSIM - median random cell", "{:+.4f}")]:
        diffs = [c["vs_median_random"][key] for _, c in cells]
        means = [d["mean"] for d in diffs]
        errors = [[m - d["ci_low"] for m, d in zip(means, diffs)], [d["ci_high"] - m for m, d in zip(means, diffs)]]
        ax.barh(range(len(cells)), means, xerr=errors, color=colours, capsize=2)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(cells)), [n for n, _ in cells], fontsize=8)
        for y, (m, d) in enumerate(zip(means, diffs)):  # the value beyond the whisker's end
            ax.annotate(fmt.format(m), (d["ci_high"] if m >= 0 else d["ci_low"], y), xytext=(3 if m >= 0 else -3, 0),
                        textcoords="offset points", ha="left" if m >= 0 else "right", va="center", fontsize=7)
        lo, hi = min(d["ci_low"] for d in diffs), max(d["ci_high"] for d in diffs)
        pad = 0.3 * (hi - lo) or 0.01
        ax.set_xlim(min(lo, 0) - pad, max(hi, 0) + pad)
        ax.set_xlabel(label)
    axes[0].set_title("blue: searched, grey: random (same space, FLOPs within 10%), green: DCCNN-3; "
                      "bars: mean over slices, whiskers: 95% CI", fontsize=8)
    save_figure(fig, path, dpi=90)


if __name__ == "__main__":
    main()
