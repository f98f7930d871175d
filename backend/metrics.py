"""Reconstruction metrics exactly as fastMRI's ``evaluate.py`` (REFERENCE section 3).

All metrics take magnitude volumes ``(slices, H, W)`` (a 2-D array counts as one slice):

* ``mse  = mean((gt - pred)^2)``
* ``nmse = ||gt - pred||^2 / ||gt||^2``
* ``psnr = 10 log10(max(gt)^2 / mse)`` with ``data_range = gt.max()`` over the *volume*
* ``ssim``: per slice with a 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance
  (``N / (N - 1)``), ``data_range = gt.max()`` over the volume, mean over slices: scikit-image's
  ``structural_similarity`` with these settings (``full=True`` gives the map).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from skimage.metrics import structural_similarity

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _volume(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 2 else x


def _check(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = _volume(gt), _volume(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: reference {gt.shape} vs prediction {pred.shape}")
    if gt.ndim != 3:
        raise ValueError(f"expected (slices, H, W) magnitudes, got shape {gt.shape}")
    return gt, pred


def mse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error."""
    gt, pred = _check(gt, pred)
    return float(np.mean((gt - pred) ** 2))


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised MSE ``||gt - pred||^2 / ||gt||^2``."""
    gt, pred = _check(gt, pred)
    return float(np.sum((gt - pred) ** 2) / np.sum(gt**2))


def psnr(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """PSNR in dB with ``data_range = gt.max()`` over the volume unless given."""
    gt, pred = _check(gt, pred)
    data_range = gt.max() if data_range is None else data_range
    err = np.mean((gt - pred) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(data_range**2 / err))


def ssim_map(gt2d: np.ndarray, pred2d: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM map of one slice; the mean over the valid interior (``SSIM_WINDOW // 2`` pixels in
    from every edge) is the slice's SSIM."""
    return structural_similarity(np.asarray(gt2d, dtype=np.float64), np.asarray(pred2d, dtype=np.float64),
                                 win_size=SSIM_WINDOW, data_range=data_range, K1=SSIM_K1, K2=SSIM_K2,
                                 use_sample_covariance=True, gaussian_weights=False, full=True)[1]


MAX_SSIM_THREADS = 8  # a cap: a many-core machine does not start one thread per slice


def _workers() -> int:
    """Threads for the per-slice SSIM: the CPUs this process may run on, at most
    :data:`MAX_SSIM_THREADS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_SSIM_THREADS))


def slice_ssims(gt: np.ndarray, pred: np.ndarray, data_range: float) -> list[float]:
    """The SSIM of each slice (the map's mean over its valid interior), in slice order.

    Slices run on a pool of threads, one per CPU up to 8 (scikit-image's filters release the GIL; on 2
    cores 48 slices of 320x320 took 0.15-0.2 s instead of 0.5 s, session 21); each value is
    computed exactly as alone, so the result does not depend on the pool."""
    gt, pred = _check(gt, pred)
    pad = (SSIM_WINDOW - 1) // 2

    def one(i: int) -> float:
        return float(ssim_map(gt[i], pred[i], data_range)[pad:-pad, pad:-pad].mean())

    workers = min(len(gt), _workers())
    if workers < 2:
        return [one(i) for i in range(len(gt))]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(gt))))


def ssim(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """Mean over slices of the per-slice SSIM, ``data_range = gt.max()`` of the volume."""
    gt, pred = _check(gt, pred)
    if min(gt.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs slices of at least {SSIM_WINDOW}x{SSIM_WINDOW}")
    data_range = gt.max() if data_range is None else data_range
    return float(np.mean(slice_ssims(gt, pred, data_range)))


@dataclass(frozen=True)
class VolumeMetrics:
    """The four metrics of one volume; ``asdict`` gives the JSON keys ``mse nmse psnr ssim``."""

    mse: float
    nmse: float
    psnr: float
    ssim: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def evaluate_volume(gt: np.ndarray, pred: np.ndarray) -> VolumeMetrics:
    """All four metrics of one volume of magnitudes ``(slices, H, W)``."""
    gt, pred = _check(gt, pred)  # float64 once (each metric's own conversion is then a no-op)
    return VolumeMetrics(mse=mse(gt, pred), nmse=nmse(gt, pred), psnr=psnr(gt, pred), ssim=ssim(gt, pred))


def summarise(rows: list[VolumeMetrics]) -> dict[str, tuple[float, float]]:
    """Mean and (population) standard deviation of each metric over volumes."""
    out = {}
    for key in ("mse", "nmse", "psnr", "ssim"):
        vals = np.array([getattr(r, key) for r in rows], dtype=np.float64)
        out[key] = (float(vals.mean()), float(vals.std()))
    return out
