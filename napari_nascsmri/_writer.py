"""napari writers: a reconstruction layer as fastMRI submission h5 or as NIfTI (atomic writes)."""

from __future__ import annotations

import os

import numpy as np


def _volume(data) -> np.ndarray:
    arr = np.asarray(data, dtype=np.float32)
    return arr[None] if arr.ndim == 2 else arr


def write_fastmri_h5(path: str, data, attributes: dict) -> list[str]:
    """Write ``reconstruction`` (float32 slices x H x W) like a fastMRI submission file."""
    from backend.files import atomic_h5

    with atomic_h5(path) as f:
        f.create_dataset("reconstruction", data=_volume(data))
        f.attrs["layer"] = str(attributes.get("name", ""))
    return [path]


def write_nifti(path: str, data, attributes: dict) -> list[str]:
    """Write the layer as a NIfTI volume (slices on the last axis, unit voxel size)."""
    import nibabel as nib

    from backend.errors import InputError
    from backend.files import atomic_path

    vol = np.moveaxis(_volume(data), 0, -1)
    suffix = ".nii.gz" if path.endswith(".nii.gz") else ".nii"
    with atomic_path(path) as tmp:
        tmp_named = tmp + suffix  # nibabel picks the format from the name
        try:
            nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_named)
            os.replace(tmp_named, tmp)
        except OSError as err:  # disk full, file size limit: name the file, keep nothing
            raise InputError(path, f"could not write the file: {err.strerror or err}") from None
        finally:
            if os.path.exists(tmp_named):
                os.unlink(tmp_named)
    return [path]



