"""The DARTS supernet inside the paper's unrolled cascade.

Every edge of the cell is a :class:`MixedOp`: ``sum_k softmax(alpha)_k * op_k(x)`` over the
operations of the search space (paper Eq. 10-13). One alpha matrix ``(edges, ops)`` is shared
by every cell of every cascade (DARTS shares the normal cell's alphas); it is a registered
parameter (it follows ``.to()`` and the state dict) but is optimised separately
(:meth:`SuperNet.arch_parameters` vs :meth:`SuperNet.weight_parameters`).

Edge order: node ``i`` (0-based) reads inputs ``0 .. i + 1`` (0 = C(l-2), 1 = C(l-1), then the
earlier nodes), so there are ``sum_i (i + 2)`` edges; node ``i``'s edges start at
``i * (i + 3) / 2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..dc import DataConsistency
from ..models import OPS, SPACES, Genotype
from ..models.cascade import conv3x3
from ..models.nasn import ReLUConv1x1
from ..models.training_plan import run_op


def edge_offsets(nodes: int) -> list[int]:
    """Index of the first edge of every node."""
    return [i * (i + 3) // 2 for i in range(nodes)]


def num_edges(nodes: int) -> int:
    return sum(i + 2 for i in range(nodes))


class MixedOp(nn.Module):
    """All operations of a space on one edge, mixed by their softmax weights."""

    def __init__(self, space: str, channels: int):
        super().__init__()
        self.names = SPACES[space]
        self.ops = nn.ModuleList(OPS[name](channels) for name in self.names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # 'none' contributes exactly zero: skip its compute (its alpha still gets a gradient
        # through the softmax normalisation of the others). The operations share one ReLU of x
        # and their depthwise convolutions run through the training plan's DepthwiseConv.
        rectified: list[torch.Tensor] = []

        def relu(t: torch.Tensor) -> torch.Tensor:
            if not rectified:
                rectified.append(torch.relu(t))
            return rectified[0]

        return sum(w * run_op(op, x, relu) for name, w, op in zip(self.names, weights, self.ops) if name != "none")


class SearchCell(nn.Module):
    """The continuous cell: ``(C(l-2), C(l-1), softmax weights) -> (B, n*C, H, W)``."""

    def __init__(self, space: str, nodes: int, channels: int, in_prev_prev: int, in_prev: int):
        super().__init__()
        self.nodes = nodes
        self.preprocess0 = ReLUConv1x1(in_prev_prev, channels)
        self.preprocess1 = ReLUConv1x1(in_prev, channels)
        self.edges = nn.ModuleList(MixedOp(space, channels) for _ in range(num_edges(nodes)))
        self.out_channels = nodes * channels

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            states.append(sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
            offset += len(states) - 1
        return torch.cat(states[2:], dim=1)


class SearchModule(nn.Module):
    """Stem -> ``cells`` search cells -> head, with the residual (the searched Fig. 5 module)."""

    def __init__(self, space: str, nodes: int, channels: int, cells: int):
        super().__init__()
        self.stem = conv3x3(2, channels)
        prev_prev, prev = channels, channels
        self.cells = nn.ModuleList()
        for _ in range(cells):
            cell = SearchCell(space, nodes, channels, prev_prev, prev)
            self.cells.append(cell)
            prev_prev, prev = prev, cell.out_channels
        self.head = conv3x3(prev, 2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights)
        return x + self.head(s1)


class SuperNet(nn.Module):
    """``cascades`` x [search module -> DC] with one shared alpha matrix.

    ``forward(x (B,2,H,W), k0 complex (B,H,W), mask (W,) | (B,W)) -> (B,2,H,W)``, the same
    signature as every registry model, so validation and reconstruction code is shared.
    """

    def __init__(self, space: str = "A", nodes: int = 3, channels: int = 16, cells: int = 2,
                 cascades: int = 3, alpha_init: float = 1e-3):
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"unknown search space {space!r}; choose from {sorted(SPACES)}")
        self.space, self.nodes = space, nodes
        self.recon = nn.ModuleList(SearchModule(space, nodes, channels, cells) for _ in range(cascades))
        self.dc = DataConsistency()
        self.alphas = nn.Parameter(alpha_init * torch.randn(num_edges(nodes), len(SPACES[space])))

    def forward(self, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(self.alphas, dim=-1)
        for module in self.recon:
            x = self.dc(module(x, weights), k0, mask)
        return x

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alphas"]

    def op_weights(self) -> torch.Tensor:
        """Softmax of the alphas ``(edges, ops)``, detached, on the CPU."""
        return F.softmax(self.alphas.detach().float().cpu(), dim=-1)

    def genotype(self, max_skip: int | None = None) -> Genotype:
        return derive_genotype(self.op_weights(), self.space, self.nodes, max_skip)


def derive_genotype(weights: torch.Tensor, space: str, nodes: int, max_skip: int | None = None) -> Genotype:
    """DARTS derivation: per node the two strongest incoming edges (strength = best non-``none``
    weight), each with its strongest non-``none`` operation. Ties go to the earlier edge/op.

    ``max_skip`` (P-DARTS' rule, not the paper's): when more than ``max_skip`` chosen edges are
    ``skip_connect``, the weakest of them (by their skip weight) take their best operation other
    than skip and ``none`` instead. DARTS is known to collapse onto parameter-free skips; the
    cap keeps the cell a network (see the README for the collapse measured here).
    """
    names = SPACES[space]
    keep = [k for k, n in enumerate(names) if n != "none"]
    convs = [k for k in keep if names[k] != "skip_connect"]

    def best_op(row, allowed):
        return max(allowed, key=lambda k: (float(row[k]), -k))

    chosen = []  # (node, input, op index)
    for i, offset in enumerate(edge_offsets(nodes)):
        rows = weights[offset : offset + i + 2]
        strength = [float(rows[j, keep].max()) for j in range(i + 2)]
        for j in sorted(sorted(range(i + 2), key=lambda j: (-strength[j], j))[:2]):
            chosen.append((i, j, best_op(rows[j], keep)))
    if max_skip is not None:
        skips = [(float(weights[edge_offsets(nodes)[i] + j, op]), n)
                 for n, (i, j, op) in enumerate(chosen) if names[op] == "skip_connect"]
        for _, n in sorted(skips, reverse=True)[max_skip:]:
            i, j, _ = chosen[n]
            chosen[n] = (i, j, best_op(weights[edge_offsets(nodes)[i] + j], convs))
    result = [tuple((names[op], j) for i2, j, op in chosen if i2 == i) for i in range(nodes)]
    return Genotype(space, tuple(result))
