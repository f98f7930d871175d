"""NIfTI magnitude volumes (nibabel), shape-checked from the header before the data is read."""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError, short_reason
from .shapes import check_padding, check_size


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """A 3-D NIfTI as float32 ``(slices, H, W)`` (slices along its last axis) and voxel sizes."""
    import nibabel as nib

    path = os.fspath(path)
    try:
        img = nib.load(path)
        dtype = img.get_data_dtype()
    except Exception as err:
        raise InputError(path, f"not a readable NIfTI file ({short_reason(err)})") from None
    if dtype.kind == "c":
        raise InputError(path, "complex NIfTI data: expected a real magnitude volume")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) not in (2, 3):
        raise InputError(path, f"expected a 2-D or 3-D volume, got shape {img.shape}")
    check_size(path, shape[2] if len(shape) == 3 else 1, shape[0], shape[1])
    side = max(shape[0], shape[1])  # the square grid the slices are padded to
    check_padding(path, shape[0], shape[1], side)
    check_size(path, shape[2] if len(shape) == 3 else 1, side, side)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except Exception as err:
        raise InputError(path, f"cannot read the image data ({short_reason(err)})") from None
    if data.ndim == 2:
        data = data[:, :, None]
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return np.moveaxis(data, -1, 0), zooms
