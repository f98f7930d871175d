"""The shared frame of the model-driven networks (paper Fig. 2, 3, 5).

* :class:`ResidualModule` -- one reconstruction module: ``x + head(body(stem(x)))``.
* :class:`UnrolledCascade` -- ``cascades`` x [reconstruction module -> data consistency].

DCCNN, MoDL, RDN and NasN differ only in the ``body`` of the module and in whether the
cascades share one module (MoDL). The DC layer (:class:`backend.dc.DataConsistency`) has no
parameters and no multiply-accumulates in the paper's FLOPs count.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..dc import DataConsistency


def conv3x3(in_channels: int, out_channels: int, *, bias: bool = True,
            dilation: int = 1) -> nn.Conv2d:
    """Plain 3x3 "same" convolution (padding = dilation) keeping ``H, W``."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation,
                     bias=bias)


class ResidualModule(nn.Module):
    """Reconstruction module with residual learning: ``(B, 2, H, W) -> (B, 2, H, W)``.

    ``stem`` maps the 2-channel image to features, ``body`` transforms the features, ``head``
    maps them back to 2 channels; the module input is added to the result.
    """

    def __init__(self, stem: nn.Module, body: nn.Module, head: nn.Module):
        super().__init__()
        self.stem = stem
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.head(self.body(self.stem(x)))


class UnrolledCascade(nn.Module):
    """``cascades`` x [reconstruction module -> DC] (paper Fig. 2).

    Args:
        make_module: builds one reconstruction module ``(B, 2, H, W) -> (B, 2, H, W)``.
        cascades: number of module + DC stages (paper: 3).
        share_weights: one module reused by every stage (MoDL) instead of one per stage;
            its parameters are stored (and counted) once.
        lam: DC weight, ``None`` = noise-free (measured lines replaced exactly).
    """

    def __init__(self, make_module: Callable[[], nn.Module], cascades: int,
                 share_weights: bool = False, lam: float | None = None):
        super().__init__()
        self.cascades = cascades
        self.share_weights = share_weights
        self.recon = nn.ModuleList(make_module() for _ in range(1 if share_weights else cascades))
        self.dc = DataConsistency(lam)

    def forward(self, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct.

        Args:
            x: normalised zero-filled image ``(B, 2, H, W)`` (real, imaginary).
            k0: measured centred k-space, complex ``(B, H, W)``, same scale as ``x``; with
                ``maps``, the coil k-space ``(B, C, H, W)``.
            mask: 0/1 column mask ``(W,)`` or ``(B, W)``.
            maps: coil sensitivities ``(B, C, H, W)``: the DC becomes the SENSE solve of
                :mod:`backend.models.multicoil` (None: single coil).

        Returns:
            ``(B, 2, H, W)``; single coil: its k-space equals ``k0`` on the sampled columns.
        """
        if maps is not None:
            from .multicoil import run_multicoil

            return run_multicoil(self, x, k0, mask, maps)
        for stage in range(self.cascades):
            x = self.dc(self.recon[stage % len(self.recon)](x), k0, mask)
        return x
