"""The prepared GPU check (issue #8): run once when a GPU machine is lent, commit its output.

    python bench/gpu_check.py --out DIR [--size 320] [--batches 1 8 32 128] [--seconds 3]

No dataset needed (random complex images with a 4x mask, normalised as at inference); the
networks use the shipped weights. Measures on the current device, each in one process:

1. the CUDA path works: ``--execution fast`` (channels_last + bf16 autocast, DC in float32)
   against the float32 reference on the same input (max abs difference, PSNR between them);
2. inference slices/s of NasN and DCCNN-3 at ``size x size`` for each batch, reference and
   fast (the issue's target: >= 1,000 slices/s for NasN, batched, bf16), and on CUDA also the
   fast plan captured once per batch size in a CUDA graph and replayed (``fast+cudagraph``;
   a capture that fails is reported with its error instead of a rate), to decide whether
   ``--execution fast`` should use graphs;
3. one training step (forward + backward + Adam, batch 2, bf16 autocast as ``nascsmri train``)
   of NasN and DCCNN-3 at ``size x size``, and one search step of the DARTS supernet (weights
   step + alpha step, the cpu-preset supernet shape, at ``size x size``).

Prints a table and writes ``gpu_check.json`` into ``--out``. Also runs on a CPU (with small
``--size``), which is how its code path is tested here.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

# the device machine runs this from a bare checkout, without the package installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.files import write_json  # noqa: E402
from backend.masks import make_mask  # noqa: E402
from backend.models import load_model, shipped_weights  # noqa: E402
from backend.models.inference import prepare_for_inference  # noqa: E402
from backend.devices import resolve_device  # noqa: E402
from backend.transforms import network_inputs  # noqa: E402
from backend.search.supernet import SuperNet  # noqa: E402


def inputs(batch: int, size: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.complex(torch.randn(batch, size, size, generator=g), torch.randn(batch, size, size, generator=g))
    mask = torch.from_numpy(make_mask("random", size, 4, seed=seed).lines.astype("float32")).to(device)
    x, k0, _ = network_inputs(torch.fft.fft2(image, norm="ortho").to(device), mask)
    return x, k0, mask


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(fn, device: torch.device, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after two warm-up calls)."""
    fn(), fn()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync(device)
    return n / (time.perf_counter() - t0)


def cuda_graph(model, x, k0, m):
    """``model(x, k0, m)`` captured in a CUDA graph (after warm-up calls on a side stream, as
    PyTorch's documentation prescribes); returns the replay function."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(3):
            model(x, k0, m)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        model(x, k0, m)
    return graph.replay


def optimiser_step(model, optimiser, x, k0, m, target, device: torch.device) -> None:
    """One L1 step as ``nascsmri train`` takes it (bf16 autocast on CUDA)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(x, k0, m)
    loss = (out.float() - target).abs().mean()
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    report: dict = {"device": str(device), "torch": torch.__version__, "machine": platform.machine(),
                    "size": args.size, "command": "python bench/gpu_check.py " + " ".join(sys.argv[1:])}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cudnn.benchmark = True
    rows = []
    for label, name in (("NasN", "nasn"), ("DCCNN-3", "dccnn")):
        reference = load_model(shipped_weights(name))[0].to(device).eval()
        fast = prepare_for_inference(load_model(shipped_weights(name))[0].to(device), "fast", device)
        x, k0, m = inputs(2, args.size, device)
        with torch.inference_mode():
            a, b = reference(x, k0, m).float(), fast(x, k0, m).float()
        diff = (a - b).abs().max().item()
        psnr = (10 * torch.log10(a.abs().amax() ** 2 / ((a - b) ** 2).mean())).item()
        report.setdefault("agreement", {})[label] = {"max_abs_diff": diff, "psnr_db_fast_vs_reference": psnr}
        print(f"{label}: fast vs reference max abs diff {diff:.2e}, PSNR {psnr:.1f} dB", flush=True)
        variants = [("reference", reference), ("fast", fast)]
        if device.type == "cuda":
            variants.append(("fast+cudagraph", fast))
        for variant, model in variants:
            for batch in args.batches:
                x, k0, m = inputs(batch, args.size, device, seed=batch)
                if variant != "reference":
                    x = x.contiguous(memory_format=torch.channels_last)
                try:
                    if variant == "fast+cudagraph":
                        try:
                            replay = cuda_graph(model, x, k0, m)
                        except RuntimeError as err:  # capture not supported by some operation
                            rows.append({"model": label, "variant": variant, "batch": batch, "slices_per_s": None,
                                         "error": str(err).splitlines()[0]})
                            print(f"  {label} {variant} batch {batch}: capture failed: {rows[-1]['error']}",
                                  flush=True)
                            break
                        calls = rate(replay, device, args.seconds)
                    else:
                        with torch.inference_mode():
                            calls = rate(lambda: model(x, k0, m), device, args.seconds)
                except torch.OutOfMemoryError:
                    print(f"  {label} {variant} batch {batch}: out of memory", flush=True)
                    break
                rows.append({"model": label, "variant": variant, "batch": batch, "slices_per_s": calls * batch})
                print(f"  {label:<8} {variant:<10} batch {batch:>4}: {calls * batch:10.1f} slices/s", flush=True)
        # training step, as nascsmri train runs it (bf16 autocast on CUDA, channels_last)
        model = load_model(shipped_weights(name))[0].to(device).train().to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        x, k0, m = inputs(2, args.size, device, seed=7)
        target = x.clone()
        report.setdefault("train_step_s", {})[label] = 1 / rate(
            lambda: optimiser_step(model, opt, x, k0, m, target, device), device, args.seconds)
        print(f"  {label} training step (batch 2): {report['train_step_s'][label] * 1000:.1f} ms", flush=True)
    # one search step: weights (SGD) then alphas (Adam), first-order DARTS
    net = SuperNet("A", nodes=3, channels=16, cells=2, cascades=3).to(device)
    w_opt = torch.optim.SGD(net.weight_parameters(), 0.025, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), 3e-4)
    x, k0, m = inputs(2, args.size, device, seed=9)

    def search_step():
        for opt in (w_opt, a_opt):
            optimiser_step(net, opt, x, k0, m, x, device)

    report["search_step_s"] = 1 / rate(search_step, device, args.seconds)
    print(f"  search step (supernet A, 3 nodes, 16 ch, 2 cells, batch 2): {report['search_step_s'] * 1000:.1f} ms")
    if device.type == "cuda":
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    report["inference"] = rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "gpu_check.json", report)
    print(f"wrote {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()
