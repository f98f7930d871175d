"""Two-channel raw-like files: the coil path, the RSS path and ``--coils auto`` (issue #21).

    python bench/raw_two_coils.py --data data/brain [--out runs/raw_two_coils]
        [--results bench/results/raw_two_coils] [--accelerations 4 8] [--methods nasn tv]

A real two-channel raw file differs from the benchmark's ``multicoil_2`` cases in ways that
matter to sensitivity maps: the readout is oversampled (the object on a canvas of twice the
rows), the object has a phase, and the phase-encode field of view can be tight. Each case here
is three slices (the 3rd to 5th) of a held-out test volume made so: 2 simulated coils
(:func:`backend.coils.simulated_sensitivities` on the canvas), a smooth phase of up to pi, 30 dB
complex noise, the RSS image of the central rows as reference (fastMRI multi-coil layout). Cases:
``full`` (the whole width) of test volumes 0 and 3, and ``narrow`` (the central 5/7 of the
columns, 160 of 224) of volume 3. Every method runs from the coils (``--coils multi``), by the RSS path
(``--coils rss``) and as ``nascsmri reconstruct`` runs by default (``--coils auto``, which falls
back to the RSS path when the ESPIRiT maps miss the calibration data,
:func:`backend.recon_coils.maps_fallback`), on the same seeded masks and metric code. Writes
``RESULTS/results.json`` (per-slice scores, the path ``auto`` took) and ``results.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from backend.benchmark import slice_metrics
from backend.coils import simulated_sensitivities
from backend.config import ReconConfig
from backend.datasets import dataset_files
from backend.fft import fft2c_np, ifft2c_np
from backend.files import atomic_h5, atomic_write_bytes, write_json
from backend.machine import describe
from backend.progress import run
from backend.recon import make_reconstructor, reconstruct_volume
from backend.transforms import smooth_field

RESULTS = Path(__file__).resolve().parent / "results" / "raw_two_coils"
CASES = (("full_v0", 0, 1.0, 5), ("full_v3", 3, 1.0, 11), ("narrow_v3", 3, 5 / 7, 11))  # name, volume, share of columns, seed


def make_case(source: Path, target: Path, share: float, seed: int) -> Path:
    with h5py.File(source, "r") as f:
        n = f["reconstruction_esc"].shape[0]
        start = min(2, max(0, n - 3))  # the 3rd to 5th slices (the first ones of a short volume)
        images = np.asarray(f["reconstruction_esc"][start:start + 3], dtype=np.float32)
    _, H, W = images.shape
    columns = int(round(W * share))
    if columns < W:  # a tighter phase-encode field of view, cropped in image space
        images = images[:, :, (W - columns) // 2:(W - columns) // 2 + columns]
        W = columns
    rng = np.random.default_rng(seed)
    maps = simulated_sensitivities((2 * H, W), 2, rng)
    ks, refs = [], []
    for im in images:
        canvas = np.zeros((2 * H, W), np.complex64)
        canvas[H // 2:H // 2 + H] = im * np.exp(1j * np.pi * smooth_field((H, W), rng))
        coil = maps * canvas[None]
        k = fft2c_np(coil)
        sigma = np.sqrt(np.mean(np.abs(coil) ** 2)) * 10 ** (-30 / 20) / np.sqrt(2)
        k = k + sigma * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        ks.append(k.astype(np.complex64))
        refs.append(np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(0))[H // 2:H // 2 + H])
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_h5(target) as f:
        f.create_dataset("kspace", data=np.stack(ks))
        f.create_dataset("reconstruction_rss", data=np.stack(refs).astype(np.float32))
        f.attrs["max"] = float(np.max(refs))
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/raw_two_coils"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    ap.add_argument("--methods", nargs="+", default=["nasn", "tv"])
    args = ap.parse_args(argv)
    test_files = sorted(dataset_files(args.data, "test"))
    scores: dict = {}
    lines = ["Two-channel raw-like files (3 slices each; PSNR dB / SSIM against the RSS reference); "
             "auto: the path `nascsmri reconstruct` took by default", "",
             "| case | acc | method | coils | RSS path | auto (path) |", "|---|---|---|---|---|---|"]
    for name, volume, share, seed in CASES:
        path = make_case(test_files[volume % len(test_files)], args.out / f"{name}.h5", share, seed)
        for acc in args.accelerations:
            for method in args.methods:
                row = {}
                for coils in ("multi", "rss", "auto"):
                    config = ReconConfig(model=method, acceleration=acc, coils=coils)
                    result = run(reconstruct_volume(path, config, make_reconstructor(config)))
                    row[coils] = slice_metrics(result.reference, result.reconstruction)
                    if coils == "auto":
                        row["auto_path"] = "coils" if "SENSE data consistency" in result.notices[-1] else "rss"
                    print(f"{name} {acc:g}x {method} {coils}: PSNR {np.mean(row[coils]['psnr']):.2f} "
                          f"SSIM {np.mean(row[coils]['ssim']):.4f}", flush=True)
                scores.setdefault(name, {}).setdefault(f"{acc:g}", {})[method] = row
                cell = {c: f"{np.mean(row[c]['psnr']):.2f} / {np.mean(row[c]['ssim']):.4f}" for c in ("multi", "rss", "auto")}
                lines.append(f"| {name} | {acc:g}x | {method} | {cell['multi']} | {cell['rss']} | "
                             f"{cell['auto']} ({row['auto_path']}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "results.json", {"machine": describe(), "cases": [list(c) for c in CASES],
                                                "test_files": [f.name for f in test_files], "scores": scores})
    atomic_write_bytes(args.results / "results.md", text.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
