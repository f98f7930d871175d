"""Benchmark: per-slice latency, throughput and peak memory of every method at 320x320.

    python bench/inference_speed.py [--size 320] [--repeats 5] [--device auto]

Each (method, variant) runs in a fresh subprocess (so peak memory is its own maximum resident
set size) in eval mode on random 2-channel input with a 4x mask: latency = median time of one
slice (batch 1); throughput = slices/s at the best of batches 1, 2, 4. Variants:
``reference`` (float32, contiguous, ``torch.no_grad``) and ``fast`` (channels_last +
``torch.inference_mode``; bf16 autocast on CUDA). Ratios are to DCCNN-3 of the same variant,
so noisy machines still compare. Writes ``bench/results/inference_<device>.json`` and prints
a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = [("zero-filled", None, None), ("DCCNN-3", "dccnn", 3), ("MoDL-3", "modl", 3), ("RDN-3", "rdn", 3),
           ("U-net", "unet", None), ("NasN", "nasn", None)]
VARIANTS = ("reference", "fast")

CHILD = r'''
import json, resource, sys, time
import torch
sys.path.insert(0, {root!r})
from backend.models import build_model
from backend.models.genotype import default_genotype
from backend.recon import resolve_device
from backend.masks import make_mask
name, blocks, variant, size, repeats, device = {args!r}
device = resolve_device(device)
torch.manual_seed(0)
mask = torch.from_numpy(make_mask("random", size, 4, seed=0).lines.astype("float32")).to(device)
model = None
if name is not None:
    kw = {{"genotype": default_genotype()}} if name == "nasn" else ({{"blocks": blocks}} if blocks else {{}})
    model = build_model(name, **kw).to(device).eval()
    if variant == "fast":
        model = model.to(memory_format=torch.channels_last)
ctx = torch.inference_mode if variant == "fast" else torch.no_grad
def step(batch):
    x = torch.randn(batch, 2, size, size, device=device)
    k0 = torch.randn(batch, size, size, dtype=torch.complex64, device=device) * mask
    if variant == "fast":
        x = x.contiguous(memory_format=torch.channels_last)
    with ctx():
        if model is None:
            out = torch.fft.ifft2(k0)
        elif variant == "fast" and device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x, k0, mask)
        else:
            out = model(x, k0, mask)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out
def timed(batch):
    step(batch)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); step(batch); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]
latency = timed(1)
throughput = max(b / timed(b) for b in (1, 2, 4))
peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"latency_s": latency, "throughput_slices_per_s": throughput, "peak_mib": peak,
                  "device": str(device), "threads": torch.get_num_threads()}}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    rows = []
    for label, name, blocks in METHODS:
        for variant in VARIANTS:
            code = CHILD.format(root=str(ROOT), args=(name, blocks, variant, args.size, args.repeats, args.device))
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{label} {variant}: failed: {proc.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                continue
            rows.append({"method": label, "variant": variant, **json.loads(proc.stdout.strip().splitlines()[-1])})
            print(f"  {label:<12} {variant:<10} {rows[-1]['latency_s'] * 1000:8.1f} ms", flush=True)
    base = {r["variant"]: r["latency_s"] for r in rows if r["method"] == "DCCNN-3"}
    print(f"\n{'method':<12} {'variant':<10} {'latency ms':>10} {'x DCCNN-3':>9} {'slices/s':>9} {'peak MiB':>9}")
    for r in rows:
        r["latency_ratio_to_dccnn3"] = r["latency_s"] / base[r["variant"]] if r["variant"] in base else None
        ratio = f"{r['latency_ratio_to_dccnn3']:.2f}" if r["latency_ratio_to_dccnn3"] else "-"
        print(f"{r['method']:<12} {r['variant']:<10} {r['latency_s'] * 1000:>10.1f} {ratio:>9} "
              f"{r['throughput_slices_per_s']:>9.2f} {r['peak_mib']:>9.0f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = rows[0]["device"].split(":")[0] if rows else "none"
    path = out / f"inference_{device}.json"
    path.write_text(json.dumps({"size": args.size, "machine": platform.machine(), "rows": rows,
                                "command": "python bench/inference_speed.py " + " ".join(sys.argv[1:])}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
