"""What the raw-data readers share: fully sampled Cartesian multi-coil lines -> the fastMRI layout.

:class:`RawCoilVolume` is a volume whose slices are assembled from readout lines (one record
per acquired line: its phase-encode index, and the samples of every coil), as ISMRMRD raw files
(:mod:`backend.ismrmrd_raw`) and Siemens twix files (:mod:`backend.twix`) store them. A reader
finds the records of every slice, checks them and sets the attributes below; this class builds
the k-space of a slice when it is asked for:

* k-space ``(coils, readout, phase encode)``: readout along rows, phase encode along columns
  (the columns a mask selects, as fastMRI); repeated lines (averages) are averaged;
* readout oversampling is removed in image space (inverse FFT along the readout, centre crop
  to the reconstruction matrix, FFT back): never by cutting k-space;
* :meth:`coil_slice` gives the coil k-space on the output grid and the root-sum-of-squares
  reference (what the multi-coil path reconstructs from, as for fastMRI multi-coil files);
  ``volume[i]`` gives the RSS image simulated as single-coil k-space (``--coils rss``).
"""

from __future__ import annotations

import numpy as np

from .fft import fft2c_np, ifft2c_np
from .transforms import center_crop, magnitude_to_kspace
from .volume import Slice, Volume, check_finite


class RawCoilVolume(Volume):
    """Base class of the raw-data readers (see the module docstring).

    A subclass sets ``path``, ``coils``, ``readout`` (samples per line, oversampling included),
    ``lines`` (phase-encode lines), ``_line`` (the phase-encode index of every record),
    ``_rows`` (per slice, the records that build it) and ``info`` (``output_shape`` = the
    reconstruction matrix), and implements :meth:`_samples`.
    """

    path: str
    coils: int
    readout: int
    lines: int
    _line: np.ndarray
    _rows: list[np.ndarray]

    def _samples(self, row: int) -> np.ndarray:
        """Record ``row`` as complex64 ``(coils, readout)``; an InputError naming the file when
        it cannot be read."""
        raise NotImplementedError

    def coil_kspace(self, index: int) -> np.ndarray:
        """Slice ``index`` as complex64 ``(coils, readout, lines)`` on the reconstruction
        matrix's readout (oversampling removed); repeated lines averaged."""
        coils, readout, lines = self.coils, self.readout, self.lines
        kspace = np.zeros((coils, readout, lines), np.complex64)
        counts = np.zeros(lines, np.int32)
        for row in self._rows[index]:
            kspace[:, :, self._line[row]] += self._samples(int(row))
            counts[self._line[row]] += 1
        kspace /= counts[None, None, :]
        check_finite(self.path, "k-space", kspace, index)
        rec_x = self.info.output_shape[0]
        if readout != rec_x:  # readout oversampling: crop the readout in image space
            kspace = fft2c_np(center_crop(ifft2c_np(kspace), (rec_x, lines))).astype(np.complex64)
        return kspace

    def coil_slice(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``index`` as coil k-space ``(coils, h, w)`` on the output grid (coil images cropped
        in image space) and its root-sum-of-squares reference."""
        coil_images = center_crop(ifft2c_np(self.coil_kspace(index)), self.info.output_shape)
        ref = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0)).astype(np.float32)
        return fft2c_np(coil_images).astype(np.complex64), ref

    def _read(self, index: int) -> Slice:
        rss = np.sqrt(np.sum(np.abs(ifft2c_np(self.coil_kspace(index))) ** 2, axis=0))
        ref = center_crop(rss, self.info.output_shape).astype(np.float32)
        return Slice(magnitude_to_kspace(ref), ref, None)


def missing_lines(path, rows: list[np.ndarray], line: np.ndarray, lines: int, what: str) -> None:
    """An InputError when a slice lacks phase-encode lines (undersampled or partial-Fourier
    acquisitions are not read: their reference would not be fully sampled)."""
    from .errors import InputError

    for s, slice_rows in enumerate(rows):
        missing = lines - len(set(line[slice_rows].tolist()))
        if missing:
            raise InputError(path, f"slice {s} lacks {missing} of its {lines} phase-encode lines: "
                                   f"undersampled {what} data is not read yet (only fully sampled acquisitions)")
