"""Zero-filled reconstruction and the k-space data-consistency (DC) layer (paper Eq. 7).

Single coil, ``U = M F`` with ``F`` the centred orthonormal FFT of :mod:`backend.fft` and ``M`` a
column mask. For a network output ``x`` and measured k-space ``k0`` (zero where not sampled)::

    k = F(x)
    noise-free (lambda = None):   k_out = (1 - m) * k + m * k0
    finite lambda:                k_out = (1 - m) * k + m * (k + lambda * k0) / (1 + lambda)
    x_out = F^-1(k_out)

The layer has no trainable parameters. It works in whatever intensity scale ``x`` and ``k0``
share: the models run in the normalised domain (``6 / max|zero-filled|``), so callers scale
``k0`` with the same factor (see :func:`backend.transforms.normalisation_scale`).
"""

from __future__ import annotations

import torch
from torch import nn

from .fft import channels_to_complex, complex_to_channels, fft2c, ifft2c


def _as_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return a real float mask broadcastable to a complex ``(B, H, W)`` tensor ``like``."""
    mask = mask.to(device=like.device, dtype=like.real.dtype)
    if mask.dim() == 1:  # (W,)
        mask = mask.view(1, 1, -1)
    elif mask.dim() == 2:  # (B, W)
        mask = mask.unsqueeze(1)
    return mask  # (B or 1, H, W): a 2-D pattern per slice


def apply_mask(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep the sampled columns of complex ``(B, H, W)`` k-space, zero the others."""
    return kspace * _as_mask(mask, kspace)


def zero_filled(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Complex zero-filled image ``F^-1(M k)`` of complex ``(B, H, W)`` k-space."""
    return ifft2c(apply_mask(kspace, mask))


def data_consistency(
    image: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, lam: float | None = None
) -> torch.Tensor:
    """Apply Eq. 7 to a complex image ``(B, H, W)``; returns a complex image of the same shape.

    ``k0`` is the measured (masked) k-space, ``mask`` a 0/1 column mask ``(W,)``, ``(B, W)`` or
    ``(B, H, W)``; ``lam=None`` is the noise-free limit (measured lines replaced exactly).
    """
    k = fft2c(image)
    m = _as_mask(mask, k)
    if lam is None:
        k_out = (1 - m) * k + m * k0
    else:
        k_out = (1 - m) * k + m * (k + lam * k0) / (1 + lam)
    return ifft2c(k_out)


class DataConsistency(nn.Module):
    """DC as a layer on 2-channel images ``(B, 2, H, W)``.

    Args:
        lam: ``None`` for the noise-free form (default, as DCCNN/the paper), else the finite
            weight of Eq. 7.
    """

    def __init__(self, lam: float | None = None):
        super().__init__()
        self.lam = lam

    def forward(self, image: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = data_consistency(channels_to_complex(image), k0, mask, self.lam)
        return complex_to_channels(out).to(image.dtype)

    def extra_repr(self) -> str:
        return "noise-free" if self.lam is None else f"lam={self.lam}"


# -- multi-coil (SENSE) ------------------------------------------------------------------------
#: Below this sum of squared sensitivities a pixel counts as outside every coil's reach.
COVERAGE_EPS = 1e-6


def coil_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A column mask ``(W,)`` or ``(B, W)`` as ``(B or 1, 1, 1, W)``, a 2-D pattern ``(B or 1,
    H, W)`` as ``(B or 1, 1, H, W)``, for coil k-space ``(B, C, H, W)``."""
    mask = mask.to(device=like.device, dtype=like.real.dtype)
    if mask.dim() == 3:
        return mask.unsqueeze(1)
    return mask.view(1, 1, 1, -1) if mask.dim() == 1 else mask.view(mask.shape[0], 1, 1, -1)


def coil_combine(coil_images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """``sum_c conj(S_c) c_c / sum_c |S_c|^2`` for ``(B, C, H, W)`` coil images and maps; 0 where
    no map reaches (the torch twin of :func:`backend.coils.sense_combine`)."""
    norm = (maps.abs() ** 2).sum(1)
    combined = (maps.conj() * coil_images).sum(1)
    return torch.where(norm > COVERAGE_EPS, combined / norm.clamp_min(COVERAGE_EPS), torch.zeros_like(combined))


def coil_adjoint(kspace: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """``S^H F^-1 k``: coil k-space ``(B, C, H, W)`` (already masked) to one complex image ``(B, H, W)``."""
    return (maps.conj() * ifft2c(kspace)).sum(1)


def sense_normal(image: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """``A^H A x`` for ``A = M F S`` (``(B, H, W)`` complex images)."""
    return coil_adjoint(coil_mask(mask, maps) * fft2c(maps * image[:, None]), maps)


def sense_cg_consistency(image: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor,
                         mu: float = 0.01, iterations: int = 20) -> torch.Tensor:
    """MoDL's data consistency with coils: ``argmin_x ||M F S x - k0||^2 + mu ||x - z||^2`` for the
    network output ``z = image``, by conjugate gradients on the correction ``d = x - z``::

        (A^H A + mu I) d = A^H (k0 - A z),    A = M F S

    started at ``d = 0`` (``iterations`` steps, per slice). With one coil and ``S = 1``,
    ``A^H A`` is the projection on the sampled lines and the solution is the single-coil
    :func:`data_consistency` with ``lambda = 1 / mu``; ``mu -> 0`` is the noise-free form. Pixels
    no coil reaches (``sum |S|^2 = 0``) keep ``z``."""
    rhs = coil_adjoint(k0 - coil_mask(mask, k0) * fft2c(maps * image[:, None]), maps)
    d = torch.zeros_like(image)
    r = rhs.clone()
    p = r.clone()
    rr = (r.abs() ** 2).sum((-2, -1))
    for _ in range(iterations):
        q = sense_normal(p, mask, maps) + mu * p
        alpha = rr / (p.conj() * q).real.sum((-2, -1)).clamp_min(1e-30)
        d = d + alpha.view(-1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1) * q
        rr_new = (r.abs() ** 2).sum((-2, -1))
        p = r + (rr_new / rr.clamp_min(1e-30)).view(-1, 1, 1) * p
        rr = rr_new
    return image + d
