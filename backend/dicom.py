"""DICOM magnitude images as volumes (issue #21): one file, a multi-frame file, a Siemens
mosaic, or a folder holding one series.

DICOM MR images are magnitudes (or, rarely, signed real images); reconstruction here simulates
single-coil k-space from them as for NIfTI (zero phase), and :data:`NOTICE` says so. Reading uses
pydicom (and nibabel's DICOM wrapper for Siemens mosaics); every failure becomes a one-line
:class:`backend.errors.InputError`. Pixel data is decoded only after the declared size passed
:data:`MAX_VOXELS`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .errors import InputError, short_reason

NOTICE = ("DICOM magnitude images: k-space is simulated from the magnitude (zero phase); the "
          "scanner's raw k-space is not in a DICOM file")
MAX_VOXELS = 512 * 1024 * 1024  # 2 GiB of float32
MAX_FILES = 4096


def _read(path: Path, pixels: bool = True):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=not pixels)
    except InvalidDicomError:
        raise InputError(path, "not a DICOM file") from None
    except Exception as err:
        raise InputError(path, f"not a readable DICOM file ({short_reason(err)})") from None


def _declared_voxels(ds) -> int:
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    return rows * cols * max(frames, 1)


def _pixels(ds, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise InputError(path, "DICOM file without pixel data")
    if not (1 <= int(getattr(ds, "Rows", 0) or 0) and 1 <= int(getattr(ds, "Columns", 0) or 0)):
        raise InputError(path, "DICOM image without rows or columns")
    if _declared_voxels(ds) > MAX_VOXELS:
        raise InputError(path, f"declares {_declared_voxels(ds):,} voxels, more than {MAX_VOXELS:,}")
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise InputError(path, "colour DICOM image: expected a grey-level MR image")
    try:
        data = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as err:
        raise InputError(path, f"cannot decode the pixel data ({short_reason(err)})") from None
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    data = data * slope + intercept
    if not np.isfinite(data).all():
        raise InputError(path, "pixel data holds NaN or Inf")
    return data


def _is_mosaic(ds) -> bool:
    return "MOSAIC" in [str(v).upper() for v in (getattr(ds, "ImageType", []) or [])]


def _spacing(ds) -> tuple[float, float]:
    try:
        dy, dx = (float(v) for v in ds.PixelSpacing)
        return dy, dx
    except Exception:
        return 1.0, 1.0


def _file_volume(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    ds = _read(path, pixels=False)
    if _declared_voxels(ds) > MAX_VOXELS:
        raise InputError(path, f"declares {_declared_voxels(ds):,} voxels, more than {MAX_VOXELS:,}")
    if _is_mosaic(ds):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from nibabel.nicom import dicomwrappers

                data = np.asarray(dicomwrappers.wrapper_from_file(os.fspath(path)).get_data(), dtype=np.float32)
        except Exception as err:
            raise InputError(path, f"cannot unpack the Siemens mosaic ({short_reason(err)})") from None
        return np.ascontiguousarray(np.moveaxis(data, -1, 0)), _spacing(ds)  # (x, y, slice) -> slices
    data = _pixels(_read(path), path)
    return (data if data.ndim == 3 else data[None]), _spacing(ds)


def _slice_position(ds) -> float:
    """Position along the slice normal (ImageOrientationPatient x ImagePositionPatient), else
    the instance number."""
    try:
        o = np.asarray(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(o[:3], o[3:])
        return float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float)))
    except Exception:
        return float(getattr(ds, "InstanceNumber", 0) or 0)


def _folder_volume(folder: Path) -> tuple[np.ndarray, tuple[float, float]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if len(files) > MAX_FILES:
        raise InputError(folder, f"{len(files)} files: more than {MAX_FILES} in one series folder")
    headers = []
    for f in files:
        try:
            ds = _read(f, pixels=False)
        except InputError:
            continue  # other files (notes, DICOMDIR leftovers) are skipped
        if "PixelData" in ds or getattr(ds, "Rows", None):
            headers.append((f, ds))
    if not headers:
        raise InputError(folder, "no DICOM images in the folder")
    series: dict[str, list] = {}
    for f, ds in headers:
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((f, ds))
    if len(series) > 1:
        raise InputError(folder, f"{len(series)} DICOM series in one folder: give one series per folder")
    items = sorted(next(iter(series.values())), key=lambda fd: (_slice_position(fd[1]), fd[0].name))
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in items}
    if len(shapes) > 1:
        raise InputError(folder, f"images of different sizes in one series: {sorted(shapes)}")
    if sum(_declared_voxels(ds) for _, ds in items) > MAX_VOXELS:
        raise InputError(folder, f"the series declares more than {MAX_VOXELS:,} voxels")
    slices = []
    for f, _ in items:
        data = _pixels(_read(f), f)
        slices.extend(data if data.ndim == 3 else [data])
    return np.stack(slices), _spacing(items[0][1])


def load_dicom(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float]]:
    """Magnitude images ``(slices, H, W)`` float32 (absolute values of the rescaled pixels) and
    the in-plane pixel spacing (mm) of a DICOM file (single frame, multi-frame or Siemens
    mosaic) or of a folder holding one series (sorted along the slice normal)."""
    p = Path(path)
    data, spacing = _folder_volume(p) if p.is_dir() else _file_volume(p)
    if data.size == 0:
        raise InputError(p, "empty DICOM image")
    return np.abs(data).astype(np.float32), spacing


def is_dicom(path: str | os.PathLike) -> bool:
    """A ``.dcm``/``.dicom`` name, a file with the DICOM preamble (``DICM`` at byte 128), or a
    folder whose first file has it."""
    p = Path(path)
    if p.is_dir():
        first = next((f for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith(".")), None)
        return first is not None and is_dicom(first)
    if p.name.lower().endswith((".dcm", ".dicom")):
        return True
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False
