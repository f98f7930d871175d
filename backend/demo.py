"""The main job: reconstruct the shipped real sample at 4x and 8x and show how each method does.

Prints a metrics table (per acceleration and method: PSNR, SSIM, NMSE on the whole sample
volume), writes ``metrics.json`` and a side-by-side figure (reference | methods, with error
maps) of the middle slice. Masks are seeded per volume (fastMRI convention), so every method
sees the same mask at a given acceleration.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import ACCELERATIONS, ReconConfig
from .files import write_json
from .recon import reconstruct_volume
from .progress import run
from .sample import sample_path

CLASSICAL = ("zero-filled", "tv")


def demo_methods() -> list[str]:
    """Classical methods plus every network whose weights ship with the package."""
    from .models import MODEL_NAMES, shipped_weights

    return list(CLASSICAL) + [name for name in MODEL_NAMES if shipped_weights(name).exists()]


def run_demo(out_dir: str = "demo_out", quiet: bool = False, tv_backend: str = "auto") -> dict:
    """Run the demo; returns ``{acceleration: {method: metrics dict}}``."""
    from .progress import ProgressBar
    from .figures import side_by_side

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = sample_path()
    methods = demo_methods()
    table: dict[str, dict[str, dict]] = {}
    images: dict[str, dict] = {}
    titles: dict[str, dict] = {}
    reference = None
    for acc in ACCELERATIONS:
        label = f"{acc}x"
        table[label], images[label], titles[label] = {}, {}, {}
        for method in methods:
            config = ReconConfig(model=method, acceleration=acc, tv_backend=tv_backend)
            bar = ProgressBar(quiet)
            try:
                result = run(reconstruct_volume(sample, config), bar)
            finally:
                bar.close()
            m = result.metrics.as_dict()
            m["realised_acceleration"] = result.mask.realised_acceleration
            table[label][method] = m
            mid = result.reconstruction.shape[0] // 2
            images[label][method] = result.reconstruction[mid]
            titles[label][method] = f"{method}\n{m['psnr']:.2f} dB / {m['ssim']:.3f}"
            reference = result.reference[mid]
    print(format_demo_table(table))
    write_json(out / "metrics.json", {"sample": sample.name, "methods": methods, "metrics": table})
    side_by_side(reference, images, out / "side_by_side.png", titles)
    print(f"wrote {out / 'metrics.json'} and {out / 'side_by_side.png'}", file=sys.stderr)
    return table


def format_demo_table(table: dict) -> str:
    head = f"{'accel':<6} {'method':<12} {'realised':>8} {'PSNR dB':>8} {'SSIM':>7} {'NMSE':>9}"
    lines = [head, "-" * len(head)]
    for label, rows in table.items():
        for method, m in rows.items():
            lines.append(
                f"{label:<6} {method:<12} {m['realised_acceleration']:>8.2f} {m['psnr']:>8.2f} {m['ssim']:>7.4f} {m['nmse']:>9.5f}"
            )
    return "\n".join(lines)
