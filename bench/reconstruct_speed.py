"""Benchmark: a whole ``nascsmri reconstruct`` of a 320x320 volume, as a user runs it.

    python bench/reconstruct_speed.py [--repeats 2] [--slices 12] [--models nasn dccnn]
                                      [--executions fast reference]

The volume: the 8 real slices of the shipped sample (ch2, coronal), resized to 320x320 in
image space (k-space recomputed from the resized magnitudes), repeated to ``--slices`` slices
(12 or 48, say). Each (model, execution) is timed as the wall time of the CLI subprocess
(interpreter start, imports, weight loading, masks, reconstruction, metrics, writing the h5).
The runs are interleaved: each repeat runs every (execution, model) once in turn, so a machine
slowing down affects all alike; the ratio to DCCNN-3 of the same execution is taken per repeat
and its median reported with its range. Writes ``bench/results/reconstruct_<device>[_<N>slices].json``
(12 slices: no suffix) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from backend.machine import describe, slug  # noqa: E402
from backend.files import write_json  # noqa: E402
from backend.sample import sample_path  # noqa: E402
from backend.transforms import magnitude_to_kspace  # noqa: E402


def make_volume(path: Path, size: int = 320, slices: int = 12) -> Path:
    from scipy.ndimage import zoom

    with h5py.File(sample_path()) as f:
        images = f["reconstruction_esc"][()]
    images = np.concatenate([images] * (-(-slices // len(images))))[:slices]
    resized = np.stack([zoom(im, size / im.shape[0], order=3) for im in images]).clip(min=0).astype(np.float32)
    with h5py.File(path, "w") as g:
        g["kspace"] = np.stack([magnitude_to_kspace(im) for im in resized]).astype(np.complex64)
        g["reconstruction_esc"] = resized
        g.attrs["max"] = float(resized.max())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--models", nargs="+", default=["nasn", "dccnn"])
    parser.add_argument("--executions", nargs="+", default=["fast", "reference"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {(e, m): [] for e in args.executions for m in args.models}
    psnr: dict[tuple[str, str], float | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        volume = make_volume(Path(tmp) / f"ch2_320_{args.slices}.h5", slices=args.slices)
        for repeat in range(args.repeats):
            for (execution, model), series in times.items():
                cmd = [sys.executable, "-m", "backend.cli", "reconstruct", str(volume), "--model", model,
                       "--execution", execution, "--device", args.device, "--acceleration", "4",
                       "--out", str(Path(tmp) / "out.h5"), "--json", str(Path(tmp) / "m.json"), "--quiet"]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                series.append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise SystemExit(f"{model} {execution} failed: {proc.stderr.strip()}")
                metrics = json.loads((Path(tmp) / "m.json").read_text())
                psnr[execution, model] = metrics.get("psnr", metrics.get("metrics", {}).get("psnr"))
                print(f"  repeat {repeat + 1}/{args.repeats}: {model:<6} {execution:<10} {series[-1]:6.2f} s", flush=True)
    rows = []
    for (execution, model), series in times.items():
        base = times.get((execution, "dccnn"))
        ratios = sorted(t / b for t, b in zip(series, base)) if base else []
        rows.append({"model": model, "execution": execution, "wall_s": statistics.median(series), "all_s": series,
                     "ratio_to_dccnn": statistics.median(ratios) if ratios else None,
                     "ratio_range": [ratios[0], ratios[-1]] if ratios else None, "psnr": psnr[execution, model]})
    print(f"\n{'model':<6} {'execution':<10} {'wall s':>7} {'x dccnn':>8} {'range':>11} {'PSNR dB':>8}")
    for r in rows:
        ratio = "-" if r["ratio_to_dccnn"] is None else f"{r['ratio_to_dccnn']:.2f}"
        spread = "-" if r["ratio_range"] is None else "{:.2f}-{:.2f}".format(*r["ratio_range"])
        value = "-" if r["psnr"] is None else f"{r['psnr']:.2f}"
        print(f"{r['model']:<6} {r['execution']:<10} {r['wall_s']:>7.2f} {ratio:>8} {spread:>11} {value:>8}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if args.device.startswith("cuda") else ("cpu" if args.device == "cpu" else _auto_device())
    suffix = "" if args.slices == 12 else f"_{args.slices}slices"
    path = out / f"reconstruct_{device if device != 'cpu' else slug()}{suffix}.json"
    write_json(path, {"volume": f"{args.slices} x 320 x 320 (the shipped sample's 8 slices resized, repeated)",
                      "acceleration": 4, "interleaved": True,
                      "machine": describe(), "rows": rows,
                      "command": "python bench/reconstruct_speed.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path}")


def _auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()
