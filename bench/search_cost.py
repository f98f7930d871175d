"""Benchmark: cost of one search epoch (time per step and epoch, peak memory) for a preset.

    python bench/search_cost.py --data data/brain --preset cpu [--steps 20] [--device auto]

Runs the real search loop (``backend.search.search``) for one short epoch on the prepared
dataset, prints a table and writes ``bench/results/search_cost_<preset>_<device>.json``.
Peak memory: the process's maximum resident set size (CPU), and
``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch


from backend import config as cfg  # noqa: E402
from backend.machine import describe, slug  # noqa: E402
from backend.files import write_json  # noqa: E402
from backend.devices import resolve_device  # noqa: E402
from backend.progress import run  # noqa: E402
from backend.search.search import search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/brain")
    parser.add_argument("--preset", default="cpu", choices=sorted(cfg.SEARCH_PRESETS))
    parser.add_argument("--steps", type=int, default=20, help="steps to time (after 2 warm-up steps)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    config = cfg.apply_preset(cfg.SearchConfig(data=args.data, preset=args.preset, device=str(device)),
                              cfg.SEARCH_PRESETS, {"epochs": 1, "steps_per_epoch": args.steps + 2, "patience": None})
    config = replace(config, warmup_epochs=0)  # time the alternating (weights + alpha) steps
    full = cfg.apply_preset(cfg.SearchConfig(preset=args.preset), cfg.SEARCH_PRESETS)
    times: list[float] = []
    last = [time.perf_counter()]

    def on_event(event) -> None:
        if event.kind == "step":
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now
        elif event.kind == "start":
            last[0] = time.perf_counter()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run(search(config, str(Path(tmp) / "run")), on_event)
        total = time.perf_counter() - t0
    step = sorted(times[2:])[len(times[2:]) // 2]  # median after warm-up
    steps_per_epoch = full.steps_per_epoch
    result = {
        "preset": args.preset, "device": str(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu": describe(),
        "supernet": {k: getattr(config, k) for k in ("space", "nodes", "channels", "cells", "cascades", "crop", "batch_size")},
        "seconds_per_step_median": step,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch_estimate": None if steps_per_epoch is None else step * steps_per_epoch,
        "note": "one step = a weights step on train_w + an alpha step on train_alpha; warm-up epochs "
                "(weights only) cost about half; validation not included",
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "wall_seconds_of_this_benchmark": total,
        "command": "python bench/search_cost.py " + " ".join(sys.argv[1:]),
    }
    print(f"{'preset':<8} {'device':<6} {'s/step (w+alpha)':>17} {'s/epoch':>9} {'peak RSS MiB':>13} {'peak CUDA MiB':>14}")
    epoch = result["seconds_per_epoch_estimate"]
    print(f"{args.preset:<8} {device.type:<6} {step:>17.3f} {('%.0f' % epoch) if epoch else 'n/a':>9} "
          f"{result['peak_rss_mib']:>13.0f} {('%.0f' % result['peak_cuda_mib']) if result['peak_cuda_mib'] else 'n/a':>14}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"search_cost_{args.preset}_{device.type if device.type != 'cpu' else slug()}.json"
    write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
