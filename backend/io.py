"""Opening any supported input; reading fastMRI h5 files and magnitude volumes, one slice at a time.

Supported inputs (see :func:`open_volume`):

* fastMRI single-coil h5: ``kspace`` complex ``(slices, H, W)``, optional ``reconstruction_esc``
  ``(slices, h, w)``, attrs, ``ismrmrd_header``. The paper's pipeline is applied per slice:
  IFFT -> centre crop of the complex image to the reference grid (or ``crop``, default 320) ->
  FFT. Outputs and metrics are on the reference's grid.
* fastMRI multi-coil h5: ``kspace`` ``(slices, coils, H, W)``. :meth:`FastMRIVolume.coil_slice`
  gives the coil k-space on the output grid (coil images cropped in image space), which
  :mod:`backend.recon_coils` reconstructs from; the slices themselves (``volume[i]``) are the
  root-sum-of-squares (RSS) image, cropped, treated like a magnitude image (zero phase ->
  simulated single-coil k-space: ``--coils rss``). A notice says which.
* fastMRI test files: undersampled ``kspace`` plus a bool ``mask`` ``(W,)``, no reference. The
  file's own mask is used (mask options are ignored with a notice); reconstruction runs on the
  native grid and the output is centre-cropped to ``crop``.
* Magnitude volumes: NIfTI (``.nii``, ``.nii.gz``) or ``.npy`` arrays ``(slices, H, W)`` / 2-D.
  Slices are taken along the last NIfTI axis, zero-padded to a square grid (``max(H, W)``), and
  turned into zero-phase k-space (the paper's brain protocol). Integer data (any width,
  int8 included) is a valid magnitude volume, read as float32; negative values count by their
  magnitude.
* ISMRMRD raw data (HDF5 with ``dataset/xml`` and ``dataset/data``): :mod:`backend.ismrmrd_raw`;
  Siemens twix raw data (``.dat``, VB and VD/VE): :mod:`backend.twix`; DICOM magnitude images:
  :mod:`backend.dicom`; NIfTI: :mod:`backend.nifti`.

Shapes are checked from the file's declaration before anything is read: slices of at least
8x8, at most :data:`backend.shapes.MAX_SLICE_PIXELS` per slice and
:data:`backend.shapes.MAX_VOLUME_PIXELS` per volume (a tiny file can declare terabytes).

Every problem is an :class:`~backend.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .errors import InputError, short_reason
from .fft import ifft2c_np
from .h5meta import read_attrs
from .masks import strict_mask_lines
from .shapes import MIN_SIDE, check_padding, check_size
from .transforms import center_crop, crop_kspace_via_image, magnitude_to_kspace, pad_or_crop
from .volume import COIL_NOTICE, Slice, Volume, VolumeInfo, check_finite

#: Default crop of raw fastMRI k-space when the file has no reference (the paper's 320x320).
DEFAULT_CROP = 320
REFERENCE_KEYS = ("reconstruction_esc", "reconstruction_rss")


def _dataset(f: h5py.File, key: str, path) -> h5py.Dataset:
    """``f[key]`` as a dataset; a group, a broken link or an unreadable object is an InputError."""
    try:
        obj = f[key]
    except (KeyError, OSError, ValueError, RuntimeError, RecursionError) as err:
        reason = err.args[0] if isinstance(err, KeyError) and err.args else short_reason(err)
        raise InputError(path, f"'{key}' cannot be opened ({reason})") from None
    if not isinstance(obj, h5py.Dataset):
        raise InputError(path, f"'{key}' is not a dataset")
    return obj


class FastMRIVolume(Volume):
    """A fastMRI h5 file, opened once and read one slice at a time (copied out of h5py).

    Args:
        path: the h5 file.
        crop: reconstruction grid for raw k-space when the file carries no reference
            (default 320, the paper's); with a reference its shape is used.
    """

    def __init__(self, path: str | os.PathLike, crop: int | tuple[int, int] | None = None):
        self.path = os.fspath(path)
        try:
            self._file = h5py.File(self.path, "r")
        except PermissionError:
            raise InputError(self.path, "permission denied: the file is not readable") from None
        except (OSError, ValueError, RuntimeError) as err:
            raise InputError(self.path, f"not a readable HDF5 file ({short_reason(err)})") from None
        try:
            self.info = self._inspect(crop)
        except InputError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, RecursionError) as err:
            # h5py / HDF5 on a damaged file, a soft-link loop ("too many links"), odd types
            self._file.close()
            raise InputError(self.path, f"cannot read the file's structure ({short_reason(err)})") from None
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    # -- inspection -------------------------------------------------------------------------
    def _inspect(self, crop) -> VolumeInfo:
        f, path = self._file, self.path
        if "kspace" not in f:
            keys = ", ".join(sorted(f.keys())[:6]) or "none"
            raise InputError(path, f"no 'kspace' dataset: not a fastMRI file (keys: {keys})")
        ks = _dataset(f, "kspace", path)
        if ks.dtype.kind != "c" or ks.dtype.fields is not None:
            raise InputError(path, f"'kspace' must be complex, found {ks.dtype}")
        if ks.ndim not in (3, 4):
            raise InputError(
                path, f"'kspace' must be (slices, H, W) or (slices, coils, H, W), got {ks.shape}"
            )
        num_slices = ks.shape[0]
        H, W = ks.shape[-2:]
        if num_slices == 0:
            raise InputError(path, "'kspace' holds zero slices")
        coils = ks.shape[1] if ks.ndim == 4 else 1
        if coils == 0:
            raise InputError(path, f"'kspace' {ks.shape} holds zero coils")
        check_size(path, num_slices, H, W, coils)
        attrs = read_attrs(f)
        notices: list[str] = []

        if "mask" in f:  # fastMRI test/challenge file
            mask = _dataset(f, "mask", path)
            if mask.shape != (W,):
                raise InputError(path, f"'mask' has shape {mask.shape}, expected ({W},)")
            if mask.dtype.kind not in "biuf":
                raise InputError(path, f"'mask' must be bool or 0/1 numbers, found data type {mask.dtype}")
            try:
                self._mask = strict_mask_lines(mask[()], W, "'mask'")
            except ValueError as err:
                raise InputError(path, str(err)) from None
            if not self._mask.any():
                raise InputError(path, "'mask' samples no k-space line")
            self._mode = "test"
            out = _crop_shape(crop, H, W, path)
            notices.append("test file: its own undersampling mask is used, mask options ignored")
            return VolumeInfo(path, "test", num_slices, (H, W), out, False, attrs, notices)

        self._mask = None
        ref_key = next((k for k in REFERENCE_KEYS if k in f), None)
        self._ref_key = ref_key
        if ref_key is not None:
            ref = _dataset(f, ref_key, path)
            if ref.dtype.kind not in "biuf":
                raise InputError(path, f"'{ref_key}' must hold real magnitudes, found data type {ref.dtype}")
            if ref.ndim != 3 or ref.shape[0] != num_slices:
                raise InputError(
                    path, f"'{ref_key}' has shape {ref.shape}, expected ({num_slices}, h, w)"
                )
            out = tuple(int(s) for s in ref.shape[1:])
            if out[0] > H or out[1] > W:
                raise InputError(path, f"reference {out} is larger than the k-space grid {H}x{W}")
            if min(out) < MIN_SIDE:
                raise InputError(path, f"reference slices of {out[0]}x{out[1]} are too small "
                                       f"(need at least {MIN_SIDE}x{MIN_SIDE})")
        else:
            out = _crop_shape(crop, H, W, path)
        if ks.ndim == 4:
            self._mode = "multicoil"
            notices.append(f"multi-coil file ({coils} coils): {COIL_NOTICE}")
            return VolumeInfo(path, "multicoil", num_slices, out, out, ref_key is not None, attrs, notices)
        self._mode = "singlecoil"
        return VolumeInfo(path, "singlecoil", num_slices, out, out, ref_key is not None, attrs, notices)

    # -- reading ----------------------------------------------------------------------------
    def coil_slice(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Multi-coil files: slice ``index`` as coil k-space ``(coils, h, w)`` on the output grid
        (each coil image cropped in image space, k-space recomputed) and its reference."""
        if self._mode != "multicoil":
            raise InputError(self.path, "not a multi-coil file: it has no coil k-space")
        raw, ref = self._raw(index)
        return crop_kspace_via_image(raw, self.info.output_shape), ref

    def _raw(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        path = self.path
        try:
            raw = np.array(self._file["kspace"][index], dtype=np.complex64)
            ref = (
                np.array(self._file[self._ref_key][index], dtype=np.float32)
                if self._mode != "test" and self._ref_key
                else None
            )
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise InputError(path, f"cannot read slice {index} ({short_reason(err)})") from None
        check_finite(path, "k-space", raw, index)
        if ref is not None:
            check_finite(path, "reference", ref, index)
        return raw, ref

    def _read(self, index: int) -> Slice:
        raw, ref = self._raw(index)
        out = self.info.output_shape
        if self._mode == "test":
            return Slice(raw, None, self._mask.copy())
        if self._mode == "multicoil":
            rss = np.sqrt(np.sum(np.abs(ifft2c_np(raw)) ** 2, axis=0))
            return Slice(magnitude_to_kspace(center_crop(rss, out)), ref, None)
        return Slice(crop_kspace_via_image(raw, out), ref, None)


class MagnitudeVolume(Volume):
    """Magnitude images ``(slices, H, W)`` (from NIfTI or numpy) as zero-phase k-space.

    Each slice is zero-padded (or cropped) to the square grid ``size`` (default ``max(H, W)``).
    The magnitude itself is the reference.
    """

    def __init__(self, data: np.ndarray, path: str = "<array>", size: int | None = None):
        self.path = path
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise InputError(path, f"expected a 2-D image or a 3-D volume, got shape {data.shape}")
        if data.dtype.kind == "c":
            raise InputError(path, "complex magnitude volume: expected real-valued images")
        if data.dtype.kind not in "biuf":
            raise InputError(path, f"unsupported data type {data.dtype}")
        H, W = data.shape[1:]
        check_size(path, data.shape[0], H, W)
        size = max(H, W) if size is None else int(size)
        check_padding(path, H, W, size)
        check_size(path, data.shape[0], size, size)
        self._data = data
        self.info = VolumeInfo(path, "magnitude", data.shape[0], (size, size), (size, size), True)

    def _read(self, index: int) -> Slice:
        img = np.asarray(self._data[index], dtype=np.float32)
        check_finite(self.path, "image", img, index)
        img = np.abs(pad_or_crop(img, self.info.grid))
        return Slice(magnitude_to_kspace(img), img, None)


def open_volume(path: str | os.PathLike, crop: int | tuple[int, int] | None = None) -> Volume:
    """Open any supported input by its content/extension; raises InputError otherwise."""
    from .dicom import NOTICE as DICOM_NOTICE, is_dicom, load_dicom
    from .files import check_input_file

    if Path(path).is_dir() and is_dicom(path):  # a folder holding one DICOM series
        return _dicom_volume(Path(path), load_dicom, DICOM_NOTICE)
    p = check_input_file(path)  # no such file, a folder, a FIFO or device, no read permission
    if p.stat().st_size == 0:
        raise InputError(p, "the file is empty")
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        from .nifti import load_nifti

        data, _ = load_nifti(p)
        return MagnitudeVolume(data, os.fspath(p))
    if name.endswith(".npy"):
        try:
            data = np.load(p, allow_pickle=False, mmap_mode="r")
        except Exception as err:
            raise InputError(p, f"not a readable .npy array ({short_reason(err)})") from None
        return MagnitudeVolume(data, os.fspath(p))
    if is_dicom(p):
        return _dicom_volume(p, load_dicom, DICOM_NOTICE)
    # Siemens twix files carry the .dat extension (no magic number identifies them)
    if name.endswith(".dat"):
        from .twix import TwixVolume

        return TwixVolume(p)
    if h5py.is_hdf5(os.fspath(p)):
        raw = _open_ismrmrd(p)
        return raw if raw is not None else FastMRIVolume(p, crop=crop)
    raise InputError(p, "unrecognised file type (expected fastMRI or ISMRMRD .h5, Siemens twix .dat, .nii/.nii.gz, .npy or DICOM)")


def _open_ismrmrd(p: Path):
    """An :class:`~backend.ismrmrd_raw.IsmrmrdVolume` when ``p`` is ISMRMRD raw data (no fastMRI
    ``kspace``), else None (the fastMRI reader then reports what is wrong)."""
    from .ismrmrd_raw import IsmrmrdVolume, is_ismrmrd

    try:
        f = h5py.File(p, "r")
    except Exception:  # noqa: BLE001 - FastMRIVolume gives the one-line error
        return None
    try:
        if "kspace" in f or not is_ismrmrd(f):
            f.close()
            return None
        return IsmrmrdVolume(p, f)
    except BaseException:
        f.close()
        raise


def _dicom_volume(p: Path, load, notice: str) -> "MagnitudeVolume":
    data, _ = load(p)
    volume = MagnitudeVolume(data, os.fspath(p))
    volume.info.notices.append(notice)
    return volume


def _crop_shape(crop, H: int, W: int, path) -> tuple[int, int]:
    if crop is None:
        crop = (min(DEFAULT_CROP, H), min(DEFAULT_CROP, W))
    elif isinstance(crop, int):
        crop = (crop, crop)
    crop = (int(crop[0]), int(crop[1]))
    if min(crop) < MIN_SIDE:
        raise InputError(path, f"crop {crop[0]}x{crop[1]} is too small (need at least {MIN_SIDE}x{MIN_SIDE})")
    if crop[0] > H or crop[1] > W:
        raise InputError(path, f"k-space of {H}x{W} is smaller than the crop {crop[0]}x{crop[1]}")
    return crop
