"""Multi-coil data: the tool's single-coil path against TV with coil sensitivities (issue #21).

    python bench/multicoil.py --data data/brain [--out runs/realistic] [--results bench/results/multicoil]
        [--accelerations 4 8] [--max-slices N] [--weights nasn=W dccnn=W] [--methods zero-filled tv dccnn nasn]

Cases: the realistic benchmark's ``multicoil`` category (:func:`backend.benchmark.build_cases`
on the held-out test split: 8 simulated coils with smooth complex sensitivities, 35 dB noise per
coil, the RSS image as reference). Methods, on the same slices, the same seeded masks (the
per-volume seeds of ``nascsmri reconstruct``) and the same metric code:

* the tool's path for multi-coil files (``--methods``: zero-filled, TV at the paper's setting,
  DCCNN-3, NasN): the coils combined by root-sum-of-squares, the RSS image simulated as
  single-coil k-space, that k-space undersampled and reconstructed (scores shared with
  ``bench/realistic.py`` through the same cache keys);
* ``TV multi-coil``: the *undersampled coil* k-space reconstructed by BART ``pics`` with ESPIRiT
  maps calibrated on the mask's fully sampled centre, TV at the paper's setting
  (:func:`backend.coils.tv_multicoil_volume`).

The two paths do not solve the same problem: the single-coil path undersamples a zero-phase
image made from fully sampled coils; the multi-coil TV works from the undersampled coils. Writes
``RESULTS/results.json``, ``results.md``; per-file metrics are cached in ``OUT/cache.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from backend import benchmark as B
from backend.coils import tv_multicoil_volume
from backend.datasets import dataset_files
from backend.files import atomic_write_bytes, write_json
from backend.machine import describe

RESULTS = Path(__file__).resolve().parent / "results" / "multicoil"
LABELS = {"zero-filled": "zero-filled (RSS path)", "tv": "TV (RSS path)", "dccnn": "DCCNN-3 (RSS path)",
          "nasn": "NasN (RSS path)", "tv-multicoil": "TV multi-coil (ESPIRiT)"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/realistic"), help="cases and metric cache (shared)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--methods", nargs="+", default=["zero-filled", "tv", "dccnn", "nasn"])
    ap.add_argument("--weights", nargs="*", default=[], metavar="NAME=FILE")
    ap.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    ap.add_argument("--max-slices", type=int, default=None)
    args = ap.parse_args(argv)

    import realistic  # the single-coil path's methods and cache, from bench/realistic.py

    weights = dict(w.split("=", 1) for w in args.weights)
    cases = list(B.build_cases(dataset_files(args.data, "test"), args.out / "test", ("multicoil",), args.max_slices))
    cache = realistic.Cache(args.out / "cache.json")
    scores = {}
    for method in args.methods:
        tag = method if method not in realistic.NETWORKS else f"{method}@{weights.get(method, 'shipped')}"
        scores[method] = realistic.run_method(cache, tag, realistic.method_factory(method, weights), cases,
                                              args.accelerations, print)["multicoil"]
    scores["tv-multicoil"] = {}
    for _, path in cases:
        for acc in args.accelerations:
            key = f"tv-multicoil|multicoil|{path.name}|{acc:g}"
            start = time.time()

            def compute():
                reference, prediction = tv_multicoil_volume(path, acc)
                return B.slice_metrics(reference, prediction)

            m = cache.get(key, compute)
            print(f"tv-multicoil {acc:g}x {path.name}: PSNR {np.mean(m['psnr']):.2f} SSIM {np.mean(m['ssim']):.4f} "
                  f"({time.time() - start:.0f} s)")
            slot = scores["tv-multicoil"].setdefault(f"{acc:g}", {"psnr": [], "ssim": []})
            slot["psnr"] += m["psnr"]
            slot["ssim"] += m["ssim"]

    methods = args.methods + ["tv-multicoil"]
    lines = [f"Multi-coil cases (8 simulated coils, held-out test subject, {len(cases)} files); "
             "PSNR dB ± std / SSIM against the RSS reference.", "",
             "| acc | " + " | ".join(LABELS[m] for m in methods) + " |", "|---|" + "---|" * len(methods)]
    table = {}
    for acc in (f"{a:g}" for a in args.accelerations):
        row = {m: {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in scores[m][acc].items()}
               for m in methods}
        for m in methods[:-1]:
            row[m]["minus_tv_multicoil"] = {k: B.paired(scores[m][acc][k], scores["tv-multicoil"][acc][k], seed=7)
                                            for k in ("psnr", "ssim")}
        table[acc] = row
        lines.append(f"| {acc}x | " + " | ".join(f"{row[m]['psnr']['mean']:.2f} ± {row[m]['psnr']['std']:.2f} / "
                                                 f"{row[m]['ssim']['mean']:.4f}" for m in methods) + " |")
    lines += ["", "Paired X − TV multi-coil over slices: mean [95% bootstrap CI] (slices where X is better)", "",
              "| acc | X | ΔPSNR dB | ΔSSIM |", "|---|---|---|---|"]
    for acc, row in table.items():
        for m in methods[:-1]:
            d = row[m]["minus_tv_multicoil"]
            lines.append(f"| {acc}x | {LABELS[m]} | " + " | ".join(
                f"{d[k]['mean']:+.{2 if k == 'psnr' else 4}f} [{d[k]['ci_low']:+.{2 if k == 'psnr' else 4}f}, "
                f"{d[k]['ci_high']:+.{2 if k == 'psnr' else 4}f}] ({d[k]['wins']}/{d[k]['n']})" for k in ("psnr", "ssim"))
                + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", {"machine": describe(), "weights": weights, "table": table,
                                                "accelerations": args.accelerations})
    atomic_write_bytes(args.results / "results.md", text.encode())
    return 0


if __name__ == "__main__":  # run as a script: bench/ (and realistic.py) is on sys.path
    raise SystemExit(main())
