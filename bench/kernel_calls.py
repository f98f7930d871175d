"""Benchmark: where the shipped NasN's fused kernel spends its time, per kind of call.

    python bench/kernel_calls.py [--size 320] [--rounds 5] [--threads N] [--out DIR]

Runs the shipped NasN's fast plan (batch 1, eval, a random 4x slice as ``bench/head_to_head.py``
uses) and times every call of the fused C kernel (``backend.models.kernels.FusedPointwise.run``)
from Python, grouped by what the call computes: its inputs (channels, read through a ReLU or not,
depthwise geometry), the GEMM's shape, the addends and the outputs. For each kind: milliseconds
per forward, calls per forward and the multiply-adds per second it reached (the padded output
width, except for calls that write only channel planes: the AVX-512 and AVX2 builds compute
only the channels they take, the head's 18 of 32); beside them the
rate of a plain loop of independent FMAs on this CPU (``peak``, compiled here with the
kernel's flags) when a C compiler is found. The rest of the forward (the stem's convolution,
the data-consistency FFTs, the head's shifted sum) is the difference to the total. Writes
``bench/results/kernel_calls_<cpu slug>.json`` and prints a table. Nothing else should use the
CPU while it runs.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

from backend.files import write_json  # noqa: E402
from backend.machine import describe, slug  # noqa: E402
from backend.models import load_model, shipped_weights  # noqa: E402
from backend.models.inference import prepare_for_inference  # noqa: E402
from backend.models.kernels import FLAGS, PLANES_MAX_K, FusedPointwise  # noqa: E402
from timing import random_slice  # noqa: E402

PEAK_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
int main(void) {
#if defined(__AVX512F__)
    typedef __m512 v; enum { LANES = 16 };
#define FMA _mm512_fmadd_ps
#define SET _mm512_set1_ps
#else
    typedef __m256 v; enum { LANES = 8 };
#define FMA _mm256_fmadd_ps
#define SET _mm256_set1_ps
#endif
    v r[16], a = SET(0.9999f), b = SET(0.0001f);
    for (int i = 0; i < 16; i++) r[i] = SET(i * 0.001f);
    long n = 100000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++)
        for (int j = 0; j < 16; j++) r[j] = FMA(r[j], a, b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    float sink = 0; for (int i = 0; i < 16; i++) sink += ((float *)&r[i])[0];
    printf("%f %f\n", n * 16.0 * LANES / s / 1e9, sink);
    return 0;
}
"""


def peak_gmacs() -> float | None:
    """Multiply-adds per second (G) of one core in a loop of 16 independent FMA chains."""
    cc = shutil.which("cc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(PEAK_C)
        flags = [f for f in FLAGS if f not in ("-shared", "-fPIC", "-fopenmp")]
        if subprocess.run([cc, *flags, "-std=gnu11", "-o", str(exe), str(src)], capture_output=True).returncode:
            return None
        return float(subprocess.run([str(exe)], capture_output=True, text=True, timeout=120).stdout.split()[0])


def describe_call(inputs, weight, outputs, adds) -> str:
    parts = []
    for x, relu, taps, geometry in inputs:
        conv = f"dw{geometry[0][0]}x{geometry[0][1]} d{geometry[1][0]}" if taps is not None else "copy"
        parts.append(f"{x.shape[1]}{' relu' if relu else ''} {conv}")
    outs = ",".join(f"{y.shape[1]}{'R' if relu else ''}{'p' if not y.is_contiguous(memory_format=torch.channels_last) else ''}"
                    for y, _, relu in outputs)
    return f"[{'; '.join(parts)}] K{weight.shape[0]}->{weight.shape[1]} +{len(adds)} out {outs}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    nasn = prepare_for_inference(load_model(shipped_weights("nasn"))[0], "fast")
    if nasn.recon[0].kernel is None:
        raise SystemExit("kernel_calls: the fused kernel is not available here (no C compiler or no AVX2/AVX-512)")
    inputs = random_slice(args.size)
    stats: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0, 0])
    run = FusedPointwise.run

    def timed(self, inputs, weight, outputs, adds=(), bias=None):
        start = time.perf_counter()
        run(self, inputs, weight, outputs, adds, bias)
        seconds = time.perf_counter() - start
        h, w = inputs[0][0].shape[-2:]
        columns = weight.shape[1]  # the padded width; calls on the C planes path compute only theirs
        planes_only = outputs and not adds and all(not y.is_contiguous(memory_format=torch.channels_last)
                                                   for y, _, _ in outputs)
        if planes_only and self.vector_bits >= 256 and weight.shape[0] <= PLANES_MAX_K:
            columns = max(o + y.shape[1] for y, o, _ in outputs) - min(o for _, o, _ in outputs)
        macs = h * w * (weight.shape[0] * columns
                        + sum(x.shape[1] * taps.shape[0] for x, _, taps, _ in inputs if taps is not None))
        entry = stats[describe_call(inputs, weight, outputs, adds)]
        entry[0] += seconds
        entry[1] += 1
        entry[2] += macs

    totals = []
    FusedPointwise.run = timed
    try:
        with torch.no_grad():
            for r in range(2 + args.rounds):
                if r == 2:
                    stats.clear()
                start = time.perf_counter()
                nasn(*inputs)
                if r >= 2:
                    totals.append(time.perf_counter() - start)
    finally:
        FusedPointwise.run = run
    peak = peak_gmacs()
    threads = torch.get_num_threads()
    rows = []
    for name, (seconds, calls, macs) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
        rate = macs / seconds / 1e9
        rows.append({"call": name, "ms_per_forward": seconds / args.rounds * 1e3, "calls_per_forward": calls // args.rounds,
                     "gmacs_per_s": rate, "of_peak": None if peak is None else rate / (peak * threads)})
    kernel_ms = sum(r["ms_per_forward"] for r in rows)
    total_ms = sorted(totals)[len(totals) // 2] * 1e3
    print(f"{'ms':>7} {'calls':>5} {'GMAC/s':>7} {'of peak':>7}  call")
    for r in rows:
        share = "-" if r["of_peak"] is None else f"{r['of_peak']:.0%}"
        print(f"{r['ms_per_forward']:7.1f} {r['calls_per_forward']:5d} {r['gmacs_per_s']:7.1f} {share:>7}  {r['call']}")
    print(f"kernel {kernel_ms:.1f} ms of {total_ms:.1f} ms per forward (median of {args.rounds}); peak "
          + ("not measured" if peak is None else f"{peak:.1f} GMAC/s per core x {threads} threads"))
    result = {"machine": describe(), "threads": threads, "size": args.size, "rounds": args.rounds,
              "peak_gmacs_per_core": peak, "forward_ms": total_ms, "kernel_ms": kernel_ms, "rows": rows,
              "command": "python bench/kernel_calls.py " + " ".join(sys.argv[1:])}
    out = Path(args.out) / f"kernel_calls_{slug()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
