"""Benchmark: NasN against DCCNN-3 per slice, interleaved in one process (issue #8's target).

    python bench/head_to_head.py [--size 320] [--rounds 15] [--warmup 3]

The shipped NasN and DCCNN-3 weights, eval mode, batch 1, a real-looking 4x input (random
complex image, normalised as ``nascsmri reconstruct`` does). Three plans: NasN with
``--execution fast`` as it runs by default (the fused C kernel where
``backend.models.kernels.fused_pointwise`` provides it), NasN's fast plan on oneDNN
convolutions only (``kernel=False``), and DCCNN-3 fast. Each round times one slice of each,
in turn, so that a machine slowing down or speeding up affects all three alike; the ratio
NasN / DCCNN-3 is taken per round and its median reported (with the spread over rounds).
Writes ``bench/results/head_to_head_<size>_<cpu slug>.json`` and ``.png`` (latency per round, and
NasN / DCCNN-3 per round) and prints a table. ``--replot JSON`` redraws the figure of an
earlier run without timing anything. ``ONEDNN_MAX_CPU_ISA=AVX2 python bench/head_to_head.py
--avx2-paths`` runs, on a CPU with AVX-512, what an AVX2-only CPU runs (NasN's kernel built
without AVX-512, oneDNN held to AVX2), into ``..._avx2paths.json``: an indication, not a
measurement of such a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

from backend.machine import describe, slug  # noqa: E402

from backend.files import save_figure, write_json  # noqa: E402
from backend.models import load_model, shipped_weights  # noqa: E402
from backend.models.fast import FastCascade, FastNasNModule  # noqa: E402
from backend.models.inference import prepare_for_inference  # noqa: E402
from timing import interleaved_times, random_slice  # noqa: E402


def plans(avx2_paths: bool = False) -> dict[str, torch.nn.Module]:
    """The three plans; with ``avx2_paths`` NasN's C kernel is the build without AVX-512 (its
    AVX2 + FMA paths, as an AVX2-only CPU compiles it)."""
    nasn = prepare_for_inference(load_model(shipped_weights("nasn"))[0], "fast")
    if avx2_paths and nasn.recon[0].kernel is not None:
        import shutil

        from backend.models.kernels import FusedPointwise, build

        lib = FusedPointwise(build(shutil.which("cc"), ("-mno-avx512f",)))  # cached beside the native build
        for module in nasn.recon:
            module.kernel = lib
    same = load_model(shipped_weights("nasn"))[0].eval().to(memory_format=torch.channels_last)
    onednn = FastCascade(same, [FastNasNModule(r, kernel=False) for r in same.recon]).eval()
    dccnn = prepare_for_inference(load_model(shipped_weights("dccnn"))[0], "fast")
    kernel = nasn.recon[0].kernel is not None
    return {"NasN fast" + (" (C kernel)" if kernel else " (no C kernel here)"): nasn,
            "NasN fast, oneDNN only": onednn, "DCCNN-3 fast": dccnn}


def plot(report: dict, path: Path) -> Path:
    """Latency of each plan per round, and each NasN plan's ratio to DCCNN-3 per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    base = rows[-1]["times_s"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for row in rows:
        rounds = range(1, len(row["times_s"]) + 1)
        left.plot(rounds, [t * 1e3 for t in row["times_s"]], marker=".", label=row["plan"])
        if row is not rows[-1]:
            right.plot(rounds, [t / b for t, b in zip(row["times_s"], base)], marker=".", label=row["plan"])
    right.axhline(1.0, color="grey", linestyle="--", label="DCCNN-3 fast")
    left.set(xlabel="round", ylabel="ms per 320x320 slice" if report["size"] == 320 else "ms per slice",
             title=f"latency per round ({report['size']}x{report['size']}, {report['threads']} threads)")
    right.set(xlabel="round", ylabel="latency / DCCNN-3 latency (same round)", title="ratio to DCCNN-3")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--replot", metavar="JSON", default=None, help="redraw the figure of an earlier run and exit")
    parser.add_argument("--avx2-paths", action="store_true",
                        help="NasN's kernel built without AVX-512; with ONEDNN_MAX_CPU_ISA=AVX2 in the environment "
                             "oneDNN (DCCNN-3, the stem) does the same: what an AVX2-only CPU runs, on this one")
    args = parser.parse_args()
    if args.replot:
        print(f"wrote {plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix('.png'))}")
        return
    size = args.size
    models = plans(args.avx2_paths)
    names = list(models)

    def progress(r: int, round_times: list[float]) -> None:
        print(f"  round {r + 1}/{args.rounds}: "
              + ", ".join(f"{n} {t * 1e3:.0f} ms" for n, t in zip(names, round_times)), flush=True)

    outputs, all_times = interleaved_times(list(models.values()), random_slice(size), args.rounds, args.warmup,
                                           progress)
    times = dict(zip(names, all_times))
    diff = (outputs[0] - outputs[1]).abs().max().item()
    dccnn = times[names[2]]
    rows = []
    print(f"\n{'plan':<34} {'median ms':>9} {'min ms':>7} {'x DCCNN-3 (median of rounds)':>29} {'rounds range':>13}")
    for name in names:
        ratios = [t / d for t, d in zip(times[name], dccnn)]
        row = {"plan": name, "median_s": statistics.median(times[name]), "min_s": min(times[name]),
               "ratio_to_dccnn3_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
               "times_s": times[name]}
        rows.append(row)
        print(f"{name:<34} {row['median_s'] * 1e3:>9.1f} {row['min_s'] * 1e3:>7.1f} "
              f"{row['ratio_to_dccnn3_median']:>29.3f} {row['ratio_min']:>6.2f}-{row['ratio_max']:.2f}")
    print(f"max abs difference, NasN C kernel vs oneDNN plan: {diff:.1e} (normalised scale)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"head_to_head_{size}_{slug()}{'_avx2paths' if args.avx2_paths else ''}.json"
    write_json(path, {"size": size, "machine": describe(), "threads": torch.get_num_threads(),
                      "avx2_paths": args.avx2_paths, "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                      "rounds": args.rounds, "max_abs_diff_kernel_vs_onednn": diff, "rows": rows,
                      "command": "python bench/head_to_head.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path}")
    print(f"wrote {plot(json.loads(path.read_text()), path.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
