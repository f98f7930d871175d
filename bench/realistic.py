"""The realistic benchmark (issue #15): every method on held-out real scans, by category.

    python bench/realistic.py --data data/brain [--out runs/realistic] [--results bench/results/realistic]
        [--methods zero-filled tv tv-tuned dccnn nasn] [--weights nasn=W dccnn=W unet=W]
        [--accelerations 4 8] [--max-slices N] [--val-files 2] [--tv-weights 0.001 0.003 0.01 0.03 0.1]

Cases: :func:`backend.benchmark.build_cases` on the ``test`` split (held-out subjects only) in
the six categories of :data:`backend.benchmark.CATEGORIES` (every method reconstructs the
``multicoil`` cases from the coils, with ESPIRiT maps: :mod:`backend.recon_coils`); for ``tv-tuned`` the same
categories on ``--val-files`` validation files, where each category and acceleration gets the
TV weight of ``--tv-weights`` with the best mean PSNR. Every method sees the same slices and the
same seeded masks (the per-volume seeds of ``nascsmri reconstruct``) and is scored by the same
metric code. Per category and acceleration: mean +- std of per-slice PSNR and SSIM, and the
paired difference NasN - X with a 95% bootstrap interval over slices.

Writes ``RESULTS/results.json``, ``results.md`` and ``results.png``; per-file metrics are
cached in ``OUT/cache.json`` so that a killed run continues where it stopped. ``--reuse
RESULTS_JSON --reuse-methods ...`` takes those methods' per-slice scores from an earlier run on
the same test files (e.g. TV's, when only a network's weights changed); the report says which.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from backend import benchmark as B
from backend.config import ReconConfig
from backend.datasets import dataset_files
from backend.files import atomic_write_bytes, save_figure, write_json
from backend.machine import describe
from backend.recon import NetworkReconstructor, load_network, make_reconstructor
from backend.devices import resolve_device

NETWORKS = {"nasn": "NasN", "dccnn": "DCCNN-3", "unet": "U-net"}
LABELS = {"zero-filled": "zero-filled", "tv": "TV (paper: 0.01, 200 it.)", "tv-tuned": "TV (weight tuned on val)",
          **NETWORKS}


class Cache:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key, compute):
        if key not in self.data:
            self.data[key] = compute()
            write_json(self.path, self.data)
        return self.data[key]


def method_factory(method: str, weights: dict[str, str], tv_weight: float | None = None, coils: str = "multi",
                   mask: str = "random"):
    """``make(acceleration) -> (ReconConfig, reconstructor)`` for one method; ``coils`` decides how
    the ``multicoil`` cases are reconstructed (``multi``: from the coils, what ``nascsmri
    reconstruct`` does by default; ``rss``: the root-sum-of-squares single-coil emulation);
    ``mask`` is the mask type (``ReconConfig.mask``)."""
    if method in NETWORKS:
        model, _ = load_network(method, weights.get(method))
        recon = NetworkReconstructor(model, resolve_device("auto"), "auto")
        return lambda acc: (ReconConfig(model=method, acceleration=acc, coils=coils, mask=mask), recon)
    name = "tv" if method.startswith("tv") else method
    extra = {} if tv_weight is None else {"tv_weight": tv_weight}
    return lambda acc: (ReconConfig(model=name, acceleration=acc, coils=coils, mask=mask, **extra),
                        make_reconstructor(ReconConfig(model=name, acceleration=acc, **extra)))


def cache_key(tag: str, category: str, name: str, acc: float, coils: str = "multi", mask: str = "random") -> str:
    """The metric cache's key; multi-coil cases reconstructed from the coils carry ``|coils-rss``
    (keys without it are the root-sum-of-squares path, as all were before session 8; ``|coils``,
    sessions 8-16, are outputs before :func:`backend.recon_coils.rss_output`), masks other than
    the default ``random`` carry ``|mask=KIND``."""
    return (f"{tag}|{category}|{name}|{acc:g}" + ("|coils-rss" if category in B.COILS and coils != "rss" else "")
            + ("" if mask == "random" else f"|mask={mask}"))


def run_method(cache: Cache, tag: str, make, cases: list[tuple[str, Path]], accelerations, log,
               coils: str = "multi", mask: str = "random") -> dict:
    """``{category: {acc: {"psnr": [...], "ssim": [...]}}}`` over all case files (slices
    concatenated); ``coils`` and ``mask`` must be the ones ``make`` was built with."""
    out: dict = {}
    for category, path in cases:
        for acc in accelerations:
            key = cache_key(tag, category, path.name, acc, coils, mask)
            start = time.time()
            m = cache.get(key, lambda: B.evaluate(path, make, acc))
            if time.time() - start > 1:
                log(f"{tag:>22s} {category:>10s} {acc:g}x {path.name}: PSNR {np.mean(m['psnr']):.2f} "
                    f"SSIM {np.mean(m['ssim']):.4f} ({time.time() - start:.0f} s)")
            slot = out.setdefault(category, {}).setdefault(f"{acc:g}", {"psnr": [], "ssim": []})
            slot["psnr"] += m["psnr"]
            slot["ssim"] += m["ssim"]
    return out


def summarise(scores: dict, methods: list[str], accelerations) -> dict:
    table = {}
    for category in B.CATEGORIES:
        for acc in (f"{a:g}" for a in accelerations):
            if category not in scores.get("nasn", {}):
                continue
            row = {}
            for m in methods:
                s = scores[m][category][acc]
                row[m] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in s.items()}
                if m != "nasn" and "nasn" in scores:
                    n = scores["nasn"][category][acc]
                    row[m]["nasn_minus"] = {k: B.paired(n[k], s[k], seed=7) for k in ("psnr", "ssim")}
            table[f"{category}|{acc}"] = row
    return table


def markdown(table: dict, methods: list[str], header: str) -> str:
    lines = [header, "", "| category | acc | " + " | ".join(LABELS[m] for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for key, row in table.items():
        category, acc = key.split("|")
        cells = [f"{row[m]['psnr']['mean']:.2f} ± {row[m]['psnr']['std']:.2f} / {row[m]['ssim']['mean']:.4f}"
                 for m in methods]
        lines.append(f"| {category} | {acc}x | " + " | ".join(cells) + " |")
    lines += ["", "Paired NasN − X over slices: mean [95% bootstrap CI] (slices where NasN is better)", "",
              "| category | acc | X | ΔPSNR dB | ΔSSIM |", "|---|---|---|---|---|"]
    for key, row in table.items():
        category, acc = key.split("|")
        for m in methods:
            if "nasn_minus" not in row.get(m, {}):
                continue
            p, s = row[m]["nasn_minus"]["psnr"], row[m]["nasn_minus"]["ssim"]
            lines.append(f"| {category} | {acc}x | {LABELS[m]} | {p['mean']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}]"
                         f" ({p['wins']}/{p['n']}) | {s['mean']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]"
                         f" ({s['wins']}/{s['n']}) |")
    return "\n".join(lines) + "\n"


def figure(table: dict, methods: list[str], accelerations, path: Path) -> None:
    from matplotlib.figure import Figure

    others = [m for m in methods if m not in ("nasn", "zero-filled")]
    fig = Figure(figsize=(13, 7), constrained_layout=True)
    axes = fig.subplots(2, len(accelerations), squeeze=False)
    for col, acc in enumerate(f"{a:g}" for a in accelerations):
        for row, metric in enumerate(("psnr", "ssim")):
            ax = axes[row][col]
            cats = [c for c in B.CATEGORIES if f"{c}|{acc}" in table]
            width = 0.8 / max(1, len(others))
            for k, m in enumerate(others):
                d = [table[f"{c}|{acc}"][m]["nasn_minus"][metric] for c in cats]
                x = np.arange(len(cats)) + (k - (len(others) - 1) / 2) * width
                ax.bar(x, [v["mean"] for v in d], width, label=f"NasN − {LABELS[m]}",
                       yerr=[[v["mean"] - v["ci_low"] for v in d], [v["ci_high"] - v["mean"] for v in d]], capsize=2)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(range(len(cats)), cats, fontsize=9)
            ax.set_ylabel(f"Δ{'PSNR dB' if metric == 'psnr' else 'SSIM'} (NasN − X)")
            ax.set_title(f"{acc}x, {metric.upper()}: bars = mean over slices, whiskers = 95% bootstrap CI", fontsize=9)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    save_figure(fig, path, dpi=90)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="prepared dataset (test/ and val/ splits)")
    ap.add_argument("--out", type=Path, default=Path("runs/realistic"), help="cases and metric cache")
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "realistic")
    ap.add_argument("--methods", nargs="+", default=["zero-filled", "tv", "tv-tuned", "dccnn", "nasn"])
    ap.add_argument("--weights", nargs="*", default=[], metavar="NAME=FILE", help="weights per network (default: shipped)")
    ap.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    ap.add_argument("--max-slices", type=int, default=None, help="slices per file (default all)")
    ap.add_argument("--val-files", type=int, default=2, help="validation files for tuning TV's weight")
    ap.add_argument("--tv-weights", nargs="+", type=float, default=[0.001, 0.003, 0.01, 0.03, 0.1])
    ap.add_argument("--categories", nargs="+", default=list(B.CATEGORIES), choices=B.CATEGORIES)
    ap.add_argument("--reuse", type=Path, default=None, metavar="RESULTS_JSON",
                    help="take the per-slice scores of --reuse-methods from an earlier results.json of the "
                         "same test files (checked: file names and slice counts)")
    ap.add_argument("--reuse-methods", nargs="+", default=[], choices=list(LABELS))
    args = ap.parse_args(argv)
    weights = dict(w.split("=", 1) for w in args.weights)
    cache = Cache(args.out / "cache.json")
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    test_files = dataset_files(args.data, "test")
    cases = list(B.build_cases(test_files, args.out / "test", args.categories, args.max_slices))
    scores, chosen, reused = {}, {}, {}
    earlier = json.loads(args.reuse.read_text()) if args.reuse else None
    if earlier is not None and earlier["test_files"] != [f.name for f in test_files]:
        raise SystemExit(f"realistic: {args.reuse}: its test files differ from {args.data}'s")
    for method in args.methods:
        if method in args.reuse_methods and earlier is not None:
            scores[method] = {c: earlier["scores"][method][c] for c in args.categories}
            reused[method] = str(args.reuse)
            if method == "tv-tuned":
                chosen.update({k: w for k, w in earlier["tv_tuned_weights"].items() if k.split("|")[0] in args.categories})
        elif method == "tv-tuned":
            val = list(B.build_cases(dataset_files(args.data, "val")[: args.val_files], args.out / "val",
                                     args.categories, args.max_slices))
            for category in args.categories:
                for acc in args.accelerations:
                    subset = [c for c in val if c[0] == category]
                    best = max(args.tv_weights, key=lambda w: np.mean(run_method(
                        cache, f"tv@{w:g}", method_factory("tv", weights, w), subset, [acc], log)[category][f"{acc:g}"]["psnr"]))
                    chosen[f"{category}|{acc:g}"] = best
                    part = run_method(cache, f"tv@{best:g}", method_factory("tv", weights, best),
                                      [c for c in cases if c[0] == category], [acc], log)
                    scores.setdefault(method, {}).setdefault(category, {}).update(part[category])
        else:
            scores[method] = run_method(cache, method if method not in NETWORKS else f"{method}@{weights.get(method, 'shipped')}",
                                        method_factory(method, weights), cases, args.accelerations, log)
    counts = {m: [len(scores[m][c][f"{a:g}"]["psnr"]) for c in args.categories for a in args.accelerations] for m in scores}
    if len({tuple(v) for v in counts.values()}) > 1:
        raise SystemExit(f"realistic: slice counts differ between methods (reused and computed): {counts}")
    table = summarise(scores, args.methods, args.accelerations)
    n_slices = len(next(iter(next(iter(scores.values())).values()))[f"{args.accelerations[0]:g}"]["psnr"])
    header = (f"Realistic benchmark: {len(test_files)} held-out test files, {n_slices} slices per category; "
              f"PSNR dB ± std / SSIM (mean over slices). Weights: {weights or 'shipped'}. "
              f"TV weights chosen on validation: {chosen or '-'}")
    report = {"benchmark": "realistic", "machine": describe(), "data": str(args.data), "test_files": [f.name for f in test_files],
              "weights": weights or "shipped", "tv_tuned_weights": chosen, "reused": reused, "table": table, "scores": scores}
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", report)
    text = markdown(table, args.methods, header)
    atomic_write_bytes(args.results / "results.md", text.encode())
    if "nasn" in args.methods and len(args.methods) > 1:
        figure(table, args.methods, args.accelerations, args.results / "results.png")
    print(text)
    return report


if __name__ == "__main__":
    main()
