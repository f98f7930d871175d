"""The discrete searched network NasN (paper Eq. 8-14, Fig. 5), compiled from a genotype.

Reconstruction module: 3x3 conv 2 -> C (stem, with bias) feeding both inputs of the first cell,
``cells`` stacked :class:`Cell` s, 3x3 conv n*C -> 2 (head, with bias), residual learning.
Stem and head are the "common 3x3 convolutional layers" of the baselines and carry a bias as
they do (this is what makes DCCNN-3 exactly 170,022 parameters); everything inside the cells
follows the authors' release: no bias, no normalisation, ReLU first.
"""

from __future__ import annotations

import torch
from torch import nn

from .cascade import ResidualModule, UnrolledCascade, conv3x3
from .genotype import Genotype
from .ops import OPS


class ReLUConv1x1(nn.Sequential):
    """Cell input preprocessing: ReLU -> 1x1 conv ``in_channels -> channels``, no bias."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(in_channels, channels, 1, bias=False))


class Cell(nn.Module):
    """One discrete cell ``C(l) = Cell(C(l-1), C(l-2))`` (Eq. 8-9, 14).

    Args:
        genotype: the ``n`` nodes, each two ``(op, input index)`` edges.
        channels: ``C``, the width of every node.
        in_prev_prev: channels of ``C(l-2)``; ``in_prev``: channels of ``C(l-1)``.

    ``forward(s0 = C(l-2): (B, in_prev_prev, H, W), s1 = C(l-1): (B, in_prev, H, W))``
    returns ``(B, n*C, H, W)``, the concatenation of all nodes.
    """

    def __init__(self, genotype: Genotype, channels: int, in_prev_prev: int, in_prev: int):
        super().__init__()
        self.preprocess0 = ReLUConv1x1(in_prev_prev, channels)
        self.preprocess1 = ReLUConv1x1(in_prev, channels)
        self.inputs = [index for _, _, index in genotype.edges()]
        self.ops = nn.ModuleList(OPS[op](channels) for _, op, _ in genotype.edges())
        self.out_channels = genotype.num_nodes * channels

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(0, len(self.ops), 2):
            states.append(self.ops[k](states[self.inputs[k]])
                          + self.ops[k + 1](states[self.inputs[k + 1]]))
        return torch.cat(states[2:], dim=1)


class CellStack(nn.Module):
    """``cells`` stacked cells: ``(B, C, H, W)`` stem features -> ``(B, n*C, H, W)``.

    The stem output is both ``C(l-2)`` and ``C(l-1)`` of the first cell; the second cell reads
    the stem output (C channels) and the first cell (n*C); later cells read n*C and n*C.
    """

    def __init__(self, genotype: Genotype, channels: int, cells: int):
        super().__init__()
        prev_prev, prev = channels, channels
        self.cells = nn.ModuleList()
        for _ in range(cells):
            cell = Cell(genotype, channels, prev_prev, prev)
            self.cells.append(cell)
            prev_prev, prev = prev, cell.out_channels
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = x
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return s1


def nasn_module(genotype: Genotype, channels: int, cells: int) -> ResidualModule:
    """One NasN reconstruction module ``(B, 2, H, W) -> (B, 2, H, W)`` (paper Fig. 5)."""
    body = CellStack(genotype, channels, cells)
    return ResidualModule(conv3x3(2, channels), body, conv3x3(body.out_channels, 2))


def nasn(genotype: Genotype, cascades: int, channels: int, cells: int) -> UnrolledCascade:
    """NasN: ``cascades`` x [:func:`nasn_module` -> DC], no weight sharing."""
    return UnrolledCascade(lambda: nasn_module(genotype, channels, cells), cascades)
