"""Centred, orthonormal 2-D Fourier transforms for numpy and torch.

The one shift convention of the project
---------------------------------------
k-space arrays are *centred*: the zero frequency sits at index ``(H // 2, W // 2)``, as in the
fastMRI files. Images are in natural order (the object in the middle of the array). Therefore::

    kspace = fftshift(fft2(ifftshift(image), norm="ortho"))
    image  = fftshift(ifft2(ifftshift(kspace), norm="ortho"))

over the last two axes. Masks (:mod:`backend.masks`) index the columns of *centred* k-space.
The transform is unitary, so ``||image|| == ||kspace||`` and the noise-free data-consistency
step is an orthogonal projection.
"""

from __future__ import annotations

import numpy as np
import torch

_AXES = (-2, -1)


def fft2c_np(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT of a complex numpy array ``(..., H, W)``."""
    shifted = np.fft.ifftshift(image, axes=_AXES)
    return np.fft.fftshift(np.fft.fft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)


def ifft2c_np(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D FFT of a complex numpy array ``(..., H, W)``."""
    shifted = np.fft.ifftshift(kspace, axes=_AXES)
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT of a complex tensor ``(..., H, W)``."""
    shifted = torch.fft.ifftshift(image, dim=_AXES)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_AXES, norm="ortho"), dim=_AXES)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2-D FFT of a complex tensor ``(..., H, W)``."""
    shifted = torch.fft.ifftshift(kspace, dim=_AXES)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_AXES, norm="ortho"), dim=_AXES)


def complex_to_channels(image: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, H, W)`` -> real ``(B, 2, H, W)`` (real, imaginary)."""
    return torch.stack((image.real, image.imag), dim=1)


def channels_to_complex(image: torch.Tensor) -> torch.Tensor:
    """Real ``(B, 2, H, W)`` -> complex ``(B, H, W)``."""
    if image.shape[1] != 2:
        raise ValueError(f"expected 2 channels (real, imaginary), got shape {tuple(image.shape)}")
    return torch.complex(image[:, 0].float(), image[:, 1].float())
