"""Benchmark: a whole ``nascsmri reconstruct`` of a 12-slice 320x320 volume, as a user runs it.

    python bench/reconstruct_speed.py [--repeats 2] [--models nasn dccnn] [--executions fast reference]

The volume: the 8 real slices of the shipped sample (ch2, coronal), resized to 320x320 in
image space (k-space recomputed from the resized magnitudes), followed by its first 4 slices
again: 12 slices. Each (model, execution) is timed as the wall time of the CLI subprocess
(interpreter start, imports, weight loading, masks, reconstruction, metrics, writing the h5),
median of ``--repeats``. Writes ``bench/results/reconstruct_<device>.json`` and prints a table
with ratios to DCCNN-3 of the same execution.
"""

from __future__ import annotations

import argparse
import json
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
    images = np.concatenate([images, images])[:slices]
    resized = np.stack([zoom(im, size / im.shape[0], order=3) for im in images]).clip(min=0).astype(np.float32)
    with h5py.File(path, "w") as g:
        g["kspace"] = np.stack([magnitude_to_kspace(im) for im in resized]).astype(np.complex64)
        g["reconstruction_esc"] = resized
        g.attrs["max"] = float(resized.max())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["nasn", "dccnn"])
    parser.add_argument("--executions", nargs="+", default=["fast", "reference"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        volume = make_volume(Path(tmp) / "ch2_320_12.h5")
        for execution in args.executions:
            for model in args.models:
                times = []
                for _ in range(args.repeats):
                    cmd = [sys.executable, "-m", "backend.cli", "reconstruct", str(volume), "--model", model,
                           "--execution", execution, "--device", args.device, "--acceleration", "4",
                           "--out", str(Path(tmp) / "out.h5"), "--json", str(Path(tmp) / "m.json"), "--quiet"]
                    t0 = time.perf_counter()
                    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                    times.append(time.perf_counter() - t0)
                    if proc.returncode != 0:
                        raise SystemExit(f"{model} {execution} failed: {proc.stderr.strip()}")
                metrics = json.loads((Path(tmp) / "m.json").read_text())
                rows.append({"model": model, "execution": execution, "wall_s": sorted(times)[len(times) // 2],
                             "all_s": times, "psnr": metrics.get("psnr", metrics.get("metrics", {}).get("psnr"))})
                print(f"  {model:<6} {execution:<10} {rows[-1]['wall_s']:6.2f} s", flush=True)
    base = {r["execution"]: r["wall_s"] for r in rows if r["model"] == "dccnn"}
    print(f"\n{'model':<6} {'execution':<10} {'wall s':>7} {'x dccnn':>8} {'PSNR dB':>8}")
    for r in rows:
        r["ratio_to_dccnn"] = r["wall_s"] / base[r["execution"]] if r["execution"] in base else None
        ratio = "-" if r["ratio_to_dccnn"] is None else f"{r['ratio_to_dccnn']:.2f}"
        psnr = "-" if r["psnr"] is None else f"{r['psnr']:.2f}"
        print(f"{r['model']:<6} {r['execution']:<10} {r['wall_s']:>7.2f} {ratio:>8} {psnr:>8}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if args.device.startswith("cuda") else ("cpu" if args.device == "cpu" else _auto_device())
    path = out / f"reconstruct_{device if device != 'cpu' else slug()}.json"
    write_json(path, {"volume": "12 x 320 x 320 (shipped sample resized, 8 + 4 slices)", "acceleration": 4,
                      "machine": describe(), "rows": rows,
                      "command": "python bench/reconstruct_speed.py " + " ".join(sys.argv[1:])})
    print(f"wrote {path}")


def _auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()
