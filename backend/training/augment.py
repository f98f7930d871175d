"""Training-sample augmentation: make real magnitude scans look like what users bring (issue #15).

Every draw comes from the ``numpy.random.Generator`` handed in, which the batch code seeds from
``(seed, epoch, step, position)``: a sample depends on nothing else, so resumed runs see the
same data. All geometry happens in image space and k-space is recomputed from the final
image (never cut in k-space). Steps, in order (each switch is a field of :class:`Augmentation`,
filled from :class:`backend.config.TrainConfig`'s ``aug_*`` fields):

1. **orientation** (``flips``): a random one of the 8 flips/90-degree rotations;
2. **intensity** (``gamma``, ``contrast_prob``): magnitudes scaled to their 99.5th percentile,
   raised to a random power; with ``contrast_prob`` the foreground is passed through a random
   non-monotone piecewise-linear curve (bright CSF and dark white matter, PD-like flat looks:
   the T1 sources then stand in for other contrasts); the background stays zero;
3. **field of view** (``fov_prob``, ``fov_fill``): the object (its bounding box above 10% of
   the percentile) is resized (linear interpolation, antialiased when shrinking, enlarged by
   at most :data:`MAX_ZOOM`) so that it fills a random fraction of the grid, and placed at a random position on a zero
   canvas of the grid; otherwise a random window of the image is taken (as before);
4. **phase** (``phase_prob``, ``linear_phase_cycles``): a random smooth phase (4x4 Gaussian field,
   up to +-pi) times a random linear phase (up to ``linear_phase_cycles`` cycles across the grid
   per axis, i.e. a k-space shift of that many lines);
5. **raw path** (``raw_prob``): as fastMRI's knee data: the object is enlarged along the readout
   (rows) so that it may run past the grid's top and bottom, given phase and noise on a canvas
   twice the grid's height (the readout-oversampled acquisition), then the grid's rows are
   cropped in image space;
6. **noise** (``noise_prob``, ``noise_snr_db``): complex white Gaussian noise in k-space, the
   ratio of the image's RMS to the noise's drawn uniformly in dB; the noisy image is the
   target too, as a fully sampled scan's noise is part of fastMRI's reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fft import fft2c_np, ifft2c_np


#: Largest enlargement of a source slice (per axis) by the field-of-view and raw-path steps.
MAX_ZOOM = 1.3


@dataclass(frozen=True)
class Augmentation:
    """Switches of the augmentation pipeline (see the module docstring); ``off()`` = none."""

    flips: bool = True
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast_prob: float = 0.3
    fov_prob: float = 0.5
    fov_fill: tuple[float, float] = (0.3, 1.0)
    phase_prob: float = 0.5
    linear_phase_cycles: float = 3.0
    raw_prob: float = 0.2
    noise_prob: float = 0.5
    noise_snr_db: tuple[float, float] = (15.0, 45.0)

    @classmethod
    def off(cls, phase_prob: float = 0.0) -> "Augmentation":
        """Only the smooth phase of the first round's pipeline (random window, no other change)."""
        return cls(flips=False, gamma=(1.0, 1.0), contrast_prob=0.0, fov_prob=0.0, phase_prob=phase_prob,
                   linear_phase_cycles=0.0, raw_prob=0.0, noise_prob=0.0)


def smooth_phase(shape: tuple[int, int], rng: np.random.Generator, amplitude: float = np.pi) -> np.ndarray:
    """A random smooth phase map: ``amplitude`` times :func:`backend.transforms.smooth_field`."""
    from ..transforms import smooth_field

    return (amplitude * smooth_field(shape, rng)).astype(np.float32)


def linear_phase(shape: tuple[int, int], rng: np.random.Generator, cycles: float) -> np.ndarray:
    """``2 pi (a y / H + b x / W)`` with ``|a|, |b| <= cycles`` drawn uniformly."""
    a, b = rng.uniform(-cycles, cycles, size=2)
    y = np.arange(shape[0])[:, None] / shape[0]
    x = np.arange(shape[1])[None, :] / shape[1]
    return (2 * np.pi * (a * y + b * x)).astype(np.float32)


def orient(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 symmetries of the square (rotations by 90 degrees, with or without a flip)."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = np.rot90(image, k)
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _foreground_level(mag: np.ndarray) -> float:
    nonzero = mag[mag > 0]
    return float(np.percentile(nonzero, 99.5)) if nonzero.size else 0.0


def remap_intensity(image: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float],
                    contrast_prob: float) -> np.ndarray:
    """Gamma and (with ``contrast_prob``) a random contrast curve on the magnitude; phase kept."""
    mag = np.abs(image)
    level = _foreground_level(mag)
    if level <= 0:
        return image
    m = np.clip(mag / level, 0, 1.5)
    g = float(np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1])))) if gamma[1] > gamma[0] else gamma[0]
    out = m ** g
    if contrast_prob > 0 and rng.random() < contrast_prob:
        knots = np.linspace(0, 1.5, 6)
        values = np.concatenate([[0.0], rng.uniform(0.05, 1.0, size=5)])
        curve = np.interp(np.clip(out, 0, 1.5), knots, values)
        # fade in above 5-15% of the level, so that the background stays dark and edges soft
        weight = np.clip((m - 0.05) / 0.10, 0, 1)
        out = weight * curve + (1 - weight) * out
    phase = np.exp(1j * np.angle(image)) if np.iscomplexobj(image) else 1.0
    return (out * level * phase).astype(np.complex64)


def _bbox(mag: np.ndarray) -> tuple[int, int, int, int]:
    level = 0.1 * _foreground_level(mag)
    rows, cols = np.flatnonzero((mag > level).any(1)), np.flatnonzero((mag > level).any(0))
    if rows.size == 0:
        return 0, mag.shape[0], 0, mag.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _resize(image: np.ndarray, factors: tuple[float, float]) -> np.ndarray:
    """Linear resize of a complex image by ``factors`` (rows, cols), Gaussian-antialiased when
    shrinking."""
    from scipy.ndimage import gaussian_filter, zoom

    parts = []
    for part in (image.real, image.imag):
        sigma = [max(0.0, (1 / f - 1) / 2) for f in factors]
        if max(sigma) > 0:
            part = gaussian_filter(part, sigma)
        parts.append(zoom(part, factors, order=1, grid_mode=True, mode="grid-constant"))
    return (parts[0] + 1j * parts[1]).astype(np.complex64)


def place(image: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, fill: float,
          stretch_rows: float = 1.0, centre_rows: bool = False) -> np.ndarray:
    """Resize the object so that it spans ``fill`` of the grid along its tighter axis (rows
    further scaled by ``stretch_rows``) and put it at a random position of a zero ``shape``
    canvas (vertically centred with ``centre_rows``); an object larger than the canvas is cut
    at a random window (the centred one along the rows with ``centre_rows``)."""
    r0, r1, c0, c1 = _bbox(np.abs(image))
    obj = image[r0:r1, c0:c1]
    scale = fill * min(shape[0] / obj.shape[0], shape[1] / obj.shape[1])
    # enlarging a scan beyond MAX_ZOOM would give it less detail than real scans of that grid have
    factors = (min(scale * stretch_rows, MAX_ZOOM), min(scale, MAX_ZOOM))
    obj = _resize(obj, factors)
    canvas = np.zeros(shape, dtype=np.complex64)
    h, w = obj.shape
    # offsets: inside the canvas when the object fits, else a random window of the object
    if centre_rows:
        top = (shape[0] - h) // 2
    else:
        top = int(rng.integers(0, shape[0] - h + 1)) if h <= shape[0] else -int(rng.integers(0, h - shape[0] + 1))
    left = int(rng.integers(0, shape[1] - w + 1)) if w <= shape[1] else -int(rng.integers(0, w - shape[1] + 1))
    src = obj[max(0, -top): max(0, -top) + min(h, shape[0]), max(0, -left): max(0, -left) + min(w, shape[1])]
    canvas[max(0, top): max(0, top) + src.shape[0], max(0, left): max(0, left) + src.shape[1]] = src
    return canvas


def random_window(image: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random ``shape`` window of the image (zero-padded first where the image is smaller)."""
    H, W = image.shape
    if H < shape[0] or W < shape[1]:
        padded = np.zeros((max(H, shape[0]), max(W, shape[1])), dtype=image.dtype)
        padded[(padded.shape[0] - H) // 2:(padded.shape[0] - H) // 2 + H,
               (padded.shape[1] - W) // 2:(padded.shape[1] - W) // 2 + W] = image
        image, (H, W) = padded, padded.shape
    top = int(rng.integers(0, H - shape[0] + 1))
    left = int(rng.integers(0, W - shape[1] + 1))
    return image[top: top + shape[0], left: left + shape[1]]


def add_kspace_noise(image: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float]) -> np.ndarray:
    """Complex white Gaussian noise added in k-space at a random image-RMS / noise-RMS ratio."""
    kspace = fft2c_np(image)
    rms = float(np.sqrt(np.mean(np.abs(image) ** 2)))
    if rms == 0:
        return image
    snr = rng.uniform(*snr_db)
    sigma = rms / 10 ** (snr / 20) / np.sqrt(2)
    noise = sigma * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    return ifft2c_np(kspace + noise).astype(np.complex64)


def augment(image: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """One training image on the ``shape`` grid from a source slice (complex or real)."""
    image = np.asarray(image, dtype=np.complex64)
    if aug.flips:
        image = orient(image, rng)
    if aug.gamma != (1.0, 1.0) or aug.contrast_prob > 0:
        image = remap_intensity(image, rng, aug.gamma, aug.contrast_prob)
    raw = aug.raw_prob > 0 and rng.random() < aug.raw_prob
    if raw:  # readout-oversampled canvas: twice the rows; the object, centred, may overflow the grid's rows
        image = place(image, (2 * shape[0], shape[1]), rng, rng.uniform(0.8, 1.0),
                      stretch_rows=rng.uniform(1.0, 1.6), centre_rows=True)
    elif aug.fov_prob > 0 and rng.random() < aug.fov_prob:
        image = place(image, shape, rng, rng.uniform(*aug.fov_fill))
    else:
        image = random_window(image, shape, rng)
    if raw or (aug.phase_prob > 0 and rng.random() < aug.phase_prob):
        phase = smooth_phase(image.shape, rng)
        if aug.linear_phase_cycles > 0:
            phase = phase + linear_phase(image.shape, rng, aug.linear_phase_cycles)
        image = image * np.exp(1j * phase)
    if raw or (aug.noise_prob > 0 and rng.random() < aug.noise_prob):
        image = add_kspace_noise(image, rng, aug.noise_snr_db)
    if raw:  # remove the readout oversampling: the grid's rows, cropped in image space
        top = (image.shape[0] - shape[0]) // 2
        image = image[top: top + shape[0]]
    return np.ascontiguousarray(image, dtype=np.complex64)
