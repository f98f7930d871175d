"""2-D sampling patterns: both phase-encode axes undersampled, as the phase-encode plane of a 3-D
acquisition is (each 2-D slice of its ky-kz plane), issue #21.

``gaussian2d`` (independent draws with a Gaussian density) and ``poisson`` (a variable-density
Poisson disc), each with a fully sampled centre square and exactly ``round(H W / acc)`` points,
seeded as the column masks of :mod:`backend.masks`: the same seed gives the same pattern. A
pattern is a :class:`backend.masks.Mask` whose ``pattern`` is set; :func:`make_sampling` makes
either kind of mask (a column mask through :func:`backend.masks.make_mask`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .masks import MASK_FUNCS, Mask, _temp_seed, center_block, make_mask, mask_arguments

#: Standard deviation of :class:`Gaussian2DMaskFunc`'s density, as a fraction of each half-axis.
GAUSSIAN_2D_SIGMA = 0.35


class Mask2DFunc:
    """Base class of 2-D masks: a fully sampled centre square (side ``round(min(H, W) *
    centre fraction)``, the calibration region coil maps are estimated from), then outer points
    chosen so that ``H W / sampled points`` is the acceleration (up to rounding). Seeded as the
    column masks (:func:`_temp_seed`): the same seed gives the same pattern.

    Args:
        accelerations, center_fractions, seed: as :class:`backend.masks.MaskFunc` (one
            acceleration is drawn per call when several are given); the centre square alone
            must not exceed the acceleration's share (``cf^2 acc <= 1``).
    """

    name = "base2d"

    def __init__(self, accelerations: Sequence[float] = (4,), center_fractions: Sequence[float] | None = None,
                 seed=None):
        accelerations, center_fractions = mask_arguments(accelerations, center_fractions, square=True)
        self.accelerations, self.center_fractions = accelerations, center_fractions
        self.rng = np.random.RandomState(seed)

    def __call__(self, shape: tuple[int, int], seed=None) -> Mask:
        """A pattern for a ``(H, W)`` grid; ``seed`` makes it reproducible."""
        H, W = (int(v) for v in shape)
        if H < 1 or W < 1:
            raise ValueError(f"grid must be positive, got {H}x{W}")
        with _temp_seed(self.rng, seed):
            choice = self.rng.randint(len(self.center_fractions))
            cf, acc = self.center_fractions[choice], self.accelerations[choice]
            side = min(round(min(H, W) * cf), H, W)
            pattern = np.zeros((H, W), dtype=bool)
            pattern[center_block(H, side)[:, None] & center_block(W, side)[None, :]] = True
            wanted = max(round(H * W / acc) - int(pattern.sum()), 0)
            if wanted:
                pattern |= self._outer(H, W, acc, pattern, wanted)
        return Mask(lines=pattern.any(axis=0), num_low_frequencies=side, acceleration=acc, pattern=pattern)

    def _outer(self, H: int, W: int, acc: float, centre: np.ndarray, wanted: int) -> np.ndarray:
        raise NotImplementedError


def _radius(H: int, W: int) -> np.ndarray:
    """Distance of every grid point from the centre point, in units of each half-axis."""
    y = (np.arange(H) - H // 2) / max(H / 2, 1)
    x = (np.arange(W) - W // 2) / max(W / 2, 1)
    return np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)


class Gaussian2DMaskFunc(Mask2DFunc):
    """2-D variable density: exactly ``round(H W / acc)`` points in all, the outer ones drawn
    without replacement with probability proportional to ``exp(-r^2 / (2 sigma^2))``, ``r`` the
    distance from the centre in units of each half-axis, ``sigma`` :data:`GAUSSIAN_2D_SIGMA`."""

    name = "gaussian2d"

    def _outer(self, H, W, acc, centre, wanted):
        candidates = np.flatnonzero(~centre.ravel())
        wanted = min(wanted, candidates.size)
        weight = np.exp(-0.5 * (_radius(H, W).ravel()[candidates] / GAUSSIAN_2D_SIGMA) ** 2)
        chosen = self.rng.choice(candidates, size=wanted, replace=False, p=weight / weight.sum())
        out = np.zeros(H * W, dtype=bool)
        out[chosen] = True
        return out.reshape(H, W)


#: Most passes of the Poisson disc over the grid (each visits every point once).
POISSON_PASSES = 4


class PoissonDiscMaskFunc(Mask2DFunc):
    """2-D variable-density Poisson disc: points visited in a seeded random order, each kept
    unless a kept point lies closer than ``s (1 + 2 r)`` grid steps (``r`` as in
    :class:`Gaussian2DMaskFunc`: the discs widen away from the centre, so the density falls
    off), the centre square kept first. The scale ``s`` starts from the packing density of
    random sequential discs and is rescaled (at most :data:`POISSON_PASSES` passes) until the
    pattern holds within 1% of ``round(H W / acc)`` points; the points left over or missing are
    removed from (added to) the outermost (innermost) free positions, so the realised
    acceleration is the nominal one up to rounding, as for the other 2-D mask."""

    name = "poisson"

    def _disc(self, H, W, centre, scale, order, radius) -> np.ndarray:
        kept, blocked = centre.copy(), centre.copy()
        ys, xs = np.divmod(order, W)
        for y, x in zip(ys.tolist(), xs.tolist()):
            if blocked[y, x]:
                continue
            r = scale * (1 + 2 * radius[y, x])
            reach = int(r)
            y0, y1, x0, x1 = max(y - reach, 0), min(y + reach + 1, H), max(x - reach, 0), min(x + reach + 1, W)
            dy = (np.arange(y0, y1) - y)[:, None]
            dx = (np.arange(x0, x1) - x)[None, :]
            blocked[y0:y1, x0:x1] |= dy * dy + dx * dx < r * r
            kept[y, x] = True
        return kept

    def _outer(self, H, W, acc, centre, wanted):
        radius = _radius(H, W)
        order = self.rng.permutation(H * W)
        target = wanted + int(centre.sum())
        # start from the density of random sequential packing (about 0.7 / d^2 points per pixel
        # for an exclusion distance d), then rescale by the count's square root (the count goes
        # as 1 / s^2): a few passes instead of a bisection
        spacing = 1 + 2 * radius
        low, high = 1e-3, float(max(H, W))
        for _ in range(40):  # solve sum(min(1, 0.7 / (s spacing)^2)) = target for s
            mid = 0.5 * (low + high)
            low, high = (mid, high) if np.minimum(1, 0.7 / (mid * spacing) ** 2).sum() > target else (low, mid)
        scale, best = 0.5 * (low + high), None
        for _ in range(POISSON_PASSES):
            kept = self._disc(H, W, centre, scale, order, radius)
            if best is None or abs(kept.sum() - target) < abs(best.sum() - target):
                best = kept
            if abs(int(kept.sum()) - target) <= 0.01 * target:
                break
            scale *= float(np.sqrt(kept.sum() / target))
        extra = int(best.sum()) - target
        flat, r = best.ravel().copy(), radius.ravel()
        if extra > 0:  # drop the outermost non-centre points
            free = np.flatnonzero(flat & ~centre.ravel())
            flat[free[np.argsort(-r[free], kind="stable")[:extra]]] = False
        elif extra < 0:  # add the innermost missing points
            free = np.flatnonzero(~flat)
            flat[free[np.argsort(r[free], kind="stable")[:-extra]]] = True
        return flat.reshape(H, W) & ~centre


#: 2-D masks (``reconstruct --mask gaussian2d|poisson``): the whole (H, W) grid is a sampling pattern.
MASK_2D_FUNCS: dict[str, type[Mask2DFunc]] = {
    Gaussian2DMaskFunc.name: Gaussian2DMaskFunc,
    PoissonDiscMaskFunc.name: PoissonDiscMaskFunc,
}
#: Every mask type ``reconstruct --mask`` takes.
ALL_MASK_KINDS = sorted({*MASK_FUNCS, *MASK_2D_FUNCS})


def make_sampling(kind: str, shape: tuple[int, int], acceleration: float = 4, center_fraction: float | None = None,
                  seed=None) -> Mask:
    """One mask of any type for a ``(H, W)`` grid: a 2-D pattern for a key of
    :data:`MASK_2D_FUNCS`, else the column mask of :func:`backend.masks.make_mask`."""
    H, W = shape
    if kind in MASK_2D_FUNCS:
        cfs = None if center_fraction is None else [center_fraction]
        return MASK_2D_FUNCS[kind]([acceleration], cfs)((H, W), seed=seed)
    if kind not in MASK_FUNCS:
        raise ValueError(f"unknown mask type {kind!r}; choose from {ALL_MASK_KINDS}")
    return make_mask(kind, W, acceleration, center_fraction, seed)
