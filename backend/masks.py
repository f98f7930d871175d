"""Cartesian column undersampling masks with fastMRI semantics.

A mask function is a callable object holding its own ``numpy.random.RandomState``; calling it
with a seed reseeds that generator for the call only and restores its state afterwards, so the
global numpy/torch random state is never touched and the same seed always gives the same mask.
The sequence of random draws is the one of ``fastmri.data.subsample`` (0.3.0), so for the same
seed our masks equal fastMRI's ``RandomMaskFunc`` / ``EquiSpacedMaskFunc`` masks (tested).

Rules (REFERENCE section 2, fastMRI):

* ``num_low = round(W * center_fraction)`` fully sampled centre columns starting at
  ``(W - num_low + 1) // 2``;
* random: every column is kept with probability ``(W / acc - num_low) / (W - num_low)``;
* equispaced: every ``acc``-th column from a random offset in ``[0, acc)``;
* gaussian (ours, not fastMRI's): exactly ``round(W / acc) - num_low`` outer columns drawn with a
  Gaussian density around the centre (:class:`GaussianMaskFunc`);
* default centre fraction: ``0.32 / acceleration`` (8 % at 4x, 4 % at 8x, the paper's setting);
* 2-D masks (``gaussian2d``, ``poisson``; the phase-encode plane of 3-D acquisitions): a fully
  sampled centre square, then outer points of the whole grid by a Gaussian density or a
  variable-density Poisson disc (:mod:`backend.masks_2d`), realised acceleration = grid / points.

Per-volume reproducible masks use :func:`seed_from_filename` (``tuple(map(ord, name))``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np


def default_center_fraction(acceleration: float) -> float:
    """The paper's centre fraction: 0.08 at 4x, 0.04 at 8x, i.e. ``0.32 / acceleration``."""
    return 0.32 / float(acceleration)


def seed_from_filename(path: str | os.PathLike) -> tuple[int, ...]:
    """fastMRI's per-volume seed: the code points of the file's base name."""
    return tuple(map(ord, os.path.basename(os.fspath(path))))


@dataclass(frozen=True)
class Mask:
    """A realised mask: sampled phase-encode columns, or a 2-D pattern.

    Attributes:
        lines: bool array ``(W,)``, True where a phase-encode column is sampled (for a 2-D
            pattern: the columns it samples at least once).
        num_low_frequencies: width of the fully sampled centre block (2-D: the side of the
            fully sampled centre square).
        acceleration: the nominal acceleration asked for.
        pattern: bool ``(H, W)`` for a 2-D mask (the phase-encode plane of a 3-D acquisition,
            both axes undersampled), else None.
    """

    lines: np.ndarray
    num_low_frequencies: int
    acceleration: float
    pattern: np.ndarray | None = None

    @property
    def sampling(self) -> np.ndarray:
        """What multiplies k-space: ``lines`` ``(W,)`` (broadcast over rows) or ``pattern`` ``(H, W)``."""
        return self.lines if self.pattern is None else self.pattern

    @property
    def realised_acceleration(self) -> float:
        """Grid points / sampled points: ``W / sampled columns`` for a column mask, ``H W /
        sampled points`` for a 2-D pattern (what the mask really achieves)."""
        n = int(self.sampling.sum())
        return float("inf") if n == 0 else self.sampling.size / n


def sampling_grid(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask as :attr:`Mask.sampling` gives it (``(W,)`` or ``(H, W)``) as float32 ``(H, W)``."""
    mask = np.asarray(mask, dtype=np.float32)
    return np.broadcast_to(mask if mask.ndim == 2 else mask[None, :], tuple(shape))


@contextlib.contextmanager
def _temp_seed(rng: np.random.RandomState, seed) -> Iterator[None]:
    if seed is None:
        yield
        return
    state = rng.get_state()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.set_state(state)


def center_block(num_cols: int, num_low: int) -> np.ndarray:
    """Bool ``(W,)`` with the ``num_low`` centre columns set, fastMRI placement."""
    mask = np.zeros(num_cols, dtype=bool)
    start = (num_cols - num_low + 1) // 2
    mask[start : start + num_low] = True
    return mask


def mask_arguments(accelerations: Sequence[float], center_fractions: Sequence[float] | None,
                   square: bool = False) -> tuple[list[float], list[float]]:
    """Checked ``(accelerations, centre fractions)`` of a mask function (``None`` fractions ->
    :func:`default_center_fraction`); ``ValueError`` with a one-line reason. The fully sampled
    centre alone must not exceed the acceleration's share of k-space: ``cf`` of the columns, or
    with ``square`` (2-D masks) a square of ``cf`` of each side, about ``cf^2`` of the grid."""
    accelerations = [float(a) for a in accelerations]
    if center_fractions is None:
        center_fractions = [default_center_fraction(a) for a in accelerations]
    center_fractions = [float(c) for c in center_fractions]
    if not accelerations or len(accelerations) != len(center_fractions):
        raise ValueError("give one centre fraction per acceleration")
    for acc, cf in zip(accelerations, center_fractions):
        if not acc >= 1:
            raise ValueError(f"acceleration must be >= 1, got {acc}")
        if not 0 <= cf <= 1:
            raise ValueError(f"centre fraction must lie in [0, 1], got {cf}")
        if (cf * cf if square else cf) * acc > 1 + 1e-9:
            what = f"a centre square of {cf} of each side" if square else f"centre fraction {cf}"
            raise ValueError(f"{what} alone samples more than 1/{acc:g} of k-space")
    return accelerations, center_fractions


class MaskFunc:
    """Base class: pick (centre fraction, acceleration), build centre block + outer lines.

    Args:
        center_fractions: one per acceleration; ``None`` -> :func:`default_center_fraction`.
        accelerations: one or more; with several, each call picks one at random (fastMRI).
        seed: seed of the function's own generator (used when a call passes no seed).
    """

    name = "base"

    def __init__(
        self,
        accelerations: Sequence[float] = (4,),
        center_fractions: Sequence[float] | None = None,
        seed=None,
    ):
        accelerations, center_fractions = mask_arguments(accelerations, center_fractions)
        self.accelerations = accelerations
        self.center_fractions = center_fractions
        self.rng = np.random.RandomState(seed)

    def __call__(self, num_cols: int, seed=None, offset: int | None = None) -> Mask:
        """Draw a mask for ``num_cols`` phase-encode columns; ``seed`` makes it reproducible."""
        if num_cols < 1:
            raise ValueError(f"number of columns must be positive, got {num_cols}")
        with _temp_seed(self.rng, seed):
            choice = self.rng.randint(len(self.center_fractions))
            cf, acc = self.center_fractions[choice], self.accelerations[choice]
            num_low = round(num_cols * cf)
            lines = center_block(num_cols, num_low) | self._outer(num_cols, acc, num_low, offset)
        return Mask(lines=lines, num_low_frequencies=num_low, acceleration=acc)

    def _outer(self, num_cols: int, acc: float, num_low: int, offset: int | None) -> np.ndarray:
        raise NotImplementedError


class RandomMaskFunc(MaskFunc):
    """Outer columns kept independently with the probability that gives ``acc`` on average."""

    name = "random"

    def _outer(self, num_cols, acc, num_low, offset):
        if num_cols == num_low:
            return np.zeros(num_cols, dtype=bool)
        prob = (num_cols / acc - num_low) / (num_cols - num_low)
        return self.rng.uniform(size=num_cols) < prob


class EquiSpacedMaskFunc(MaskFunc):
    """Every ``acc``-th column from a random offset (the paper: "under-sampled uniformly")."""

    name = "equispaced"

    def _outer(self, num_cols, acc, num_low, offset):
        if offset is None:
            offset = self.rng.randint(0, high=round(acc))
        mask = np.zeros(num_cols, dtype=bool)
        mask[offset :: round(acc)] = True
        return mask


#: Standard deviation of :class:`GaussianMaskFunc`'s sampling density, as a fraction of half the
#: phase-encode width (our choice: half the outer lines fall within about 0.4 of the half-width
#: from the centre at 4x).
GAUSSIAN_SIGMA = 0.4


class GaussianMaskFunc(MaskFunc):
    """1-D variable density: the centre block, then exactly ``round(W / acc) - num_low`` outer
    columns drawn without replacement with probability proportional to
    ``exp(-d^2 / (2 sigma^2))``, ``d`` the distance from the centre column in units of half the
    width, ``sigma`` :data:`GAUSSIAN_SIGMA`. The realised acceleration is the nominal one up to
    rounding (unlike ``random``, whose line count varies from draw to draw)."""

    name = "gaussian"

    def _outer(self, num_cols, acc, num_low, offset):
        mask = np.zeros(num_cols, dtype=bool)
        centre = center_block(num_cols, num_low)
        candidates = np.flatnonzero(~centre)
        wanted = min(max(round(num_cols / acc) - num_low, 0), candidates.size)
        if wanted == 0:
            return mask
        distance = (candidates - num_cols // 2) / max(num_cols / 2, 1)
        weight = np.exp(-0.5 * (distance / GAUSSIAN_SIGMA) ** 2)
        chosen = self.rng.choice(candidates, size=wanted, replace=False, p=weight / weight.sum())
        mask[chosen] = True
        return mask


MASK_FUNCS: dict[str, type[MaskFunc]] = {
    RandomMaskFunc.name: RandomMaskFunc,
    EquiSpacedMaskFunc.name: EquiSpacedMaskFunc,
    GaussianMaskFunc.name: GaussianMaskFunc,
}


def make_mask(
    kind: str,
    num_cols: int,
    acceleration: float = 4,
    center_fraction: float | None = None,
    seed=None,
) -> Mask:
    """One mask of type ``kind`` (a key of :data:`MASK_FUNCS`) for ``num_cols`` columns (2-D
    patterns too: :func:`backend.masks_2d.make_sampling`)."""
    try:
        cls = MASK_FUNCS[kind]
    except KeyError:
        raise ValueError(f"unknown mask type {kind!r}; choose from {sorted(MASK_FUNCS)}") from None
    cfs = None if center_fraction is None else [center_fraction]
    return cls([acceleration], cfs)(num_cols, seed=seed)


def strict_mask_lines(values, num_cols: int | None = None, what: str = "mask") -> np.ndarray:
    """A column mask as bool ``(W,)``, or ``ValueError`` with a one-line reason.

    Only 0/1 masks are masks: a 1-D array (or JSON list) of bools, integers 0/1 or floats
    exactly 0.0/1.0, with ``num_cols`` entries when given. Strings, NaN, other values (-3,
    0.25), nested lists and 2-D arrays are refused instead of being cast (a string "0" or a NaN
    would otherwise count as sampled).
    """
    if isinstance(values, (list, tuple)):
        bad = [v for v in values if not isinstance(v, (bool, int, float))]
        if bad:
            raise ValueError(f"{what} must hold only 0/1 (or true/false), found {bad[0]!r}")
        if values and all(isinstance(v, bool) for v in values):
            array = np.asarray(values, dtype=bool)
        else:
            try:
                array = np.asarray([float(v) for v in values], dtype=np.float64)
            except OverflowError:
                raise ValueError(f"{what} must hold only 0 and 1, found an enormous integer") from None
    else:
        array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be bool or 0/1 numbers, found data type {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{what} must be one column mask (W,), got shape {array.shape}")
    if num_cols is not None and array.shape[0] != num_cols:
        raise ValueError(f"{what} has {array.shape[0]} columns, the data has {num_cols}")
    if array.dtype.kind != "b":
        with np.errstate(invalid="ignore"):
            ok = (array == 0) | (array == 1)
        if not np.all(ok):
            bad = array[~ok][0]
            raise ValueError(f"{what} must hold only 0 and 1, found {bad.item()!r}")
    return array.astype(bool)
