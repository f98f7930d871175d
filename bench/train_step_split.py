"""Experiment (issue #17): a batch-2 CPU training step split over its samples, one thread each.

    python bench/train_step_split.py [--rounds 10]

For NasN (training plan) and DCCNN-3 as ``bench/train_step.py`` builds them (same batch),
interleaved per round: the plain step with torch's 2
threads, and the same step as two single-sample forward/backward passes on two Python worker
threads of one torch thread each, their gradients summed (checked against the plain step's)
before the fused Adam step. Prints medians and ratios to DCCNN-3's plain step; writes
``bench/results/train_step_split_<cpu slug>.json``. Tried in session 18 and not adopted (README,
"Performance"). Run it with nothing else using the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import RESULTS, trainers  # noqa: E402

from backend.files import write_json  # noqa: E402
from backend.machine import describe  # noqa: E402
from backend.models.inference import tune_allocator  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default: bench/results/train_step_split_<cpu>.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    tune_allocator()
    built = trainers(2, args.crop)  # bench/train_step.py's models, batch and plain step
    models = {"nasn": built[0], "dccnn": built[2]}  # NasN's training plan, DCCNN-3
    data = built[0].data
    pool = ThreadPoolExecutor(2, initializer=lambda: torch.set_num_threads(1))

    def part_grads(net, params, i):
        x, k0, mask, target = (t[i:i + 1] for t in data)
        return torch.autograd.grad(F.l1_loss(net(x, k0, mask), target) / 2, params)

    def split_grads(t):
        params = list(t.model.parameters())
        g0, g1 = (f.result() for f in [pool.submit(part_grads, t.net, params, i) for i in (0, 1)])
        return params, [a.add_(b) for a, b in zip(g0, g1)]

    def split(t):
        params, grads = split_grads(t)
        for p, g in zip(params, grads):
            p.grad = g
        t.optimiser.step()

    agreement = {}
    for name, t in models.items():
        x, k0, mask, target = data
        ref = torch.autograd.grad(F.l1_loss(t.net(x, k0, mask), target), list(t.model.parameters()))
        _, grads = split_grads(t)
        a, b = torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in ref])
        agreement[name] = ((a - b).norm() / b.norm()).item()
    variants = [(n, mode) for n in ("nasn", "dccnn") for mode in ("plain", "split")]
    times = {v: [] for v in variants}
    for r in range(args.warmup + args.rounds):
        for v in variants:
            t = models[v[0]]
            start = time.perf_counter()
            if v[1] == "plain":
                t.step()
            else:
                split(t)
            if r >= args.warmup:
                times[v].append(time.perf_counter() - start)
    base = times[("dccnn", "plain")]
    rows = [{"model": n, "mode": mode, "median_ms": statistics.median(t) * 1e3,
             "ratio_to_dccnn3_plain": statistics.median([a / b for a, b in zip(t, base)]), "times_s": t}
            for (n, mode), t in times.items()]
    machine = describe()
    report = {"benchmark": "train_step_split", "machine": machine, "crop": args.crop, "batch": 2,
              "rounds": args.rounds, "gradient_rel_diff_split_vs_plain": agreement, "rows": rows}
    out = args.out or RESULTS / f"train_step_split_{machine['slug']}.json"
    write_json(out, report)
    print(f"{machine['cpu']} ({machine['family_model_stepping']}), torch {machine['torch']}; batch 2, {args.crop}x{args.crop}")
    print(f"{'model':8s} {'mode':24s} {'median ms':>10s} {'x DCCNN-3 plain':>16s}")
    for row in rows:
        mode = "2 threads" if row["mode"] == "plain" else "2 samples x 1 thread"
        print(f"{row['model']:8s} {mode:24s} {row['median_ms']:10.1f} {row['ratio_to_dccnn3_plain']:16.3f}")
    print(f"split vs plain gradients: relative difference {agreement}; written {out}")
    return report


if __name__ == "__main__":
    main()
