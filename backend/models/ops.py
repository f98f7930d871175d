"""Candidate operations of the cell search spaces (paper section 3.2.2, Fig. 7).

One registry :data:`OPS` maps an operation name to a factory with the single signature
``factory(channels: int) -> nn.Module``; :data:`SPACES` lists, per search space, the ordered
operation names (``none`` always last). The search supernet and the discrete network
(:mod:`backend.models.nasn`) both build their operations from here.

Every operation maps ``(B, C, H, W) -> (B, C, H, W)`` for any ``H, W`` (odd or even): all
paddings are "same" paddings. Conventions of the authors' release: no BatchNorm, convolutions
without bias, ReLU first. Parameters at ``C`` channels:

=================  =======================================================  ===============
name               layers                                                   parameters
=================  =======================================================  ===============
sep_conv_3x3       2 x [ReLU, depthwise 3x3, pointwise 1x1]                 2 (9 C + C^2)
dil_2_conv_3x3     ReLU, depthwise 3x3 dilation 2 (padding 2), pointwise    9 C + C^2
dil_3_conv_3x3     ReLU, depthwise 3x3 dilation 3 (padding 3), pointwise    9 C + C^2
conv_9x1_1x9       ReLU, depthwise 9x1, depthwise 1x9, pointwise            18 C + C^2
skip_connect       identity                                                 0
none               zeros                                                    0
=================  =======================================================  ===============

What an operation must be for ``--execution fast`` to plan it (``backend/models/fast.py``):
``nn.Identity``, or a sequence of leaf modules that starts with ``nn.ReLU`` followed only by
``nn.Conv2d`` layers (optionally with ``nn.ReLU`` between them); the fused C kernel further
needs the chain to end in a depthwise convolution (stride 1, odd kernel, "same" padding, no
bias) then a 1x1 convolution. A module of any other operation (pooling, normalisation, ...)
runs on the reference path, with a warning; search and training accept every operation.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class DilConv(nn.Sequential):
    """ReLU -> depthwise 3x3 (dilation ``d``, padding ``d``) -> pointwise 1x1, no bias.

    Shape ``(B, C, H, W) -> (B, C, H, W)``; ``9 C + C^2`` parameters.
    """

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                      groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
        )


class SepConv(nn.Sequential):
    """``sep_conv_3x3``: the dilation-1 :class:`DilConv` block applied twice (DARTS convention).

    Shape ``(B, C, H, W) -> (B, C, H, W)``; ``2 (9 C + C^2)`` parameters (2,624 at C = 32).

    Why twice: the paper's text describes the block once, but with a single block no network
    of search space A (3 cells of 3 nodes, C = 32, 3 cascades) can exceed 114.7K parameters,
    below NasN_Knee's 142.3K in Table 1. With the DARTS convention, 4 ``sep_conv_3x3`` + 2
    parameter-free edges per cell gives 138.3K (A), and space B's 117.2K is met by
    2 ``sep_conv_3x3`` + ``dil_2_conv_3x3`` + ``conv_9x1_1x9`` + 2 skips (117.3K).
    """

    def __init__(self, channels: int):
        super().__init__(DilConv(channels, 1), DilConv(channels, 1))


class Conv9x1_1x9(nn.Sequential):
    """ReLU -> depthwise 9x1 (padding (4, 0)) -> depthwise 1x9 (padding (0, 4)) -> pointwise.

    Shape ``(B, C, H, W) -> (B, C, H, W)``; ``18 C + C^2`` parameters, no bias.
    """

    def __init__(self, channels: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (9, 1), padding=(4, 0), groups=channels, bias=False),
            nn.Conv2d(channels, channels, (1, 9), padding=(0, 4), groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
        )


class Zero(nn.Module):
    """``none``: the absent edge, returns zeros of the input's shape (keeps the graph)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


OpFactory = Callable[[int], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda channels: Zero(),
    "skip_connect": lambda channels: nn.Identity(),
    "sep_conv_3x3": SepConv,
    "dil_2_conv_3x3": lambda channels: DilConv(channels, 2),
    "dil_3_conv_3x3": lambda channels: DilConv(channels, 3),
    "conv_9x1_1x9": Conv9x1_1x9,
}
"""Operation name -> factory ``(channels) -> nn.Module`` keeping shape ``(B, C, H, W)``."""

SPACES: dict[str, tuple[str, ...]] = {
    "A": ("sep_conv_3x3", "dil_2_conv_3x3", "dil_3_conv_3x3", "skip_connect", "none"),
    "B": ("sep_conv_3x3", "dil_2_conv_3x3", "conv_9x1_1x9", "skip_connect", "none"),
    "extended": ("sep_conv_3x3", "dil_2_conv_3x3", "dil_3_conv_3x3", "conv_9x1_1x9",
                 "skip_connect", "none"),
}
"""Search space name -> ordered operation names (paper: A and B; ``extended`` = A + B, used
for the brain search). ``none`` is last in every space."""
