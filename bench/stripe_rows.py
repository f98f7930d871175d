"""Benchmark: NasN's fast plan with whole images vs horizontal stripes, per image size.

    python bench/stripe_rows.py [--sizes 320 640] [--rows none 64 96 160 auto] [--repeats 9]

Runs the shipped NasN through :class:`backend.models.fast.FastNasNModule` with each
``stripe_rows`` setting (batch 1, eval, ``torch.inference_mode``) on a random complex image at
4x, next to the shipped DCCNN-3's fast path on the same input (all timed in interleaved
rounds of one call each), and reports the median latency
and the max abs difference from the reference module (``fused_kernel``: whether the plan ran
the C kernel of ``backend.models.kernels``; ``NASCSMRI_KERNELS=0`` measures the oneDNN plan). The ``"auto"`` rule
(:data:`backend.models.fast.STRIPE_BYTES`) was chosen from this table. Writes
``bench/results/stripe_rows_<cpu slug>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from backend.machine import describe, slug  # noqa: E402
from backend.files import write_json  # noqa: E402
from backend.models import load_model, shipped_weights  # noqa: E402
from backend.models.fast import FastCascade, FastNasNModule  # noqa: E402
from backend.models.inference import prepare_for_inference  # noqa: E402
from timing import interleaved_times, random_slice  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--rows", nargs="+", default=["none", "64", "96", "160", "auto"])
    parser.add_argument("--repeats", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    settings = [None if r == "none" else r if r == "auto" else int(r) for r in args.rows]
    reference = load_model(shipped_weights("nasn"))[0].eval()
    planned = prepare_for_inference(load_model(shipped_weights("nasn"))[0], "fast")
    dccnn = prepare_for_inference(load_model(shipped_weights("dccnn"))[0], "fast")
    rows = []
    print(f"{'size':>5} {'model':<8} {'stripe_rows':>11} {'latency ms':>10} {'x DCCNN-3':>9} {'max diff':>9}")
    for size in args.sizes:
        x, k0, mask = random_slice(size, image_seed=size)
        with torch.inference_mode():
            expected = reference(x, k0, mask)
        models = [FastCascade(planned, [FastNasNModule(r, setting) for r in reference.recon]).eval()
                  for setting in settings]
        outputs, times = interleaved_times([dccnn, *models], (x, k0, mask), args.repeats)
        base, *medians = [statistics.median(t) for t in times]
        rows.append({"size": size, "model": "DCCNN-3", "stripe_rows": None, "latency_s": base, "max_abs_diff": None})
        print(f"{size:>5} {'DCCNN-3':<8} {'-':>11} {base * 1000:>10.1f} {1.0:>9.2f} {'-':>9}", flush=True)
        for setting, model, latency, out in zip(settings, models, medians, outputs[1:]):
            diff = (out - expected).abs().max().item()
            rows.append({"size": size, "model": "NasN", "stripe_rows": setting, "latency_s": latency,
                         "max_abs_diff": diff, "latency_ratio_to_dccnn3": latency / base,
                         "fused_kernel": model.recon[0].kernel is not None})
            print(f"{size:>5} {'NasN':<8} {str(setting):>11} {latency * 1000:>10.1f} {latency / base:>9.2f} "
                  f"{diff:>9.1e}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"stripe_rows_{slug()}.json"
    write_json(path, {"machine": describe(), "threads": torch.get_num_threads(), "rows": rows,
                      "command": "python bench/stripe_rows.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
