"""Training batches: slices of a prepared dataset, augmented, undersampled and normalised.

Every random choice for sample ``index`` of epoch ``epoch`` comes from
``numpy.random.default_rng([seed, epoch, index])`` and the order of an epoch from
``default_rng([seed, epoch])``: batches depend on nothing else (no global RNG, no state to
save), so a resumed run and an uninterrupted run see identical data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..fft import complex_to_channels, fft2c_np, ifft2c_np
from ..io import FastMRIVolume
from ..masks import MASK_FUNCS, sampling_grid
from ..masks_2d import MASK_2D_FUNCS
from ..transforms import NORMALISED_PEAK
from .augment import Augmentation, augment, random_window, smooth_phase


@dataclass
class Batch:
    """A batch in the normalised domain (``6 / max|zero-filled|`` per slice).

    Attributes:
        x: zero-filled input ``(B, 2, H, W)``; k0: measured k-space, complex ``(B, H, W)``
        (multi-coil: ``(B, C, H, W)``); mask: ``(B, W)`` 0/1 (``(B, H, W)`` with 2-D masks); target: fully sampled image
        ``(B, 2, H, W)``; maps: coil sensitivities ``(B, C, H, W)`` (None: single coil).
    """

    x: torch.Tensor
    k0: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    maps: torch.Tensor | None = None

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(None if t is None else t.to(device, non_blocking=True)
                       for t in (self.x, self.k0, self.mask, self.target, self.maps)))


class SliceIndex:
    """All slices of a list of fastMRI h5 files; reads one slice at a time (files kept open)."""

    def __init__(self, files: Sequence[str | os.PathLike]):
        if not files:
            raise InputError(None, "no training files")
        self.files = [os.fspath(f) for f in files]
        self._volumes: dict[int, FastMRIVolume] = {}
        self.entries: list[tuple[int, int]] = []
        for i, f in enumerate(self.files):
            vol = FastMRIVolume(f)
            self.entries.extend((i, s) for s in range(len(vol)))
            vol.close()

    def __len__(self) -> int:
        return len(self.entries)

    def image(self, index: int) -> np.ndarray:
        """The fully sampled complex image ``(H, W)`` of entry ``index``."""
        fi, si = self.entries[index]
        vol = self._volumes.get(fi)
        if vol is None:
            vol = self._volumes[fi] = FastMRIVolume(self.files[fi])
        return ifft2c_np(vol[si].kspace).astype(np.complex64)

    def close(self) -> None:
        for vol in self._volumes.values():
            vol.close()
        self._volumes.clear()


def random_crop(image: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """A random ``size x size`` window of the image (image space), or the image itself."""
    if size is None:
        return image
    H, W = image.shape
    if size > H or size > W:
        raise InputError(None, f"crop {size} is larger than the training slices ({H}x{W})")
    return random_window(image, (size, size), rng)


def make_sample(
    image: np.ndarray,
    rng: np.random.Generator,
    crop: int | tuple[int, int] | None,
    accelerations: Sequence[float],
    phase_prob: float,
    mask_kind: str = "random",
    augmentation: Augmentation | None = None,
    mask_kinds: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment one complex image; return ``(image, kspace, mask lines)`` on the crop grid.

    Without ``augmentation`` only the first round's augmentation runs (a random square window
    and a smooth phase with ``phase_prob``), drawing from ``rng`` in the same order as before.
    With it, :func:`backend.training.augment.augment` builds the image on the grid ``crop``
    (``(rows, cols)``, or square; None = the slice's own grid). The mask kind is drawn from
    ``mask_kinds`` when given.
    """
    if augmentation is None:
        image = random_crop(image, crop if crop is None else int(np.atleast_1d(crop)[0]), rng)
        if phase_prob > 0 and rng.random() < phase_prob:
            image = image * np.exp(1j * smooth_phase(image.shape, rng))
    else:
        shape = image.shape if crop is None else (crop, crop) if np.isscalar(crop) else tuple(crop)
        image = augment(image, shape, rng, augmentation)
    kspace = fft2c_np(image).astype(np.complex64)
    acc = accelerations[int(rng.integers(len(accelerations)))]
    if mask_kinds:
        mask_kind = mask_kinds[int(rng.integers(len(mask_kinds)))]
    if mask_kind in MASK_2D_FUNCS:
        sampling = MASK_2D_FUNCS[mask_kind]([acc])(image.shape, seed=int(rng.integers(2**31))).pattern
    else:
        sampling = MASK_FUNCS[mask_kind]([acc])(image.shape[1], seed=int(rng.integers(2**31))).lines
    if mask_kinds and any(kind in MASK_2D_FUNCS for kind in mask_kinds):  # one mask shape per batch
        sampling = sampling_grid(sampling, image.shape)
    return image.astype(np.complex64), kspace, np.array(sampling, dtype=np.float32)


def coil_sample(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, coils: int,
                snr_db: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sample ``image`` seen by ``coils`` coils: ``(target, coil k-space, mask, maps)``.

    Sensitivities of the benchmark's model (:func:`backend.coils.simulated_sensitivities`),
    complex Gaussian noise per coil at an SNR drawn from ``snr_db`` (dB of the coil k-space's
    RMS), maps by :func:`backend.coils.lowres_maps` from the central
    :data:`backend.coils.CALIBRATION_LINES` columns of the noisy coil data (an ACS region as a
    scan that calibrates its coils has; the few centre lines of a 128-wide crop's 8x mask alone
    give useless maps; under a 2-D ``mask`` the centre square of that side, as a 3-D scan's
    calibration region), and the target the fully sampled, noise-free coil images combined with
    those maps (what the output is compared with; its magnitude is the image's where the maps
    are exact)."""
    from ..coils import CALIBRATION_LINES, lowres_maps, sense_combine, simulated_sensitivities

    coil_images = simulated_sensitivities(image.shape, coils, rng) * image[None]
    kspace = fft2c_np(coil_images)
    rms = float(np.sqrt(np.mean(np.abs(kspace) ** 2))) or 1.0
    sigma = rms * 10 ** (-rng.uniform(*snr_db) / 20) / np.sqrt(2)
    kspace = (kspace + sigma * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)))
    maps = lowres_maps(kspace, CALIBRATION_LINES, square=np.ndim(mask) == 2)
    target = sense_combine(coil_images, maps)
    return target.astype(np.complex64), kspace.astype(np.complex64), mask, maps.astype(np.complex64)


def collate(samples: list[tuple[np.ndarray, ...]]) -> Batch:
    """Stack samples and normalise each by ``6 / max|zero-filled|`` (multi-coil samples of
    :func:`coil_sample`: the coil-combined zero-filled image, as
    :func:`backend.transforms.multicoil_network_inputs` makes it at inference)."""
    if len(samples[0]) == 4:
        from ..transforms import multicoil_network_inputs

        kspace, maps = (torch.from_numpy(np.stack([s[i] for s in samples])) for i in (1, 3))
        mask = torch.from_numpy(np.stack([s[2] for s in samples]))
        x, k0, scale = multicoil_network_inputs(kspace, mask, maps)
        images = torch.from_numpy(np.stack([s[0] for s in samples]))
        return Batch(x, k0, mask, complex_to_channels(images * scale), maps)
    images = torch.from_numpy(np.stack([s[0] for s in samples]))
    kspace = torch.from_numpy(np.stack([s[1] for s in samples]))
    mask = torch.from_numpy(np.stack([s[2] for s in samples]))
    k0 = kspace * (mask if mask.dim() == 3 else mask[:, None, :])  # 2-D patterns (B, H, W) or columns (B, W)
    zf = torch.from_numpy(ifft2c_np(k0.numpy()))
    peak = zf.abs().flatten(1).amax(1).clamp_min(1e-12)
    scale = (NORMALISED_PEAK / peak).view(-1, 1, 1)
    return Batch(complex_to_channels(zf * scale), k0 * scale, mask, complex_to_channels(images * scale))


class EpochBatches:
    """Deterministic batches of one epoch for one rank.

    Args:
        index: the slices to draw from; seed/epoch: the RNG key; rank/world: this process's
        share (every ``world``-th batch of the shared order); steps: batches per epoch (None =
        one pass over the slices, the last partial batch dropped); coils: 0 for single-coil
        batches, else every sample seen by this many simulated coils (:func:`coil_sample`).
    """

    def __init__(self, index: SliceIndex, *, seed: int, epoch: int, batch_size: int, crop: int | None,
                 accelerations: Sequence[float], phase_prob: float, steps: int | None = None,
                 rank: int = 0, world: int = 1, stream: int = 0, augmentation: Augmentation | None = None,
                 aspects: Sequence[float] = (1.0,), mask_kinds: Sequence[str] | None = None,
                 coils: int = 0, coil_snr_db: Sequence[float] = (30.0, 45.0)):
        self.index, self.seed, self.epoch, self.batch_size = index, seed, epoch, batch_size
        self.coils, self.coil_snr_db = coils, tuple(coil_snr_db)
        self.crop, self.accelerations, self.phase_prob = crop, accelerations, phase_prob
        self.augmentation, self.aspects, self.mask_kinds = augmentation, tuple(aspects), mask_kinds
        self.rank, self.world, self.stream = rank, world, stream
        per_pass = len(index) // (batch_size * world)
        if per_pass == 0:
            raise InputError(None, f"{len(index)} training slices are too few for batch {batch_size} x {world} ranks")
        self.steps = per_pass if steps is None else steps

    def __len__(self) -> int:
        return self.steps

    def _order(self, repeat: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.stream, self.epoch, repeat]).permutation(len(self.index))

    def __iter__(self) -> Iterator[Batch]:
        n_per_step = self.batch_size * self.world
        per_pass = len(self.index) // n_per_step
        for step in range(self.steps):
            repeat, within = divmod(step, per_pass)
            order = self._order(repeat)
            start = within * n_per_step + self.rank * self.batch_size
            samples = []
            grid = self._grid(step)
            for pos in range(start, start + self.batch_size):
                idx = int(order[pos])
                rng = np.random.default_rng([self.seed, self.stream, self.epoch, step, pos])
                sample = make_sample(self.index.image(idx), rng, grid, self.accelerations, self.phase_prob,
                                     augmentation=self.augmentation, mask_kinds=self.mask_kinds)
                if self.coils:  # drawn after the single-coil sample: its draws are unchanged
                    sample = coil_sample(sample[0], sample[2], rng, self.coils, self.coil_snr_db)
                samples.append(sample)
            yield collate(samples)

    def _grid(self, step: int) -> int | tuple[int, int] | None:
        """The batch's grid: the square crop, or with several ``aspects`` (columns / rows) a
        rectangle of the crop's area drawn per step (the same for every rank), its sides even."""
        if self.crop is None or self.aspects == (1.0,):
            return self.crop
        aspect = self.aspects[int(np.random.default_rng([self.seed, self.stream, self.epoch, step, 2**20]).integers(
            len(self.aspects)))]
        rows = int(round(self.crop / np.sqrt(aspect) / 2)) * 2
        cols = int(round(self.crop * np.sqrt(aspect) / 2)) * 2
        return rows, cols


def split_files(files: Sequence[Path], seed: int) -> tuple[list[Path], list[Path]]:
    """Two disjoint halves of the training files (by file, i.e. by slab) for DARTS."""
    files = sorted(files)
    if len(files) < 2:
        raise InputError(None, "the search needs at least 2 training files (train_w and train_alpha)")
    order = np.random.default_rng([seed, 7]).permutation(len(files))
    half = len(files) // 2
    return [files[i] for i in sorted(order[:half])], [files[i] for i in sorted(order[half:])]
