"""Multi-coil k-space: coil sensitivity maps, SENSE operators, coil simulation, multi-coil TV.

The building blocks of multi-coil reconstruction (issue #21), numpy, centred orthonormal FFTs
as everywhere (:mod:`backend.fft`); coil k-space is ``(coils, H, W)`` with the phase-encode
columns (the ones a mask selects) along the last axis.

* :func:`coil_maps`: ESPIRiT maps by BART's ``ecalib`` (one map, calibration region of
  :data:`CALIBRATION_LINES` centre columns, or for undersampled data the mask's fully sampled
  centre, :func:`calibration_lines`) when BART is installed, else low-resolution maps (the
  Hann-windowed calibration region's coil images divided by their root-sum-of-squares);
* :func:`sense_forward` / :func:`sense_adjoint`: ``A x = M F (S x)`` and its adjoint;
  :func:`sense_combine`: the coil-combined image ``sum(conj(S) c) / sum |S|^2``;
* :func:`tv_multicoil`: TV with the maps (BART ``pics``, the single-coil TV's settings);
* :func:`simulated_sensitivities` / :func:`simulate_coils`: the coil model of the benchmark's
  ``multicoil`` cases and of the tests (Gaussian sensitivities around the field of view, each
  with a smooth phase).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from .config import COIL_MAP_METHODS
from .fft import fft2c_np, ifft2c_np
from .masks import center_block, sampling_grid

#: Fully sampled centre columns used to calibrate the maps (the paper's masks keep 8% at 4x and
#: 4% at 8x: 29 and 15 of 368 columns; ``ecalib`` needs at least its kernel size, 6).
CALIBRATION_LINES = 24
#: Fewer calibration lines than this: ``auto`` takes the low-resolution maps (ESPIRiT's kernel
#: needs a few lines more than its own size).
MIN_ESPIRIT_LINES = 6


def calibration_lines(mask: np.ndarray) -> int:
    """The fully sampled centre of a mask, what calibrates the maps of undersampled data: for a
    column mask ``(W,)`` the run of sampled columns around ``W // 2``; for a 2-D pattern ``(H,
    W)`` the side of the largest fully sampled centre square (placed as
    :func:`backend.masks.center_block` places it, as :mod:`backend.masks_2d` draws it)."""
    lines = np.asarray(mask, dtype=bool)
    if lines.ndim == 2:
        H, W = lines.shape
        side = 0
        while side < min(H, W) and lines[np.ix_(center_block(H, side + 1), center_block(W, side + 1))].all():
            side += 1
        return side
    centre = lines.size // 2
    if not lines[centre]:
        return 0
    left = centre
    while left > 0 and lines[left - 1]:
        left -= 1
    right = centre
    while right + 1 < lines.size and lines[right + 1]:
        right += 1
    return right - left + 1


def espirit_maps(coil_kspace: np.ndarray, calibration: int = CALIBRATION_LINES, square: bool = False) -> np.ndarray:
    """ESPIRiT sensitivities ``(coils, H, W)`` by ``bart ecalib -m1 -r calibration -k kernel``
    (BART's calibration region is the centre ``calibration`` x ``calibration`` square, which the
    column masks sample in full along the rows and the 2-D masks sample as their centre square);
    the kernel is BART's default 6 for 18 or more calibration lines, else ``calibration // 2``
    (at least 3): with the 9 lines of an 8x mask of 224 columns the default kernel left every
    map empty, measured here. Maps that still come out empty are replaced by
    :func:`lowres_maps` (``square``: of a 2-D mask's centre square)."""
    from .tv import bart_available, read_cfl, run_bart, write_cfl

    if not bart_available():
        raise RuntimeError("the 'bart' command is not installed (Debian package 'bart')")
    k = np.asarray(coil_kspace, dtype=np.complex64)
    C, H, W = k.shape
    with tempfile.TemporaryDirectory(prefix="nascsmri-bart-") as tmp:
        ksp, sens = os.path.join(tmp, "ksp"), os.path.join(tmp, "sens")
        write_cfl(ksp, np.moveaxis(k, 0, -1).reshape(H, W, 1, C))
        calibration = min(calibration, W)
        kernel = 6 if calibration >= 18 else max(3, calibration // 2)
        run_bart("ecalib", "-m1", "-r", str(calibration), "-k", str(kernel), ksp, sens)
        maps = read_cfl(sens).reshape(H, W, C)
    maps = np.ascontiguousarray(np.moveaxis(maps, -1, 0)).astype(np.complex64)
    if not np.abs(maps).max() > 1e-6:
        return lowres_maps(coil_kspace, calibration, square)
    return maps


def lowres_maps(coil_kspace: np.ndarray, calibration: int = CALIBRATION_LINES, square: bool = False) -> np.ndarray:
    """Low-resolution sensitivities: the coil images of the Hann-windowed ``calibration`` centre
    columns (``square``: the centre ``calibration`` x ``calibration`` square, a 2-D mask's
    calibration region) divided by their root-sum-of-squares (zero where that is below 1e-3 of
    its max)."""
    k = np.asarray(coil_kspace, dtype=np.complex64)
    window = _hann_centre(k.shape[-1], calibration)[None, :]
    if square:
        window = _hann_centre(k.shape[-2], calibration)[:, None] * window
    images = ifft2c_np(k * window[None])
    rss = np.sqrt((np.abs(images) ** 2).sum(0))
    keep = rss > 1e-3 * rss.max()
    return np.where(keep[None], images / np.where(keep, rss, 1)[None], 0).astype(np.complex64)


def _hann_centre(size: int, calibration: int) -> np.ndarray:
    """A Hann window over the ``calibration`` centre points of ``size`` (0 elsewhere)."""
    n = min(calibration, size)
    window = np.zeros(size, np.float32)
    start = (size - n + 1) // 2
    window[start:start + n] = np.hanning(n + 2)[1:-1]
    return window


def resolve_map_method(method: str, calibration: int) -> str:
    """``espirit`` or ``lowres``: what :func:`coil_maps` does for ``method`` and ``calibration``."""
    from .tv import bart_available

    if method not in COIL_MAP_METHODS:
        raise ValueError(f"unknown coil-map method {method!r}; choose from {COIL_MAP_METHODS}")
    if method == "auto":
        return "espirit" if calibration >= MIN_ESPIRIT_LINES and bart_available() else "lowres"
    return method


def coil_maps(coil_kspace: np.ndarray, method: str = "auto", calibration: int = CALIBRATION_LINES,
              square: bool = False) -> np.ndarray:
    """Sensitivity maps of one slice's coil k-space (``auto``: ESPIRiT when BART is installed and
    at least :data:`MIN_ESPIRIT_LINES` calibration lines are there, else low-resolution maps);
    ``square``: the calibration region is a 2-D mask's centre square of side ``calibration``."""
    if resolve_map_method(method, calibration) == "espirit":
        return espirit_maps(coil_kspace, calibration, square)
    return lowres_maps(coil_kspace, calibration, square)


def sense_forward(image: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``M F (S x)``: the coil k-space ``(coils, H, W)`` a complex image ``(H, W)`` gives; ``mask``
    a column mask ``(W,)`` or a 2-D pattern ``(H, W)`` (as everywhere below)."""
    return fft2c_np(maps * image[None]) * sampling_grid(mask, image.shape)[None]


def sense_adjoint(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The adjoint of :func:`sense_forward`: ``sum_c conj(S_c) F^H (M k_c)``, ``(H, W)``."""
    masked = kspace * sampling_grid(mask, kspace.shape[-2:])[None]
    return (np.conj(maps) * ifft2c_np(masked)).sum(0)


def sense_combine(coil_images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The coil-combined image ``sum(conj(S) c) / sum |S|^2`` (0 where no map covers)."""
    norm = (np.abs(maps) ** 2).sum(0)
    return np.where(norm > 1e-6, (np.conj(maps) * coil_images).sum(0) / np.maximum(norm, 1e-6), 0)


def tv_multicoil(coil_kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray, weight: float,
                 iterations: int) -> np.ndarray:
    """TV with the sensitivity ``maps`` by BART ``pics`` (the single-coil TV's regulariser,
    ``-R T:3:0:weight -i iterations -S``), a complex image ``(H, W)``."""
    from .tv import bart_available, read_cfl, run_bart, write_cfl

    if not bart_available():
        raise RuntimeError("the 'bart' command is not installed (Debian package 'bart')")
    k = np.asarray(coil_kspace, dtype=np.complex64) * sampling_grid(mask, coil_kspace.shape[-2:])[None]
    C, H, W = k.shape
    with tempfile.TemporaryDirectory(prefix="nascsmri-bart-") as tmp:
        ksp, sens, out = (os.path.join(tmp, n) for n in ("ksp", "sens", "out"))
        write_cfl(ksp, np.moveaxis(k, 0, -1).reshape(H, W, 1, C))
        write_cfl(sens, np.moveaxis(np.asarray(maps, np.complex64), 0, -1).reshape(H, W, 1, C))
        run_bart("pics", "-S", "-d0", "-R", f"T:3:0:{weight}", "-i", str(iterations), ksp, sens, out)
        return read_cfl(out).reshape(H, W).astype(np.complex64)


def simulated_sensitivities(shape: tuple[int, int], coils: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth complex sensitivities ``(coils, H, W)`` (a simple, documented model): Gaussians
    centred on a circle of radius 1.1 around the field of view (grid coordinates in [-1, 1],
    angle ``2 pi c / coils`` jittered by up to 0.2 rad, width 0.9), each with a smooth phase of
    up to pi (:func:`backend.transforms.smooth_field` on a 3x3 grid)."""
    from .transforms import smooth_field

    H, W = shape
    y, x = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    maps = []
    for c in range(coils):
        angle = 2 * np.pi * c / coils + rng.uniform(-0.2, 0.2)
        cy, cx = 1.1 * np.sin(angle), 1.1 * np.cos(angle)
        magnitude = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 0.45 ** 2 * 4))
        maps.append(magnitude * np.exp(1j * np.pi * smooth_field(shape, rng, 3)))
    return np.stack(maps).astype(np.complex64)


def simulate_coils(image: np.ndarray, coils: int, seed: int = 0) -> np.ndarray:
    """``image`` (``(H, W)``, real or complex) seen by ``coils`` coils with
    :func:`simulated_sensitivities` drawn from ``seed``: ``(coils, H, W)`` complex64."""
    maps = simulated_sensitivities(np.shape(image), coils, np.random.default_rng(seed))
    return (maps * np.asarray(image)[None]).astype(np.complex64)
