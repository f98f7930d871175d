"""Benchmark: bfloat16 on the CPU, NasN against DCCNN-3 (issue #17's "DCCNN-3 given the same treatment").

    python bench/bf16_cpu.py [--size 320] [--rounds 10] [--out DIR]

The shipped NasN and DCCNN-3 weights, batch 1, eval. Speed: one random 4x slice of
``--size`` (as ``bench/head_to_head.py``), every plan timed in interleaved rounds: NasN fast
(the C kernel, float32 only), NasN's oneDNN plan and DCCNN-3 fast, each in float32 and under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (what PyTorch gives a user who asks for bf16;
oneDNN runs bf16 convolutions with AVX512_BF16 where the CPU has it). Accuracy: the shipped
sample's 8 real slices reconstructed at 4x (random mask, seed 0) through
``backend.recon.reconstruct_volume`` in each precision: PSNR / SSIM against the reference and
the largest difference bf16 - float32 in % of the reference maximum. Writes
``bench/results/bf16_cpu_<cpu slug>.json`` and prints a table. Nothing else should use the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
from backend import config as cfg  # noqa: E402
from backend.files import write_json  # noqa: E402
from backend.machine import describe, slug  # noqa: E402
from backend.progress import run as run_generator  # noqa: E402
from backend.recon import NetworkReconstructor, reconstruct_volume  # noqa: E402
from backend.sample import sample_path  # noqa: E402
from head_to_head import plans  # noqa: E402
from timing import interleaved_times, random_slice  # noqa: E402

ONEDNN, DCCNN = "NasN fast, oneDNN only", "DCCNN-3 fast"


def precision(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


class Precision(torch.nn.Module):
    """``model`` run in float32 or under bf16 autocast; the output back in float32."""

    def __init__(self, model: torch.nn.Module, bf16: bool):
        super().__init__()
        self.model, self.bf16 = model, bf16

    def forward(self, *inputs):
        with precision(self.bf16):
            return self.model(*inputs).float()


def accuracy(model: torch.nn.Module, bf16: bool, name: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics of the shipped sample at 4x, the magnitudes and the reference; ``model`` (a
    prepared plan) in that precision, driven as ``nascsmri reconstruct`` drives a network."""
    config = cfg.ReconConfig(model=name, mask="random", acceleration=4, seed=0, device="cpu", batch_size=1)
    recon = NetworkReconstructor(torch.nn.Identity(), torch.device("cpu"), "fast")
    recon.model = Precision(model, bf16)  # the plan as prepared above, not prepared again
    result = run_generator(reconstruct_volume(sample_path(), config, recon))
    return result.metrics.as_dict(), result.reconstruction, result.reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    base = plans()
    kernel = next(n for n in base if n.startswith("NasN fast ("))  # "(C kernel)" or "(no C kernel here)"
    variants = {(kernel, "float32"): base[kernel]}
    for name in (ONEDNN, DCCNN):
        for bf16 in (False, True):
            variants[(name, "bf16" if bf16 else "float32")] = Precision(base[name], bf16)
    keys = list(variants)
    _, all_times = interleaved_times(list(variants.values()), random_slice(args.size), args.rounds, args.warmup)
    times = dict(zip(keys, all_times))
    reference_ms = statistics.median(times[(DCCNN, "float32")]) * 1e3
    rows = []
    quality: dict[tuple[str, str], tuple[dict, np.ndarray]] = {}
    print(f"{'plan':<24} {'precision':<9} {'median ms':>9} {'x DCCNN-3 fp32':>14} {'PSNR dB':>8} {'SSIM':>7}"
          f" {'max |bf16-fp32| %':>17}")
    for name, prec in keys:
        model = variants[(name, prec)]
        plan = model.model if isinstance(model, Precision) else model
        metrics, images, ref = accuracy(plan, prec == "bf16", "dccnn" if name == DCCNN else "nasn")
        quality[(name, prec)] = (metrics, images)
        diff = None
        if prec == "bf16":
            diff = float(np.abs(images - quality[(name, "float32")][1]).max() / ref.max() * 100)
        ms = statistics.median(times[(name, prec)]) * 1e3
        row = {"plan": name, "precision": prec, "median_ms": ms, "ratio_to_dccnn3_float32": ms / reference_ms,
               "times_s": times[(name, prec)], "sample_psnr": metrics["psnr"], "sample_ssim": metrics["ssim"],
               "max_diff_to_float32_percent_of_reference_max": diff}
        rows.append(row)
        print(f"{name:<24} {prec:<9} {ms:>9.1f} {ms / reference_ms:>14.3f} {metrics['psnr']:>8.2f} "
              f"{metrics['ssim']:>7.4f} {'-' if diff is None else f'{diff:.3f}':>17}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bf16_cpu_{slug()}.json"
    write_json(path, {"machine": describe(), "threads": torch.get_num_threads(), "size": args.size,
                      "rounds": args.rounds, "accuracy": "shipped sample, 8 slices, 4x random mask seed 0",
                      "rows": rows, "command": "python bench/bf16_cpu.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
