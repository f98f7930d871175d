"""Benchmark: per-slice latency, throughput and peak memory of every method at 320x320.

    python bench/inference_speed.py [--size 320] [--repeats 5] [--warmup 3] [--device auto] [--methods NasN DCCNN-3]

Each (method, variant) runs in a fresh subprocess (so peak memory is its own maximum resident
set size) in eval mode on a real-looking input (random complex image, 4x mask, normalised as
``nascsmri reconstruct`` does): latency = median time of one slice (batch 1) after
``--warmup`` untimed calls; throughput = slices/s at the best of batches 1, 2, 4. NasN and
DCCNN-3 use the shipped weights, the others a seeded random initialisation. Variants:

* ``reference``: the training module as is (float32, contiguous, ``torch.no_grad``);
* ``channels_last``: the same module in channels_last under ``torch.inference_mode``;
* ``fast``: ``backend.models.inference.prepare_for_inference(model, "fast")``, what
  ``nascsmri reconstruct`` runs by default (CPU: re-planned NasN with the fused C kernel of
  ``backend.models.kernels`` where available + allocator tuning; CUDA: channels_last + bf16
  autocast);
* ``fast-onednn`` (NasN only): the same plan with ``NASCSMRI_KERNELS=0``, oneDNN convolutions
  only (its ratio is to DCCNN-3 ``fast``);
* ``onnxruntime``: the model exported with ``nascsmri export-onnx`` for the grid (DC as DFT
  matrix products), run by onnxruntime's CPU provider, batch 1 only (export time not counted;
  skipped without the ``[onnx]`` extra).

``max_abs_diff`` is the largest difference of the variant's output from the reference output
in the same process (normalised scale). Ratios are to DCCNN-3 of the same variant, so noisy
machines still compare. Writes ``bench/results/inference_<device>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from backend.machine import describe, slug  # noqa: E402
from backend.files import write_json  # noqa: E402
METHODS = [("zero-filled", None, None), ("DCCNN-3", "dccnn", 3), ("MoDL-3", "modl", 3), ("RDN-3", "rdn", 3),
           ("U-net", "unet", None), ("NasN", "nasn", None)]
VARIANTS = ("reference", "channels_last", "fast", "fast-onednn", "onnxruntime")

CHILD = r'''
import json, resource, sys, time
import torch
sys.path.insert(0, {root!r})
from backend.models import build_model, load_model, shipped_weights
from backend.models.inference import prepare_for_inference
from backend.devices import resolve_device
from backend.transforms import network_inputs
from backend.masks import make_mask
name, blocks, variant, size, repeats, warmup, device = {args!r}
device = resolve_device(device)
mask = torch.from_numpy(make_mask("random", size, 4, seed=0).lines.astype("float32")).to(device)
def load():
    if name in ("nasn", "dccnn"):
        return load_model(shipped_weights(name))[0]
    torch.manual_seed(0)
    return build_model(name, **({{"blocks": blocks}} if blocks else {{}}))
def inputs(batch):
    g = torch.Generator().manual_seed(batch)
    image = torch.complex(torch.randn(batch, size, size, generator=g), torch.randn(batch, size, size, generator=g))
    x, k0, _ = network_inputs(torch.fft.fft2(image, norm="ortho").to(device), mask)
    return x, k0, mask
reference = model = None
if name is not None:
    reference = load().to(device).eval()
    if variant == "reference":
        model = reference
    elif variant == "channels_last":
        model = load().to(device).eval().to(memory_format=torch.channels_last)
    elif variant == "onnxruntime":
        import os, tempfile
        from backend.models.export import onnx_session, run_session
        from backend.models.export import export_onnx
        onnx_file = os.path.join(tempfile.mkdtemp(), "model.onnx")
        export_onnx(load(), onnx_file, size, size)
        session = onnx_session(onnx_file)
        def model(x, k0, m):
            kc = torch.stack((k0.real, k0.imag), 1).float()
            return torch.from_numpy(run_session(session, x.float(), kc, m))
    else:
        model = prepare_for_inference(load().to(device), "fast", device)
ctx = torch.no_grad if variant == "reference" else torch.inference_mode
def step(x, k0, m):
    with ctx():
        if model is None:
            out = torch.fft.ifft2(k0)
        else:
            if variant == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x, k0, m)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out
diff = None
if model is not None:
    batch = inputs(1)
    with torch.no_grad():
        diff = (step(*batch).float() - reference(*batch)).abs().max().item()
    if variant != "reference":
        del reference
def timed(batch):
    data = inputs(batch)
    for _ in range(warmup):  # the allocator's heap grows to its peak during the first calls
        step(*data)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); step(*data); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]
latency = timed(1)
throughput = max(b / timed(b) for b in ((1,) if variant == "onnxruntime" else (1, 2, 4)))
peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
fused = variant == "fast" and name == "nasn" and getattr(model.recon[0], "kernel", None) is not None
print(json.dumps({{"latency_s": latency, "throughput_slices_per_s": throughput, "peak_mib": peak, "max_abs_diff": diff,
                  "device": str(device), "threads": torch.get_num_threads(), "fused_kernel": fused}}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each timing (default 3)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--methods", nargs="+", default=None, help=f"subset of: {' '.join(m for m, _, _ in METHODS)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    rows = []
    for label, name, blocks in [m for m in METHODS if args.methods is None or m[0] in args.methods]:
        for variant in VARIANTS:
            if name is None and variant != "reference":
                continue  # zero-filled: one inverse FFT, nothing to vary
            if variant == "fast-onednn" and name != "nasn":
                continue  # the C kernel serves NasN only
            env = {**os.environ, "NASCSMRI_KERNELS": "0"} if variant == "fast-onednn" else None
            child_variant = "fast" if variant == "fast-onednn" else variant
            code = CHILD.format(root=str(ROOT), args=(name, blocks, child_variant, args.size, args.repeats, args.warmup,
                                                      args.device))
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{label} {variant}: failed: {proc.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                continue
            rows.append({"method": label, "variant": variant, **json.loads(proc.stdout.strip().splitlines()[-1])})
            print(f"  {label:<12} {variant:<13} {rows[-1]['latency_s'] * 1000:8.1f} ms", flush=True)
    base = {r["variant"]: r["latency_s"] for r in rows if r["method"] == "DCCNN-3"}
    if "fast" in base:
        base["fast-onednn"] = base["fast"]
    print(f"\n{'method':<12} {'variant':<13} {'latency ms':>10} {'x DCCNN-3':>9} {'slices/s':>9} {'peak MiB':>9} {'max diff':>9}")
    for r in rows:
        r["latency_ratio_to_dccnn3"] = r["latency_s"] / base[r["variant"]] if r["variant"] in base else None
        ratio = f"{r['latency_ratio_to_dccnn3']:.2f}" if r["latency_ratio_to_dccnn3"] else "-"
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        print(f"{r['method']:<12} {r['variant']:<13} {r['latency_s'] * 1000:>10.1f} {ratio:>9} "
              f"{r['throughput_slices_per_s']:>9.2f} {r['peak_mib']:>9.0f} {diff:>9}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = rows[0]["device"].split(":")[0] if rows else "none"
    path = out / f"inference_{device if device != 'cpu' else slug()}.json"
    write_json(path, {"size": args.size, "machine": describe(), "rows": rows,
                      "command": "python bench/inference_speed.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
