"""Multi-coil data: reconstruction from the coils against the root-sum-of-squares path (issue #21).

    python bench/multicoil.py --data data/brain [--out runs/realistic] [--results bench/results/multicoil]
        [--accelerations 4 8] [--max-slices N] [--weights nasn=W dccnn=W] [--methods zero-filled tv dccnn nasn]
        [--mask random|gaussian2d|poisson|...] [--coils 8|2]

Cases: the realistic benchmark's ``multicoil`` category (:func:`backend.benchmark.build_cases`
on the held-out test split: 8 simulated coils with smooth complex sensitivities, 35 dB noise per
coil, the RSS image as reference), or with ``--coils 2`` its two-coil variant ``multicoil_2``
(the same model with 2 coils: a real two-channel file gives SENSE much less to work with).
Every method runs twice, on the same slices, the same seeded masks (the per-volume seeds of
``nascsmri reconstruct``) and the same metric code:

* **from the coils** (``--coils multi``, what ``nascsmri reconstruct``'s default ``auto`` does
  unless too few calibration lines or maps that miss the calibration data send it to the RSS path): the
  *undersampled coil* k-space, ESPIRiT maps calibrated on the mask's fully sampled centre;
  zero-filled = RSS of the zero-filled coil images, TV = BART ``pics`` with the maps (the
  paper's setting), the networks with MoDL's CG SENSE data consistency
  (:mod:`backend.models.multicoil`; the shipped single-coil weights, not retrained); TV's and
  the networks' image returned as an RSS image (:func:`backend.recon_coils.rss_output`, since
  session 17; results before it are of ``|m|``);
* **RSS path** (``--coils rss``): the coils combined by root-sum-of-squares, the RSS image
  simulated as single-coil k-space, that k-space undersampled and reconstructed. It does not
  solve the same problem: it undersamples a zero-phase image made from fully sampled coils.

``--mask`` takes any mask type of ``nascsmri reconstruct`` (default ``random``, fastMRI's); with
a 2-D pattern the maps are calibrated on its fully sampled centre square. Paired differences are taken against TV from the coils. Writes ``RESULTS/results.json`` and
``results.md``; per-file metrics are cached in ``OUT/cache.json`` (shared with
``bench/realistic.py``, whose ``multicoil`` rows are the "from the coils" ones).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from backend import benchmark as B
from backend.datasets import dataset_files
from backend.files import atomic_write_bytes, write_json
from backend.machine import describe

RESULTS = Path(__file__).resolve().parent / "results" / "multicoil"
NAMES = {"zero-filled": "zero-filled", "tv": "TV", "dccnn": "DCCNN-3", "nasn": "NasN"}
PATHS = {"multi": "coils", "rss": "RSS path"}
REFERENCE = ("tv", "multi")


def label(method: str, coils: str) -> str:
    return f"{NAMES[method]} ({PATHS[coils]})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/realistic"), help="cases and metric cache (shared)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--methods", nargs="+", default=["zero-filled", "tv", "dccnn", "nasn"])
    ap.add_argument("--weights", nargs="*", default=[], metavar="NAME=FILE")
    ap.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    ap.add_argument("--max-slices", type=int, default=None)
    ap.add_argument("--mask", default="random", help="mask type (default: random, fastMRI's)")
    ap.add_argument("--coils", type=int, default=8, choices=sorted(B.COILS.values()),
                    help="emulated coils: 8 (the multicoil category, default) or 2 (multicoil_2)")
    args = ap.parse_args(argv)
    category = next(c for c, n in B.COILS.items() if n == args.coils)

    import realistic  # the methods and the cache of bench/realistic.py

    weights = dict(w.split("=", 1) for w in args.weights)
    test_files = dataset_files(args.data, "test")
    cases = list(B.build_cases(test_files, args.out / "test", (category,), args.max_slices))
    cache = realistic.Cache(args.out / "cache.json")
    variants = [(m, c) for c in ("multi", "rss") for m in args.methods]
    if REFERENCE not in variants:
        variants.insert(0, REFERENCE)
    scores = {}
    for method, coils in variants:
        tag = method if method not in realistic.NETWORKS else f"{method}@{weights.get(method, 'shipped')}"
        scores[method, coils] = realistic.run_method(cache, tag, realistic.method_factory(method, weights, coils=coils, mask=args.mask),
                                                     cases, args.accelerations, print, coils=coils, mask=args.mask)[category]
    lines = [f"Multi-coil cases ({args.coils} simulated coils, held-out test subject, {len(cases)} files, {args.mask} masks); "
             "PSNR dB ± std / SSIM against the RSS reference.", "",
             "| acc | " + " | ".join(label(*v) for v in variants) + " |", "|---|" + "---|" * len(variants)]
    table = {}
    for acc in (f"{a:g}" for a in args.accelerations):
        row = {}
        for v in variants:
            row[label(*v)] = {k: {"mean": float(np.mean(x)), "std": float(np.std(x))} for k, x in scores[v][acc].items()}
            if v != REFERENCE:
                row[label(*v)]["minus_tv_coils"] = {k: B.paired(scores[v][acc][k], scores[REFERENCE][acc][k], seed=7)
                                                    for k in ("psnr", "ssim")}
        table[acc] = row
        lines.append(f"| {acc}x | " + " | ".join(f"{row[label(*v)]['psnr']['mean']:.2f} ± {row[label(*v)]['psnr']['std']:.2f} / "
                                                 f"{row[label(*v)]['ssim']['mean']:.4f}" for v in variants) + " |")
    lines += ["", f"Paired X − {label(*REFERENCE)} over slices: mean [95% bootstrap CI] (slices where X is better)", "",
              "| acc | X | ΔPSNR dB | ΔSSIM |", "|---|---|---|---|"]
    for acc, row in table.items():
        for name, r in row.items():
            if "minus_tv_coils" not in r:
                continue
            d = r["minus_tv_coils"]
            lines.append(f"| {acc}x | {name} | " + " | ".join(
                f"{d[k]['mean']:+.{2 if k == 'psnr' else 4}f} [{d[k]['ci_low']:+.{2 if k == 'psnr' else 4}f}, "
                f"{d[k]['ci_high']:+.{2 if k == 'psnr' else 4}f}] ({d[k]['wins']}/{d[k]['n']})" for k in ("psnr", "ssim"))
                + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    # per-slice scores as bench/realistic.py keeps them (method -> category -> acc), the coil
    # path as the method's own name and the RSS path as "METHOD (RSS path)": bench/compare_results.py pairs them
    per_slice = {(m if c == "multi" else f"{m} (RSS path)"): {category: scores[m, c]} for m, c in variants}
    write_json(args.results / "results.json", {"machine": describe(), "weights": weights, "mask": args.mask, "coils": args.coils, "table": table,
                                                "accelerations": args.accelerations,
                                                "test_files": [f.name for f in test_files],
                                                "max_slices": args.max_slices, "scores": per_slice})
    atomic_write_bytes(args.results / "results.md", text.encode())
    return 0


if __name__ == "__main__":  # run as a script: bench/ (and realistic.py) is on sys.path
    raise SystemExit(main())
