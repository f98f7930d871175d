"""Image-space crops and padding, the 6/max normalisation, and magnitude -> k-space.

All crops and pads happen in image space; k-space is recomputed from the cropped image with
:func:`backend.fft.fft2c_np` (never by cutting k-space), as the paper's knee pipeline does.
"""

from __future__ import annotations

import numpy as np
import torch

from .dc import apply_mask, coil_combine, coil_mask, zero_filled
from .fft import complex_to_channels, fft2c_np, ifft2c, ifft2c_np

#: Magnitude peak of the normalised zero-filled image (paper 4.1: images scaled to [-6, 6]).
NORMALISED_PEAK = 6.0


def center_crop(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre crop the last two axes to ``shape`` (fastMRI placement: start ``(H - h) // 2``)."""
    h, w = shape
    H, W = image.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"cannot crop {H}x{W} to {h}x{w}: the image is smaller than the crop")
    top, left = (H - h) // 2, (W - w) // 2
    return image[..., top : top + h, left : left + w]


def center_pad(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-pad the last two axes symmetrically to ``shape`` (inverse placement of the crop)."""
    h, w = shape
    H, W = image.shape[-2:]
    if h < H or w < W:
        raise ValueError(f"cannot pad {H}x{W} to {h}x{w}")
    top, left = (h - H) // 2, (w - W) // 2
    out = np.zeros(image.shape[:-2] + (h, w), dtype=image.dtype)
    out[..., top : top + H, left : left + W] = image
    return out


def pad_or_crop(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per axis: centre-pad when smaller than ``shape``, centre-crop when larger."""
    H, W = image.shape[-2:]
    h, w = shape
    image = center_pad(image, (max(H, h), max(W, w)))
    return center_crop(image, shape)


def crop_kspace_via_image(kspace: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The paper's knee pipeline: IFFT -> centre crop the complex image -> FFT.

    ``kspace`` is complex ``(..., H, W)`` with ``H, W >= shape``; returns ``(..., *shape)``.
    """
    return fft2c_np(center_crop(ifft2c_np(kspace), shape)).astype(np.complex64)


def magnitude_to_kspace(image: np.ndarray) -> np.ndarray:
    """The paper's brain protocol: a real magnitude image taken as zero phase, then FFT."""
    return fft2c_np(np.asarray(image, dtype=np.float32).astype(np.complex64)).astype(np.complex64)


def normalisation_scale(zero_filled: torch.Tensor) -> torch.Tensor:
    """Per-slice factor ``6 / max|zero-filled|`` for complex ``(B, H, W)``; shape ``(B,)``.

    Slices whose zero-filled image is all zero get the factor 1 (nothing to scale).
    """
    peak = zero_filled.abs().flatten(1).amax(dim=1)
    return torch.where(peak > 0, NORMALISED_PEAK / peak.clamp_min(1e-30), torch.ones_like(peak))


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, n: int = 4) -> np.ndarray:
    """A random smooth field on ``shape``: an ``n x n`` standard normal grid upsampled by cubic
    splines, scaled to a maximum magnitude of 1 (smooth phases and sensitivities of the
    augmentation, the benchmark and the coil simulation)."""
    from scipy.ndimage import zoom

    field = zoom(rng.standard_normal((n, n)), (shape[0] / n, shape[1] / n), order=3, mode="nearest")
    field = field[: shape[0], : shape[1]]
    return field / (np.abs(field).max() + 1e-12)


def network_inputs(kspace: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a network sees for complex k-space ``(B, H, W)`` and a column mask ``(W,)``.

    Returns the zero-filled image as 2 channels ``(B, 2, H, W)`` and the measured k-space
    ``(B, H, W)``, both multiplied by the per-slice scale ``6 / max|zero-filled|``, and that
    scale ``(B, 1, 1)`` (divide the network output by it to get back to the input's intensities).
    """
    zf = zero_filled(kspace, mask)
    scale = normalisation_scale(zf).view(-1, 1, 1)
    return complex_to_channels(zf * scale), apply_mask(kspace, mask) * scale, scale


def multicoil_network_inputs(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`network_inputs` for coil k-space ``(B, C, H, W)`` (a mask ``(W,)``, ``(B, W)`` or a
    2-D ``(B or 1, H, W)``, :func:`backend.dc.coil_mask`) with sensitivities ``maps``
    ``(B, C, H, W)``: the zero-filled image is the coil-combined one
    (:func:`backend.dc.coil_combine`), the measured k-space stays per coil."""
    masked = kspace * coil_mask(mask, kspace)
    zf = coil_combine(ifft2c(masked), maps)
    scale = normalisation_scale(zf).view(-1, 1, 1)
    return complex_to_channels(zf * scale), masked * scale[:, None], scale
