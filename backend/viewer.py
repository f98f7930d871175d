"""What the napari widgets show, computed here so that the widgets only build configs and call
the backend: the zero-filled preview of one slice, display windows, |error| maps in percent of
the reference maximum, per-slice metrics, the metrics table as CSV / JSON, and the magnitudes
of a whole volume for the napari reader (:func:`display_volume`).

numpy only (torch is not needed for any of this); the metrics are :mod:`backend.metrics`'s.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Iterable, Mapping, Sequence

import numpy as np

#: Default display window: these percentiles of the image (robust to a few hot voxels).
WINDOW_PERCENTILES = (0.5, 99.5)
#: Pixels sampled (at most) to estimate a window: percentiles of a big volume stay cheap.
WINDOW_SAMPLES = 200_000
METRIC_KEYS = ("psnr", "ssim", "nmse")


def preview_slice(kspace: np.ndarray, lines: np.ndarray, output_shape: Sequence[int]) -> np.ndarray:
    """Zero-filled magnitude of one slice: ``|ifft2c(kspace * lines)|`` cropped to ``output_shape``.

    ``kspace`` is the centred complex ``(H, W)`` (or ``(coils, H, W)``: root-sum-of-squares)
    k-space, ``lines`` the bool ``(W,)`` sampled columns or a 2-D pattern ``(H, W)``. float32
    ``output_shape``.
    """
    from backend.fft import ifft2c_np
    from backend.masks import sampling_grid
    from backend.transforms import center_crop

    kspace = np.asarray(kspace)
    image = ifft2c_np(kspace * sampling_grid(lines, kspace.shape[-2:]))
    magnitude = np.abs(image)
    if magnitude.ndim == 3:
        magnitude = np.sqrt((magnitude**2).sum(0))
    return np.asarray(center_crop(magnitude, tuple(output_shape)), dtype=np.float32)


def display_window(data: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES,
                   floor_zero: bool = False) -> tuple[float, float]:
    """``(low, high)`` display limits at ``percentiles`` of ``data`` (finite values only).

    ``floor_zero`` starts the window at 0 (magnitudes, error maps). Never returns an empty
    window: a constant image gets ``(v, v + 1)``.
    """
    flat = np.asarray(data, dtype=np.float32).ravel()
    if flat.size > WINDOW_SAMPLES:
        flat = flat[:: int(np.ceil(flat.size / WINDOW_SAMPLES))]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(flat, percentiles))
    if floor_zero:
        low = 0.0
    if not high > low:
        high = low + (abs(low) or 1.0)
    return low, high


def error_percent(image: np.ndarray, reference: np.ndarray, data_range: float) -> np.ndarray:
    """``|image - reference|`` in percent of the reference maximum ``data_range`` (float32)."""
    scale = 100.0 / float(data_range) if data_range else 1.0
    return (np.abs(np.asarray(image, dtype=np.float32) - np.asarray(reference, dtype=np.float32))
            * np.float32(scale)).astype(np.float32)


def log_kspace(kspace: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """``log1p|k|`` of the sampled columns or 2-D pattern (unsampled points 0), float32 ``(H, W)``."""
    from backend.masks import sampling_grid

    k = np.asarray(kspace)
    if k.ndim == 3:
        k = np.sqrt((np.abs(k) ** 2).sum(0))
    return np.log1p(np.abs(k) * (sampling_grid(lines, k.shape) > 0)).astype(np.float32)


def slice_metrics(reference: np.ndarray, image: np.ndarray, data_range: float) -> dict[str, float]:
    """PSNR/SSIM/NMSE of one slice with the *volume* data range (as the per-volume numbers)."""
    from backend.metrics import nmse, psnr, ssim

    return {"psnr": psnr(reference, image, data_range=data_range),
            "ssim": ssim(reference, image, data_range=data_range),
            "nmse": nmse(reference, image)}


def per_slice_metrics(reference: np.ndarray, images: np.ndarray, data_range: float) -> list[dict]:
    """:func:`slice_metrics` of every slice of a volume."""
    return [slice_metrics(r, o, data_range) for r, o in zip(reference, images)]


def metrics_records(metrics: Mapping[str, Mapping], source: str | None = None) -> list[dict]:
    """Flat records of a widget's metrics ``{method: {"slices": [...], "volume": {...}}}``.

    One record per method and slice (``slice`` = index) plus one per method for the volume
    (``slice`` = ``"volume"``); missing values are None.
    """
    out = []
    for method, entry in metrics.items():
        for i, values in enumerate(entry.get("slices") or []):
            if values:
                out.append({"source": source, "method": method, "slice": i,
                            **{k: values.get(k) for k in METRIC_KEYS}})
        if entry.get("volume"):
            out.append({"source": source, "method": method, "slice": "volume",
                        **{k: entry["volume"].get(k) for k in METRIC_KEYS}})
    return out


def write_metrics(path: str | os.PathLike, records: Iterable[Mapping]) -> str:
    """Write metric records as ``.csv`` (one row each) or ``.json`` (``{"metrics": [...]}``)."""
    from backend.errors import InputError
    from backend.files import atomic_path

    path = os.fspath(path)
    records = [dict(r) for r in records]
    lower = path.lower()
    if lower.endswith(".json"):
        text = json.dumps({"metrics": records}, indent=1) + "\n"
    elif lower.endswith(".csv"):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["source", "method", "slice", *METRIC_KEYS])
        writer.writeheader()
        writer.writerows(records)
        text = buffer.getvalue()
    else:
        raise InputError(path, "metrics files end in .csv or .json")
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as f:
                f.write(text)
    except OSError as err:
        raise InputError(path, f"could not write the file: {err.strerror or err}") from None
    return path


def display_volume(volume) -> np.ndarray:
    """Magnitudes to look at of a :class:`backend.io.Volume`, ``(slices, h, w)`` float32 on the
    output grid.

    The reference where the file has one (or the magnitude itself), else the magnitude of the
    zero-filled image of the stored k-space (test files: their own undersampling).
    """
    from .fft import ifft2c_np
    from .transforms import center_crop

    out = np.zeros((len(volume),) + volume.info.output_shape, dtype=np.float32)
    for i, s in enumerate(volume):
        if s.reference is not None:
            out[i] = s.reference
        else:
            out[i] = np.abs(center_crop(ifft2c_np(s.kspace), volume.info.output_shape))
    return out


def line_profile(images: Mapping[str, np.ndarray], index: int, axis: str = "row") -> dict[str, np.ndarray]:
    """The values of each 2-D image along row ``index`` (``axis="row"``) or column ``index``
    (``axis="column"``), as float32; images of another shape than the first are left out."""
    if axis not in ("row", "column"):
        raise ValueError(f"axis must be 'row' or 'column', not {axis!r}")
    out: dict[str, np.ndarray] = {}
    shape = None
    for name, image in images.items():
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D image, got shape {image.shape}")
        shape = shape or image.shape
        if image.shape != shape:
            continue
        size = shape[0] if axis == "row" else shape[1]
        if not 0 <= index < size:
            raise ValueError(f"{axis} {index} outside 0..{size - 1}")
        out[name] = np.asarray(image[index] if axis == "row" else image[:, index], dtype=np.float32)
    return out


def mosaic(stack: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tile ``(n, h, w)`` images into one ``(rows * h, columns * w)`` float32 image, row after row
    (default: ``ceil(sqrt(n))`` columns); empty tiles are 0."""
    stack = np.asarray(stack, dtype=np.float32)
    n, h, w = stack.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = -(-n // columns)
    out = np.zeros((rows * h, columns * w), np.float32)
    for k in range(n):
        r, c = divmod(k, columns)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = stack[k]
    return out
