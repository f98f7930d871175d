"""What every reader yields: a :class:`Volume` of :class:`Slice` objects described by a :class:`VolumeInfo`.

Readers: :mod:`backend.io` (fastMRI h5, magnitude volumes; :func:`backend.io.open_volume` picks
one), :mod:`backend.ismrmrd_raw` (ISMRMRD raw data), :mod:`backend.twix` (Siemens twix raw data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np

from .errors import InputError


class Slice(NamedTuple):
    """One slice ready for reconstruction.

    Attributes:
        kspace: complex64 ``(H, W)`` centred k-space on the reconstruction grid (fully sampled,
            or undersampled for test files).
        reference: float32 ``(h, w)`` magnitude reference, or None when the file has none.
        file_mask: bool ``(W,)`` mask stored in a test file, else None.
    """

    kspace: np.ndarray
    reference: np.ndarray | None
    file_mask: np.ndarray | None


@dataclass
class VolumeInfo:
    """What a file holds, learnt from cheap checks before any slice is read."""

    path: str
    kind: str  # "singlecoil", "multicoil", "test", "magnitude"
    num_slices: int
    grid: tuple[int, int]  # (H, W) of the k-space handed to reconstruction
    output_shape: tuple[int, int]  # (h, w) of reconstructions and references
    has_reference: bool
    attrs: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


#: The notice of a multi-coil file when it opens, and the one a root-sum-of-squares result carries.
COIL_NOTICE = ("reconstructed from the coil k-space with estimated sensitivity maps (--coils rss: the coils "
               "combined by root-sum-of-squares instead)")
RSS_NOTICE = "the coils were combined by root-sum-of-squares and simulated as single-coil k-space"


def check_finite(path, what: str, array: np.ndarray, index: int) -> None:
    if not np.all(np.isfinite(array)):
        raise InputError(path, f"{what} of slice {index} contains NaN or Inf values")


class Volume:
    """Base class: ``len(volume)`` slices, ``volume[i]`` -> :class:`Slice`, ``volume.info``."""

    info: VolumeInfo

    def __len__(self) -> int:
        return self.info.num_slices

    def __getitem__(self, index: int) -> Slice:
        if not -len(self) <= index < len(self):
            raise IndexError(f"slice {index} out of range for {len(self)} slices")
        return self._read(index % len(self))

    def __iter__(self) -> Iterator[Slice]:
        for i in range(len(self)):
            yield self[i]

    def _read(self, index: int) -> Slice:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
