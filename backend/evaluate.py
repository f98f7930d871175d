"""Evaluate a folder of reconstructions against a folder of references (fastMRI layout).

Targets: h5 files with ``reconstruction_esc`` or ``reconstruction_rss`` ``(slices, h, w)``.
Predictions: h5 files of the same name with ``reconstruction`` (the submission layout). A
target larger than its prediction is centre-cropped to the prediction's shape (fastMRI's
evaluate.py does the same); any other shape mismatch is an error naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Generator

import h5py
import numpy as np

from .errors import InputError
from .io import REFERENCE_KEYS
from .shapes import MAX_VOLUME_PIXELS
from .metrics import SSIM_WINDOW, evaluate_volume, summarise
from .progress import Progress
from .transforms import center_crop


def _read(path: Path, keys: tuple[str, ...]) -> np.ndarray:
    """A real magnitude volume ``(slices, H, W)`` as float64; its shape and type are checked
    from the declaration, before anything is read (a file may declare an enormous shape)."""
    try:
        with h5py.File(path, "r") as f:
            key = next((k for k in keys if k in f), None)
            if key is None:
                raise InputError(path, f"no dataset {' or '.join(repr(k) for k in keys)}")
            ds = f[key]
            if not isinstance(ds, h5py.Dataset):
                raise InputError(path, f"'{key}' is not a dataset")
            shape = (1,) + ds.shape if ds.ndim == 2 else ds.shape
            if len(shape) != 3 or shape[0] == 0:
                raise InputError(path, f"expected (slices, H, W), got shape {ds.shape}")
            if ds.dtype.kind not in "biuf":
                raise InputError(path, f"'{key}' holds {ds.dtype}, expected real magnitudes")
            if min(shape[1:]) < SSIM_WINDOW:
                raise InputError(path, f"slices of {shape[1]}x{shape[2]} are too small "
                                       f"(SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW})")
            if np.prod(shape, dtype=np.float64) > MAX_VOLUME_PIXELS:
                raise InputError(path, f"a volume of shape {ds.shape} is larger than this tool reads")
            data = np.asarray(ds[()], dtype=np.float64).reshape(shape)
    except (OSError, ValueError, KeyError, TypeError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(path, f"not a readable HDF5 file ({str(err).splitlines()[0][:120]})") from None
    if not np.all(np.isfinite(data)):
        raise InputError(path, "contains NaN or Inf values")
    return data


def evaluate_dirs(targets: str | os.PathLike, predictions: str | os.PathLike) -> Generator[Progress, None, dict]:
    """Per-volume metrics and their mean/std; returns ``{"volumes": [...], "summary": {...}}``."""
    tdir, pdir = Path(targets), Path(predictions)
    for d in (tdir, pdir):
        if not d.is_dir():
            raise InputError(d, "is not a folder")
    preds = sorted(pdir.glob("*.h5"))
    if not preds:
        raise InputError(pdir, "holds no .h5 predictions")
    rows, volumes = [], []
    yield Progress(0, len(preds), "evaluating")
    for i, pred_path in enumerate(preds, start=1):
        target_path = tdir / pred_path.name
        if not target_path.exists():
            raise InputError(target_path, f"no target for prediction {pred_path.name}")
        gt = _read(target_path, REFERENCE_KEYS)
        if not np.any(gt):
            raise InputError(target_path, "the reference is all zero: metrics are not defined")
        pred = _read(pred_path, ("reconstruction",))
        if gt.shape[0] != pred.shape[0]:
            raise InputError(pred_path, f"{pred.shape[0]} slices, the target has {gt.shape[0]}")
        if gt.shape[1:] != pred.shape[1:]:
            if gt.shape[1] < pred.shape[1] or gt.shape[2] < pred.shape[2]:
                raise InputError(pred_path, f"shape {pred.shape} is larger than the target's {gt.shape}")
            gt = center_crop(gt, pred.shape[1:])
        m = evaluate_volume(gt, pred)
        rows.append(m)
        volumes.append({"file": pred_path.name, **m.as_dict()})
        yield Progress(i, len(preds), pred_path.name)
    summary = {k: {"mean": mean, "std": std} for k, (mean, std) in summarise(rows).items()}
    return {"volumes": volumes, "summary": summary}


def format_table(report: dict) -> str:
    """A plain-text table: one row per volume, then mean +- std."""
    head = f"{'volume':<32} {'MSE':>11} {'NMSE':>9} {'PSNR dB':>8} {'SSIM':>7}"
    lines = [head, "-" * len(head)]
    for v in report["volumes"]:
        lines.append(f"{v['file'][:32]:<32} {v['mse']:>11.4g} {v['nmse']:>9.4g} {v['psnr']:>8.2f} {v['ssim']:>7.4f}")
    s = report["summary"]
    lines.append("-" * len(head))
    lines.append(
        f"{'mean +- std':<32} {s['mse']['mean']:.3g}+-{s['mse']['std']:.2g} "
        f"{s['nmse']['mean']:.4f}+-{s['nmse']['std']:.4f} {s['psnr']['mean']:.2f}+-{s['psnr']['std']:.2f} "
        f"{s['ssim']['mean']:.4f}+-{s['ssim']['std']:.4f}"
    )
    return "\n".join(lines)
