"""The realistic benchmark (issue #15): held-out real scans made to look like what users bring.

:func:`build_cases` turns the magnitude volumes of a held-out split (fastMRI-layout files of
``nascsmri data prepare``) into one fastMRI h5 per volume and *category*, each category a way
real data differs from the zero-phase training protocol. Every random choice is drawn from
``numpy.random.default_rng([CASE_SEED, category, volume, slice])``, independent of any training
seed; every file is read back through the same reader as ``nascsmri reconstruct``:

==============  ==============================================================================
category        what the file holds
==============  ==============================================================================
magnitude       the scan as prepared: zero phase (the paper's brain protocol)
raw_phase       fastMRI knee layout: smooth + linear phase, the object on a canvas of twice the
                rows (readout oversampling) with complex k-space noise at 30 dB; the raw k-space
                of the canvas and the magnitude reference of the central rows
contrast        a T2-like look: the foreground's intensities inverted (dark white matter, bright
                fluid) by a fixed curve, background kept dark
small_fov       the object shrunk to 40% of the grid on a zero canvas (a small part in a large
                field of view)
noisy           complex white k-space noise at 20 dB image-RMS / noise-RMS; the noisy fully
                sampled image is the reference (as a real scan's)
multicoil       8 emulated receive coils (smooth Gaussian sensitivities around the field of view,
                with phase), 35 dB noise per coil; the RSS image is the reference (fastMRI
                multi-coil layout; the reader combines coils by RSS, as for real multi-coil files)
multicoil_2     the same with 2 coils (a head or knee file of two channels); not one of the
                realistic benchmark's categories, only ``bench/multicoil.py --coils 2``
==============  ==============================================================================

:func:`evaluate` reconstructs every case with every method at each acceleration, with the
per-volume seeded masks of ``nascsmri reconstruct``, and returns per-slice PSNR and SSIM
(fastMRI's definitions, the volume's maximum as data range). :func:`paired` gives the mean
difference of two methods over the same slices with a 95% bootstrap interval.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np

from .fft import fft2c_np, ifft2c_np
from .coils import simulated_sensitivities
from .files import atomic_h5
from .transforms import smooth_field

CASE_SEED = 20261201
CATEGORIES = ("magnitude", "raw_phase", "contrast", "small_fov", "noisy", "multicoil")
EXTRA_CATEGORIES = ("multicoil_2",)
COILS = {"multicoil": 8, "multicoil_2": 2}  # emulated receive coils of the multi-coil categories


def _rng(category: str, volume: int, index: int) -> np.random.Generator:
    return np.random.default_rng([CASE_SEED, (CATEGORIES + EXTRA_CATEGORIES).index(category), volume, index])


def _noise(shape, rng, rms: float, snr_db: float) -> np.ndarray:
    sigma = rms / 10 ** (snr_db / 20) / np.sqrt(2)
    return sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def _rms(image: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.abs(image) ** 2)))


def t2_like(image: np.ndarray) -> np.ndarray:
    """A fixed contrast inversion of a T1 magnitude: foreground ``m`` (fraction of the 99.5th
    percentile) -> ``0.15 + 0.85 (1 - m)``, faded to the original below 5-15%."""
    level = np.percentile(image[image > 0], 99.5) if (image > 0).any() else 1.0
    m = np.clip(image / level, 0, 1)
    weight = np.clip((m - 0.05) / 0.10, 0, 1)
    return (level * (weight * (0.15 + 0.85 * (1 - m)) + (1 - weight) * m)).astype(np.float32)


def shrink_into(image: np.ndarray, fill: float) -> np.ndarray:
    """The image's object shrunk to ``fill`` of the grid, centred on a zero canvas of the same grid."""
    from .training.augment import place

    return np.abs(place(image.astype(np.complex64), image.shape, np.random.default_rng(0), fill))


def _case(category: str, images: np.ndarray, volume: int) -> dict[str, np.ndarray]:
    """The datasets of one case file from magnitude slices ``(n, H, W)``."""
    n, H, W = images.shape
    if category == "magnitude":
        return {"kspace": fft2c_np(images.astype(np.complex64)), "reconstruction_esc": images}
    if category == "contrast":
        out = np.stack([t2_like(im) for im in images])
        return {"kspace": fft2c_np(out.astype(np.complex64)), "reconstruction_esc": out}
    if category == "small_fov":
        out = np.stack([shrink_into(im, 0.4) for im in images]).astype(np.float32)
        return {"kspace": fft2c_np(out.astype(np.complex64)), "reconstruction_esc": out}
    if category == "noisy":
        noisy = []
        for i, im in enumerate(images):
            rng = _rng(category, volume, i)
            noisy.append(ifft2c_np(fft2c_np(im.astype(np.complex64)) + _noise(im.shape, rng, _rms(im), 20.0)))
        noisy = np.stack(noisy)
        return {"kspace": fft2c_np(noisy).astype(np.complex64), "reconstruction_esc": np.abs(noisy).astype(np.float32)}
    if category == "raw_phase":
        raws, refs = [], []
        for i, im in enumerate(images):
            rng = _rng(category, volume, i)
            a, b = rng.uniform(-2, 2, size=2)
            yy, xx = np.meshgrid(np.arange(H) / H, np.arange(W) / W, indexing="ij")
            phase = np.pi * smooth_field((H, W), rng) + 2 * np.pi * (a * yy + b * xx)
            canvas = np.zeros((2 * H, W), dtype=np.complex64)
            canvas[H // 2: H // 2 + H] = im * np.exp(1j * phase)
            k = fft2c_np(canvas) + _noise(canvas.shape, rng, _rms(canvas), 30.0)
            raws.append(k)
            refs.append(np.abs(ifft2c_np(k)[H // 2: H // 2 + H]))
        return {"kspace": np.stack(raws).astype(np.complex64), "reconstruction_esc": np.stack(refs).astype(np.float32)}
    if category in COILS:
        ks, rss = [], []
        maps = simulated_sensitivities((H, W), COILS[category], _rng(category, volume, 10**6))
        for i, im in enumerate(images):
            rng = _rng(category, volume, i)
            coil_images = maps * im[None]
            k = fft2c_np(coil_images) + _noise(coil_images.shape, rng, _rms(coil_images), 35.0)
            ks.append(k)
            rss.append(np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(0)))
        return {"kspace": np.stack(ks).astype(np.complex64), "reconstruction_rss": np.stack(rss).astype(np.float32)}
    raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES + EXTRA_CATEGORIES)}")


def build_cases(files: list[Path], out: str | os.PathLike, categories=CATEGORIES,
                max_slices: int | None = None) -> Iterator[tuple[str, Path]]:
    """Write ``out/<category>/<file name>`` for every held-out file and category (existing files
    are kept: the cases are a pure function of the inputs); yields ``(category, path)``."""
    out = Path(out)
    for v, f in enumerate(sorted(files)):
        with h5py.File(f, "r") as src:
            images = np.asarray(src["reconstruction_esc"][: max_slices], dtype=np.float32)
            attrs = dict(src.attrs)
        for category in categories:
            target = out / category / Path(f).name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                data = _case(category, images, v)
                with atomic_h5(target) as h:
                    for key, value in data.items():
                        h.create_dataset(key, data=value)
                    ref = data.get("reconstruction_esc", data.get("reconstruction_rss"))
                    h.attrs["max"] = float(ref.max())
                    h.attrs["benchmark_category"] = category
                    h.attrs["source_file"] = Path(f).name
                    for key in ("source", "licence"):
                        if key in attrs:
                            h.attrs[key] = attrs[key]
            yield category, target


def slice_metrics(reference: np.ndarray, prediction: np.ndarray) -> dict[str, list[float]]:
    """Per-slice PSNR and SSIM (fastMRI definitions, data range = the volume's maximum)."""
    from .metrics import psnr, ssim

    data_range = float(reference.max())
    return {"psnr": [psnr(r[None], p[None], data_range) for r, p in zip(reference, prediction)],
            "ssim": [ssim(r[None], p[None], data_range) for r, p in zip(reference, prediction)]}


def evaluate(path: Path, make: Callable[[float], tuple[object, object]], acceleration: float) -> dict[str, list[float]]:
    """Per-slice metrics of one case file; ``make(acceleration)`` gives ``(ReconConfig,
    reconstructor)``."""
    from .recon import reconstruct_volume
    from .progress import run

    config, reconstructor = make(acceleration)
    result = run(reconstruct_volume(path, config, reconstructor))
    return slice_metrics(result.reference, result.reconstruction)


def paired(a: list[float], b: list[float], resamples: int = 10000, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over paired slices with a 95% percentile-bootstrap interval."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": int(len(d)),
            "wins": int((d > 0).sum())}
