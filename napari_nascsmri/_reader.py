"""napari reader for fastMRI h5 files, NIfTI volumes and DICOM magnitude images.

``get_reader`` does cheap checks and returns None for files it cannot take (never raises); it
takes fastMRI h5 files (HDF5 with ``kspace``), ISMRMRD raw data (HDF5 with ``dataset/xml`` and
``dataset/data``), damaged HDF5 files with the ``.h5`` extension, Siemens twix raw files
(``.dat``), NIfTI files, and DICOM: a file (``.dcm`` or the ``DICM`` magic, whatever its name) or a folder
holding one series (k-space is then simulated from the magnitudes; a notice says so). Problems found while reading become a napari notification through the raised
InputError (the only exception the reader raises for a bad file).
"""

from __future__ import annotations

import os


def _looks_supported(path: str) -> bool:
    name = path.lower()
    if os.path.isdir(path):  # a folder holding one DICOM series
        from backend.dicom import is_dicom

        return is_dicom(path)
    if name.endswith((".nii", ".nii.gz", ".dat")):
        return os.path.isfile(path)
    if name.endswith(".h5"):
        if not os.path.isfile(path):  # a FIFO or device would block h5py.is_hdf5
            return False
        try:
            import h5py

            if not h5py.is_hdf5(path):
                return False
        except Exception:
            return False
        try:
            from backend.ismrmrd_raw import is_ismrmrd

            with h5py.File(path, "r") as f:
                return "kspace" in f or is_ismrmrd(f)
        except Exception:
            # an HDF5 file that cannot be opened (truncated, damaged): no reader can read it, so
            # take it and let read_volume report the problem rather than "no reader found"
            return True
    if os.path.isfile(path):  # DICOM: a .dcm name or the DICM magic at byte 128 (not a FIFO)
        from backend.dicom import is_dicom

        return is_dicom(path)
    return False


def get_reader(path):
    """Return :func:`read_volume` when ``path`` is a fastMRI h5, NIfTI or DICOM input, else None.

    Never raises: anything that is not recognisably ours (including a path that is not a path)
    is declined with None, so napari can offer it to other readers.
    """
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                return None
            path = path[0]
        path = os.fspath(path)
        return read_volume if _looks_supported(path) else None
    except Exception:
        return None


def read_volume(path):
    """Layer data: the reference (or zero-filled for test files) with the source in metadata."""
    from backend.io import open_volume
    from backend.viewer import display_volume

    if isinstance(path, (list, tuple)):
        path = path[0]
    from backend.errors import InputError

    path = os.fspath(path)
    try:
        with open_volume(path) as volume:
            data = display_volume(volume)
            info = volume.info
    except InputError:
        raise
    except (OSError, RuntimeError, RecursionError, TypeError, KeyError, ValueError) as err:
        # h5py/HDF5 (and nibabel) errors the backend did not foresee: still one line naming the file
        text = " ".join(str(err).split())[:160] or type(err).__name__
        raise InputError(path, f"cannot read the file ({text})") from None
    label = "reference" if info.has_reference else "zero-filled (file mask)"
    meta = {
        "nascsmri_source": path,
        "nascsmri_kind": info.kind,
        "nascsmri_role": "reference" if info.has_reference else "input",
        "notices": list(info.notices),
    }
    name = f"{os.path.basename(path)} {label}"
    if info.notices:  # said when the file opens (k-space simulated from magnitudes, coils combined...)
        from ._shared import _notify

        for notice in info.notices:
            _notify("info", f"napari-nascsmri: {os.path.basename(path)}: {notice}")
    return [(data, {"name": name, "metadata": meta, "colormap": "gray"}, "image")]
