"""Hand-crafted baselines of paper Table 1: DCCNN, MoDL, RDN (model-driven) and U-net.

DCCNN, MoDL and RDN run in the same frame as NasN (:class:`UnrolledCascade`: module -> DC,
3 cascades, 32 channels); all their convolutions carry a bias, which reproduces the paper's
counts exactly. Counts below: parameters, and multiply-accumulates of the convolutions plus
bias adds for one 320 x 320 2-channel input (:func:`backend.models.counting.count_macs`).

======== ===================== ================ ========================= =============
model    ours: params          paper: params    ours: MACs                paper: FLOPs
======== ===================== ================ ========================= =============
DCCNN-3  170,022               170.0K           17.41 G (17.34 G w/o bias) 17.41G
DCCNN-11 613,926               613.9K           62.87 G                   62.87G
MoDL-3   56,674                56.7K            17.41 G                   17.41G
MoDL-11  204,642               204.3K (*)       62.87 G                   62.87G
RDN-3    86,790                86.79K           25.93 G                   26.03G
RDN-8    86,790                86.79K           68.55 G                   68.79G
U-net    3,348,536             3349K            12.17 G                   12.17G
======== ===================== ================ ========================= =============

(*) MoDL-11 is one DCCNN-11 module, 613.9K / 3 = 204.6K; the paper's 204.3K looks like a typo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cascade import ResidualModule, UnrolledCascade, conv3x3


# -- DCCNN / MoDL -----------------------------------------------------------------------------
class ResBlock(nn.Module):
    """Residual block (paper Fig. 3b): ``x + conv3x3(ReLU(conv3x3(x)))``, convs with bias.

    Shape ``(B, C, H, W) -> (B, C, H, W)``; ``2 (9 C^2 + C)`` parameters (18,496 at C = 32).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def dccnn_module(blocks: int, channels: int) -> ResidualModule:
    """DCCNN/MoDL module: 3x3 conv 2 -> C, ``blocks`` :class:`ResBlock` s, 3x3 conv C -> 2,
    residual learning. ``(B, 2, H, W) -> (B, 2, H, W)``; 56,674 parameters at 3 blocks, C = 32.
    """
    body = nn.Sequential(*(ResBlock(channels) for _ in range(blocks)))
    return ResidualModule(conv3x3(2, channels), body, conv3x3(channels, 2))


def dccnn(blocks: int, cascades: int, channels: int) -> UnrolledCascade:
    """DCCNN (Schlemper et al.): one :func:`dccnn_module` per cascade, each followed by DC."""
    return UnrolledCascade(lambda: dccnn_module(blocks, channels), cascades)


def modl(blocks: int, cascades: int, channels: int) -> UnrolledCascade:
    """MoDL (Aggarwal et al.), single coil: the DCCNN module with weights shared by all
    cascades -- parameters of one module, MACs of ``cascades`` modules."""
    return UnrolledCascade(lambda: dccnn_module(blocks, channels), cascades, share_weights=True)


# -- RDN --------------------------------------------------------------------------------------
RDN_DILATIONS = (1, 2, 4)
"""Dilation rates of the three convolutions of one recursive dilated block."""


class DilatedBlock(nn.Sequential):
    """Recursive dilated block: [3x3 conv (dilation d, padding d, bias) -> ReLU] for
    d in :data:`RDN_DILATIONS`. Shape ``(B, C, H, W) -> (B, C, H, W)``; ``3 (9 C^2 + C)``
    parameters (27,744 at C = 32)."""

    def __init__(self, channels: int):
        layers: list[nn.Module] = []
        for d in RDN_DILATIONS:
            layers += [conv3x3(channels, channels, dilation=d), nn.ReLU(inplace=False)]
        super().__init__(*layers)


class RecursiveDilatedBody(nn.Module):
    """One :class:`DilatedBlock` applied ``recursions`` times with shared weights and the
    modified shortcut of Sun et al.: ``h_t = block(h_{t-1}) + h_0``, ``h_0`` = stem features.
    Shape ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, recursions: int):
        super().__init__()
        self.block = DilatedBlock(channels)
        self.recursions = recursions

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        h = h0
        for _ in range(self.recursions):
            h = self.block(h) + h0
        return h


def rdn_module(blocks: int, channels: int) -> ResidualModule:
    """RDN module (paper Fig. 4): 3x3 conv 2 -> C + ReLU, ``blocks`` recursions of one shared
    :class:`DilatedBlock`, 3x3 conv C -> 2, residual learning. ``(B, 2, H, W) -> (B, 2, H, W)``.
    """
    stem = nn.Sequential(conv3x3(2, channels), nn.ReLU(inplace=False))
    return ResidualModule(stem, RecursiveDilatedBody(channels, blocks), conv3x3(channels, 2))


def rdn(blocks: int, cascades: int, channels: int) -> UnrolledCascade:
    """RDN (Sun et al., AAAI 2018, "Compressed sensing MRI using a recursive dilated network"):
    :func:`rdn_module` + DC per cascade; weights shared inside a module, not across cascades.

    Our reconstruction of the block design: Sun et al. put three dilated 3x3 convolutions
    (dilations 1, 2, 4) with ReLUs in a recursive block whose weights are shared across the
    recursions, add the first features to every recursion's output (their "modified
    shortcut"), and close with a 3x3 conv to 2 channels plus a global residual; DC follows.

    Counts: the parameters match Table 1 exactly: ``3 * (608 stem + 27,744 block + 578 head)
    = 86,790`` for any number of blocks. Conv MACs + bias adds give 25.93 G (RDN-3) and 68.55 G
    (RDN-8) against the paper's 26.03G and 68.79G (-0.37 %, -0.35 %). The difference is exactly
    32 additions per pixel for every ReLU layer (the stem ReLU and 3 per recursion): adding
    them gives ``3 * (1,218 + 3 * 27,840) * 320^2 = 26.03 G`` and ``68.79 G``, so the paper's
    counter also counted ReLU outputs of this network. We keep the conv-only convention.
    """
    return UnrolledCascade(lambda: rdn_module(blocks, channels), cascades)


# -- U-net ------------------------------------------------------------------------------------
class ConvBlock(nn.Sequential):
    """U-net block: 2 x [3x3 conv (bias) -> InstanceNorm (no affine) -> ReLU]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            conv3x3(in_channels, out_channels), nn.InstanceNorm2d(out_channels), nn.ReLU(),
            conv3x3(out_channels, out_channels), nn.InstanceNorm2d(out_channels), nn.ReLU(),
        )


class UNet(nn.Module):
    """Data-driven U-net baseline, the fastMRI (Zbontar et al. 2018) baseline model of the
    paper: ``pools`` max-pool down-samplings with channels doubled from ``channels``, bilinear
    up-sampling with skip concatenation, three 1x1 convs at the end, no DC, no residual.

    Like the fastMRI baseline's data pipeline (``normalize_instance``), the network works on a
    standardised image: the input is shifted by its per-channel mean and divided by its
    standard deviation, the output is mapped back with the same numbers. Without this the
    instance norms discard the absolute intensity and the network has to guess it: trained on
    128x128 crops and tested on 224x224 slices, our first U-net (without it) came out 21 %
    too bright on the foreground, and 27 % too dark on 128x128 crops of the same slices
    (bench/results/table_cpu/STATUS.md). With it the network is scale-equivariant.

    With ``channels=32, pools=4`` it has exactly 3,348,536 parameters (paper: 3349K) and
    12,171,468,800 conv MACs + bias adds at 320 x 320 (paper: 12.17G).

    ``forward(x: (B, 2, H, W), k0=None, mask=None) -> (B, 2, H, W)``; ``k0`` and ``mask`` are
    accepted for a uniform model interface and ignored. Any ``H, W``: the input is zero-padded
    (centred) to a multiple of ``2**pools`` (at least ``2 * 2**pools``, so the instance norm at
    the bottom sees more than one pixel) and the output cropped back.
    """

    def __init__(self, channels: int, pools: int = 4):
        super().__init__()
        self.pools = pools
        ch = channels
        self.down = nn.ModuleList([ConvBlock(2, ch)])
        for _ in range(pools - 1):
            self.down.append(ConvBlock(ch, 2 * ch))
            ch *= 2
        self.bottom = ConvBlock(ch, ch)
        self.up = nn.ModuleList()
        for _ in range(pools - 1):
            self.up.append(ConvBlock(2 * ch, ch // 2))
            ch //= 2
        self.up.append(ConvBlock(2 * ch, ch))
        self.out = nn.Sequential(
            nn.Conv2d(ch, ch // 2, 1), nn.Conv2d(ch // 2, 2, 1), nn.Conv2d(2, 2, 1)
        )

    def forward(self, x: torch.Tensor, k0: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, maps: torch.Tensor | None = None) -> torch.Tensor:
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-6)
        x = (x - mean) / std
        h, w = x.shape[-2:]
        unit = 2 ** self.pools
        ph = max(2 * unit, -(-h // unit) * unit) - h
        pw = max(2 * unit, -(-w // unit) * unit) - w
        top, left = ph // 2, pw // 2
        out = F.pad(x, (left, pw - left, top, ph - top))
        skips = []
        for block in self.down:
            out = block(out)
            skips.append(out)
            out = F.max_pool2d(out, 2)
        out = self.bottom(out)
        for block in self.up:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False)
            out = block(torch.cat([out, skips.pop()], dim=1))
        return self.out(out)[..., top:top + h, left:left + w] * std + mean
