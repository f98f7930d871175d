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

from ..config import SEARCH_METHODS
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


#: Search methods (``nascsmri search --method``); how each mixes the operations of an edge:
#: DARTS and beta-DARTS by ``softmax(alpha)``, DrNAS by a Dirichlet sample with concentration
#: ``softplus(alpha)`` (its mean outside training), PC-DARTS by ``softmax(alpha)`` over a
#: 1/K share of the channels plus edge normalisation (``softmax(beta)`` over a node's inputs).
METHODS = SEARCH_METHODS


def dirichlet_concentration(alphas: torch.Tensor) -> torch.Tensor:
    """DrNAS' Dirichlet concentration of each edge's operations: ``softplus(alpha) + 1e-4``."""
    return F.softplus(alphas) + 1e-4


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups (ShuffleNet), so that every PC-DARTS edge's next
    reader sees a different share of channels through the operations."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedOp(nn.Module):
    """All operations of a space on one edge, mixed by their weights.

    With ``partial = K > 1`` (PC-DARTS) only the first ``C / K`` channels go through the
    operations (built at that width), the others pass unchanged, and the result is channel-
    shuffled in ``K`` groups: a fixed, deterministic selection whose shuffle moves a different
    share of channels into the operations at the next edge.
    """

    def __init__(self, space: str, channels: int, partial: int = 1):
        super().__init__()
        if partial < 1 or channels % partial:
            raise ValueError(f"partial channels 1/{partial} do not divide {channels} channels")
        self.names = SPACES[space]
        self.partial = partial
        self.ops = nn.ModuleList(OPS[name](channels // partial) for name in self.names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.partial > 1:
            k = x.shape[1] // self.partial
            mixed = self._mix(x[:, :k], weights)
            return channel_shuffle(torch.cat([mixed, x[:, k:]], dim=1), self.partial)
        return self._mix(x, weights)

    def _mix(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
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

    def __init__(self, space: str, nodes: int, channels: int, in_prev_prev: int, in_prev: int, partial: int = 1):
        super().__init__()
        self.nodes = nodes
        self.preprocess0 = ReLUConv1x1(in_prev_prev, channels)
        self.preprocess1 = ReLUConv1x1(in_prev, channels)
        self.edges = nn.ModuleList(MixedOp(space, channels, partial) for _ in range(num_edges(nodes)))
        self.out_channels = nodes * channels

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_weights`` (edges,): PC-DARTS' normalised weight of each edge into its node."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            states.append(sum((1 if edge_weights is None else edge_weights[offset + j])
                              * self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
            offset += len(states) - 1
        return torch.cat(states[2:], dim=1)


class SearchModule(nn.Module):
    """Stem -> ``cells`` search cells -> head, with the residual (the searched Fig. 5 module)."""

    def __init__(self, space: str, nodes: int, channels: int, cells: int, partial: int = 1):
        super().__init__()
        self.stem = conv3x3(2, channels)
        prev_prev, prev = channels, channels
        self.cells = nn.ModuleList()
        for _ in range(cells):
            cell = SearchCell(space, nodes, channels, prev_prev, prev, partial)
            self.cells.append(cell)
            prev_prev, prev = prev, cell.out_channels
        self.head = conv3x3(prev, 2)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights, edge_weights)
        return x + self.head(s1)


class SuperNet(nn.Module):
    """``cascades`` x [search module -> DC] with one shared alpha matrix.

    ``forward(x (B,2,H,W), k0 complex (B,H,W), mask (W,) | (B,W), maps=None) -> (B,2,H,W)``, the
    same signature as every registry model (with ``maps``, coil k-space and the SENSE DC), so
    validation and reconstruction code is shared.
    """

    def __init__(self, space: str = "A", nodes: int = 3, channels: int = 16, cells: int = 2,
                 cascades: int = 3, alpha_init: float = 1e-3, method: str = "darts", partial: int = 4):
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"unknown search space {space!r}; choose from {sorted(SPACES)}")
        if method not in METHODS:
            raise ValueError(f"unknown search method {method!r}; choose from {', '.join(METHODS)}")
        self.space, self.nodes, self.method = space, nodes, method
        k = partial if method == "pc-darts" else 1
        self.recon = nn.ModuleList(SearchModule(space, nodes, channels, cells, k) for _ in range(cascades))
        self.dc = DataConsistency()
        self.alphas = nn.Parameter(alpha_init * torch.randn(num_edges(nodes), len(SPACES[space])))
        if method == "pc-darts":  # edge normalisation: one beta per edge, softmax over a node's inputs
            self.betas = nn.Parameter(alpha_init * torch.randn(num_edges(nodes)))
        if method == "drnas":  # concentrations softplus(alpha) start near 1 (a flat Dirichlet)
            with torch.no_grad():
                self.alphas.add_(float(torch.log(torch.expm1(torch.tensor(1.0)))))

    #: set by perturbation-based selection: fixed weights ``(edges, ops)`` replacing
    #: :meth:`mixing_weights`, and ``(edges,)`` edge weights replacing :meth:`edge_weights`
    weight_override: torch.Tensor | None = None
    edge_override: torch.Tensor | None = None

    def mixing_weights(self) -> torch.Tensor:
        """The operations' weights ``(edges, ops)`` of this forward pass (differentiable in the
        alphas): softmax, or for DrNAS a reparameterised Dirichlet sample while training (drawn
        from torch's global generator, which the search seeds per step) and its mean otherwise."""
        if self.weight_override is not None:
            return self.weight_override
        if self.method == "drnas":
            concentration = dirichlet_concentration(self.alphas)
            if self.training:
                return torch.distributions.Dirichlet(concentration).rsample()
            return concentration / concentration.sum(-1, keepdim=True)
        return F.softmax(self.alphas, dim=-1)

    def edge_weights(self) -> torch.Tensor | None:
        """PC-DARTS: ``softmax(beta)`` over each node's incoming edges; None for the others."""
        if self.edge_override is not None:
            return self.edge_override
        if self.method != "pc-darts":
            return None
        parts = [F.softmax(self.betas[o: o + i + 2], dim=0) for i, o in enumerate(edge_offsets(self.nodes))]
        return torch.cat(parts)

    @property
    def cascades(self) -> int:
        return len(self.recon)

    def forward(self, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        weights, edges = self.mixing_weights(), self.edge_weights()
        if maps is not None:  # coil k-space: the SENSE data consistency (backend.models.multicoil)
            from ..models.multicoil import run_multicoil

            return run_multicoil(self, x, k0, mask, maps, apply=lambda module, y: module(y, weights, edges))
        for module in self.recon:
            x = self.dc(module(x, weights, edges), k0, mask)
        return x

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas] + ([self.betas] if self.method == "pc-darts" else [])

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name not in ("alphas", "betas")]

    def op_weights(self) -> torch.Tensor:
        """The operations' expected weights ``(edges, ops)`` (softmax; DrNAS: the Dirichlet's
        mean), detached, on the CPU."""
        alphas = self.alphas.detach().float().cpu()
        if self.method == "drnas":
            c = dirichlet_concentration(alphas)
            return c / c.sum(-1, keepdim=True)
        return F.softmax(alphas, dim=-1)

    def derivation_weights(self) -> torch.Tensor:
        """What the genotype is derived from: :meth:`op_weights`, for PC-DARTS multiplied by the
        edge weights (the paper's edge selection by ``beta x alpha``)."""
        w = self.op_weights()
        edges = self.edge_weights()
        return w if edges is None else w * edges.detach().float().cpu()[:, None]

    def genotype(self, max_skip: int | None = None) -> Genotype:
        return derive_genotype(self.derivation_weights(), self.space, self.nodes, max_skip)


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
