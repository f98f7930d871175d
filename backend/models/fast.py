"""Inference-only execution of trained models, faster on the same weights (issue #8).

:func:`prepare_for_inference` returns a module with the same ``forward(x, k0, mask)`` and the
same parameters (shared, not copied, apart from the re-sliced and re-stacked weights below)
as the model it is given; only the order of the work changes. Outputs agree with the
reference path to float32 rounding (tests/test_fast.py checks a max abs difference < 1e-5 on
the normalised scale).

Why NasN needs its own plan. Its cells are made of depthwise + pointwise convolutions: few
multiply-adds, but each one reads and writes a whole ``(B, C, H, W)`` tensor, so on a CPU the
time goes into memory traffic, not arithmetic. Profiled at 320x320 on the 2-core CPU here
(channels_last), the straightforward module spent more than half of its time in page faults on
freshly allocated activations (:func:`tune_allocator`); a first re-planning (one fused 1x1
convolution per state, nodes written into channel slices of the cell output) then still spent
a third of its time in element-wise passes over *channel slices* of channels_last tensors,
which are strided and ran 5-10x slower than the same passes over dense tensors.
:class:`FastNasNModule` therefore keeps every tensor dense:

* every state is held as a separate dense tensor, as it is needed: raw (read by a skip edge or
  the head) and/or rectified (read by an operation or a preprocessing convolution, all of which
  start with a ReLU); a ReLU runs once per state, and where only the rectified state is read it
  is fused into the convolution that produces it;
* a node of two operations is accumulated in place by the last convolution of the second
  (oneDNN's binary-add post-op in place, ``acc += conv``, with the ReLU fused too where only
  the rectified node is read); an operation plus a skip edge is the convolution, then an
  in-place addition (oneDNN's out-of-place ``conv + other`` measured slower);
* the 1x1 preprocessing convolution over a cell's concatenated nodes is computed as the sum of
  one 1x1 convolution per node (no concatenation), per consuming cell;
* the ``n*C -> 2`` head 3x3 convolution is a sum of per-node 1x1 convolutions to ``9 * 2`` tap
  channels followed by nine shifted 2-channel additions (the same sums, grouped differently);
* each cell is evaluated in horizontal stripes (plus the rows its receptive field needs), so
  that large images keep their intermediates small; one image at a time, so that a stripe of
  a channels_last tensor is a dense view.

The plan above still spends most of its time streaming 13 MB activations through memory: each
depthwise output is written and read back once, each ReLU and skip addition is a pass of its
own. Where the C kernel of :mod:`backend.models.kernels` is available (compiled on first use;
by default on CPUs with AVX-512), a node whose operations end in depthwise -> pointwise is one
kernel call: both depthwise convolutions (reading their inputs through the ReLU), the stacked
pointwise GEMM, the skip edges and the raw and/or rectified output, in one pass over memory;
likewise every 1x1 convolution that reads a cell's output (the next cells' preprocessing, the
head's taps, the preprocessing of the stem's output) is one call with one output per reader. A
rectified copy of a state is then only made where an operation the kernel does not start with
reads it (the first half of ``sep_conv_3x3``, the 9x1 convolution of ``conv_9x1_1x9``, run
on oneDNN). With the kernel the pointwise multiply-adds, run near the CPU's FMA throughput,
take most of the time; ``FastNasNModule(..., kernel=False)`` or ``NASCSMRI_KERNELS=0`` keeps
the oneDNN plan.

Without oneDNN (or off float32 CPU) the oneDNN plan runs with separate convolution, addition
and ReLU calls. Other models (dense convolutions, where oneDNN is already efficient) run
unchanged in channels_last. On CUDA, ``fast`` is channels_last + bf16 autocast instead (see
:func:`prepare_for_inference`). Measurements: ``bench/inference_speed.py``,
``bench/head_to_head.py``, ``bench/stripe_rows.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cascade import ResidualModule, UnrolledCascade
from .kernels import FusedPointwise, depthwise_taps, fused_pointwise
from .nasn import Cell, CellStack

EXECUTIONS = ("auto", "reference", "fast")
"""``reference``: the training module as is (contiguous, float32); ``fast``: this module's
plans; ``auto``: ``fast`` on CPU, reference + bf16 autocast on CUDA."""

try:  # oneDNN convolutions with fused post-ops, as used by torch.compile's CPU backend
    _CONV_POINTWISE = torch.ops.mkldnn._convolution_pointwise.default
    _CONV_POINTWISE_INPLACE = torch.ops.mkldnn._convolution_pointwise_
    _FUSED = torch.backends.mkldnn.is_available()
except (AttributeError, RuntimeError):
    _FUSED = False


def _conv(x: torch.Tensor, conv: nn.Conv2d, *, relu: bool = False,
          into: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)``, or ``into + conv(x)`` written into ``into`` (returned), then optionally a
    ReLU. One oneDNN call on float32 CPU tensors, else separate calls."""
    if _FUSED and x.device.type == "cpu" and x.dtype == torch.float32:
        args = (conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        unary = ("relu", [None], "") if relu else (None, [], None)
        if into is not None:
            return _CONV_POINTWISE_INPLACE.binary(into, x, *args, "add", 1.0, *unary)
        return _CONV_POINTWISE(x, *args, *(unary if relu else ("none", [], None)))
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    if into is not None:
        y = into.add_(y)
    return y.relu_() if relu else y


class _Chain(nn.Module):
    """A cell operation without its leading ReLU: its convolutions, each flagged when a ReLU
    follows it (inside ``sep_conv_3x3``). Empty for the identity."""

    def __init__(self, op: nn.Module):
        super().__init__()
        self.convs = nn.ModuleList()
        self.relu_after: list[bool] = []
        if isinstance(op, nn.Identity):
            return
        layers = [m for m in op.modules() if not list(m.children())]
        if not layers or not isinstance(layers[0], nn.ReLU):
            raise TypeError(f"no fast plan for operation {type(op).__name__}: it does not start with a ReLU")
        for layer in layers[1:]:
            if isinstance(layer, nn.Conv2d):
                self.convs.append(layer)
                self.relu_after.append(False)
            elif isinstance(layer, nn.ReLU) and self.relu_after:
                self.relu_after[-1] = True
            else:
                raise TypeError(f"no fast plan for operation {type(op).__name__} ({type(layer).__name__})")

    @property
    def radius(self) -> int:
        """How many pixels (rows) away the output depends on the input."""
        return sum(c.dilation[0] * (c.kernel_size[0] // 2) for c in self.convs)

    def run(self, x: torch.Tensor, stop: int | None = None) -> torch.Tensor:
        """The convolutions on the rectified input ``x``: all, or the first ``stop``."""
        n = len(self.convs) if stop is None else stop
        for conv, relu in zip(list(self.convs)[:n], self.relu_after[:n]):
            x = _conv(x, conv, relu=relu)
        return x

    @property
    def fusable(self) -> bool:
        """Whether the chain ends in depthwise -> pointwise (no ReLU, no depthwise bias, stride 1,
        "same" padding) as :mod:`backend.models.kernels` computes it in one pass."""
        if len(self.convs) < 2 or self.relu_after[-2]:
            return False
        dw, pw = self.convs[-2], self.convs[-1]
        if not isinstance(dw.padding, tuple):  # padding="same" / "valid" strings
            return False
        same = all(p == d * (k // 2) and k % 2 for p, d, k in zip(dw.padding, dw.dilation, dw.kernel_size))
        return (same and dw.groups == dw.in_channels == dw.out_channels and dw.bias is None
                and dw.stride == (1, 1) and pw.kernel_size == (1, 1) and pw.groups == 1 and pw.stride == (1, 1)
                and pw.padding == (0, 0))


def _tap_major(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 kernel ``(out, in, 3, 3)`` as nine 1x1 kernels stacked tap-major ``(9 * out, in, 1, 1)``."""
    return weight.permute(2, 3, 0, 1).reshape(-1, weight.shape[1], 1, 1)


def _frozen_1x1(weight: torch.Tensor) -> nn.Conv2d:
    """A bias-free 1x1 convolution holding a dense copy of ``weight`` (out, in, 1, 1)."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=False)
    conv.weight = nn.Parameter(weight.detach().clone().contiguous(), requires_grad=False)
    return conv


def _shifted_sum(taps: torch.Tensor, out_channels: int) -> torch.Tensor:
    """A 3x3 'same' convolution finished from its nine taps: ``taps`` holds, tap-major, the
    1x1 convolution of the input with each of the nine kernel positions. Each tap is added to
    the window of the output it reaches (zero padding = the rows and columns it does not)."""
    taps = taps.contiguous()  # a few channels: plain layout keeps each tap's slice dense
    h, w = taps.shape[-2:]
    out = taps[:, 4 * out_channels:5 * out_channels].clone()  # the centre tap covers everything
    for tap in range(9):
        if tap == 4:
            continue
        dy, dx = tap // 3 - 1, tap % 3 - 1  # output (y, x) reads input (y + dy, x + dx)
        part = taps[:, tap * out_channels:(tap + 1) * out_channels]
        out[:, :, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)] += \
            part[:, :, max(dy, 0):h - max(-dy, 0), max(dx, 0):w - max(-dx, 0)]
    return out


def _pad_columns(weight: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """``weight`` (K, N) with zero columns up to a multiple of ``multiple``, dense."""
    pad = -weight.shape[1] % multiple
    return torch.cat([weight, weight.new_zeros(weight.shape[0], pad)], 1).contiguous() if pad else weight.contiguous()


STRIPE_BYTES = 16 << 20
"""Largest ``C``-channel stripe tensor of :class:`FastNasNModule` with ``stripe_rows="auto"``:
whole images up to 16 MiB per tensor, stripes beyond. Chosen from ``python
bench/stripe_rows.py`` (``bench/results/stripe_rows_cpu.json``): with the shipped NasN
(C = 32) on the 2-core CPU here, whole 320x320 images ran as fast as any stripe height, while
whole 640x640 images (52 MB per tensor, above glibc's largest mmap threshold, so that every
activation page-faults in again) took twice as long as stripes."""


class FastNasNModule(nn.Module):
    """One NasN reconstruction module (:func:`backend.models.nasn.nasn_module`) re-planned.

    Same function as the reference module; see the module docstring for what changes. Shape
    ``(B, 2, H, W) -> (B, 2, H, W)``. The operations' convolutions and the stem are shared
    with the reference module; the preprocessing and head weights are re-sliced copies, and the
    kernel's depthwise taps and stacked 1x1 weights copies too (call :meth:`refresh` after
    changing the reference weights in place).

    Args:
        module: the reference module.
        stripe_rows: each cell is evaluated in horizontal stripes of this many rows (plus the
            rows its receptive field needs on both sides); ``None`` = whole images; ``"auto"``
            = stripes of at most :data:`STRIPE_BYTES` per ``C``-channel tensor (whole images up
            to 409 pixels wide at C = 32).
        kernel: ``True``: nodes and the readers of each cell's output run in the fused C
            kernel where :func:`backend.models.kernels.fused_pointwise` provides it (float32
            CPU inputs); ``False``: oneDNN convolutions only; or a kernel to use.
    """

    def __init__(self, module: ResidualModule, stripe_rows: int | str | None = "auto",
                 kernel: bool | FusedPointwise = True):
        super().__init__()
        if not isinstance(module.body, CellStack):
            raise TypeError("FastNasNModule needs a NasN reconstruction module")
        cells: list[Cell] = list(module.body.cells)
        head = module.head
        if head.kernel_size != (3, 3) or head.dilation != (1, 1) or head.padding != (1, 1) or head.groups != 1:
            raise TypeError("the fast NasN head needs a plain 3x3 convolution with padding 1")
        self.stripe_rows = stripe_rows
        self.stem = module.stem
        self.head_bias = head.bias
        self.out_channels = head.out_channels
        self.channels = cells[0].preprocess0[1].out_channels
        self.nodes = len(cells[0].ops) // 2
        self.cell_inputs = [list(c.inputs) for c in cells]
        self.chains = nn.ModuleList(nn.ModuleList(_Chain(op) for op in c.ops) for c in cells)
        last = len(cells) - 1
        # which form of each state a cell reads: "raw" (skip edges, the head) and/or "relu"
        # (operations, the next cells' preprocessing)
        self.needs: list[list[set[str]]] = []
        for j in range(len(cells)):
            need = [set() for _ in range(self.nodes + 2)]
            for chain, src in zip(self.chains[j], self.cell_inputs[j]):
                need[src].add("relu" if len(chain.convs) else "raw")
            for state in range(2, self.nodes + 2):
                need[state].add("raw" if j == last else "relu")
            self.needs.append(need)
        self.halo = []
        for j, chains in enumerate(self.chains):
            radius = [0, 0]
            for node in range(self.nodes):
                radius.append(max(radius[self.cell_inputs[j][k]] + chains[k].radius
                                  for k in (2 * node, 2 * node + 1)))
            self.halo.append(max(radius))
        # States: -1 = stem output, j = output of cell j. Cell j reads s0 = state max(j-2, -1)
        # and s1 = state j-1 (CellStack.forward) through a ReLU and a 1x1 convolution, split
        # here into one convolution per node of the state read.
        self.consumers: dict[int, list[tuple[int, int]]] = {}
        for j in range(len(cells)):
            for which, state in ((0, max(j - 2, -1)), (1, j - 1)):
                if self.needs[j][which]:
                    self.consumers.setdefault(state, []).append((j, which))
        # (sliced copy, reference weight, whether the head's taps, slice index, slice width)
        self._sources: list[tuple[nn.Conv2d, torch.Tensor, bool, int, int]] = []
        self.preprocess = nn.ModuleDict()
        for state, users in self.consumers.items():
            for j, which in users:
                weight = (cells[j].preprocess0 if which == 0 else cells[j].preprocess1)[1].weight
                self.preprocess[f"{j}_{which}"] = self._slices(weight, 1 if state < 0 else self.nodes)
        self.head_taps = self._slices(head.weight, self.nodes, taps=True)
        self.kernel = kernel if isinstance(kernel, FusedPointwise) else fused_pointwise() if kernel else None
        self._kernel_plan()

    def _slices(self, weight: torch.Tensor, parts: int, taps: bool = False) -> nn.ModuleList:
        """``weight`` (out, parts * C, 1, 1), or a 3x3 kernel's taps with ``taps``, as ``parts``
        1x1 convolutions over C channels each."""
        full = _tap_major(weight) if taps else weight
        size = full.shape[1] // parts
        convs = nn.ModuleList()
        for part in range(parts):
            conv = _frozen_1x1(full[:, part * size:(part + 1) * size])
            self._sources.append((conv, weight, taps, part, size))
            convs.append(conv)
        return convs

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the reference preprocessing and head weights into the sliced ones again (after
        the reference weights were changed in place)."""
        for conv, source, taps, part, size in self._sources:
            full = _tap_major(source) if taps else source
            conv.weight.copy_(full[:, part * size:(part + 1) * size])
        self._kernel_plan()

    @torch.no_grad()
    def _kernel_plan(self) -> None:
        """The fused kernel's weights (copies, rebuilt by :meth:`refresh`), per cell and node:
        ``None`` where a node has no operation or one the kernel cannot finish (it then runs on
        oneDNN), else the depthwise taps and geometry of each operation's last depthwise
        convolution and their pointwise weights stacked ``(K, cpad)``; per cell, the 1x1
        weights of every reader of its output (the next cells' preprocessing, or the head's
        taps) stacked the same way; and which states some reader needs as a rectified tensor."""
        last = len(self.chains) - 1
        self.node_plans: list[list[dict | None]] = []
        self.relu_tensors: list[set[int]] = []
        for j, chains in enumerate(self.chains):
            plans, relu_tensors = [], set()
            for node in range(self.nodes):
                edges = [(chains[k], self.cell_inputs[j][k]) for k in (2 * node, 2 * node + 1)]
                ops = [(chain, src) for chain, src in edges if len(chain.convs)]
                fused = bool(ops) and all(chain.fusable for chain, _ in ops)
                # a rectified tensor is read by every operation the kernel does not start with
                relu_tensors.update(src for chain, src in ops if not fused or len(chain.convs) > 2)
                if not fused:
                    plans.append(None)
                    continue
                pointwise = [chain.convs[-1] for chain, _ in ops]
                biases = [pw.bias.detach() for pw in pointwise if pw.bias is not None]
                plans.append({
                    "taps": [depthwise_taps(chain.convs[-2]) for chain, _ in ops],
                    "geometry": [(chain.convs[-2].kernel_size, chain.convs[-2].dilation) for chain, _ in ops],
                    "weight": _pad_columns(torch.cat([pw.weight.detach()[:, :, 0, 0].t() for pw in pointwise])),
                    "bias": _pad_columns(sum(biases)[None])[0] if biases else None,
                })
            self.node_plans.append(plans)
            self.relu_tensors.append(relu_tensors)
        self.reader_plans: dict[int, tuple[list, torch.Tensor | None, list[int]]] = {}
        for j in range(-1, len(self.chains)):  # -1: the stem's output
            users = [None] if j == last else self.consumers.get(j, [])
            blocks = [torch.cat([c.weight.detach()[:, :, 0, 0].t() for c in
                                 (self.head_taps if user is None else self.preprocess[f"{user[0]}_{user[1]}"])])
                      for user in users]
            offsets = [sum(b.shape[1] for b in blocks[:i]) for i in range(len(blocks))]
            weight = _pad_columns(torch.cat(blocks, 1)) if blocks else None
            self.reader_plans[j] = (users, weight, offsets)

    def _stored_raw(self, j: int, which: int) -> bool:
        """Whether cell ``j``'s input ``which`` is kept raw (else only rectified)."""
        return "raw" in self.needs[j][which]

    def _cell(self, j: int, inputs: list[torch.Tensor | None], kernel: FusedPointwise | None) -> list[dict]:
        """Cell ``j`` on its preprocessed inputs (row windows, raw or rectified as stored):
        the nodes, each ``{"raw": tensor or None, "relu": tensor or None}``. With ``kernel``,
        each node it can finish is one kernel call, and a rectified tensor is only made where
        a reader needs one (the kernel reads raw tensors through a ReLU)."""
        eager = kernel is None  # oneDNN plan: every form a reader needs, made once

        def rectified(state: dict) -> torch.Tensor:
            if state["relu"] is None:
                state["relu"] = torch.relu(state["raw"])
            return state["relu"]

        states = []
        for which, window in enumerate(inputs):
            if window is None or not self._stored_raw(j, which):
                states.append({"raw": None, "relu": window})
            else:
                states.append({"raw": window, "relu": None})
                if eager and "relu" in self.needs[j][which]:
                    rectified(states[-1])
        chains, inputs_of = self.chains[j], self.cell_inputs[j]
        for node in range(self.nodes):
            edges = [(chains[k], inputs_of[k]) for k in (2 * node, 2 * node + 1)]
            ops = [(chain, src) for chain, src in edges if len(chain.convs)]
            skips = [src for chain, src in edges if not len(chain.convs)]
            need = self.needs[j][2 + node]
            relu_only = "raw" not in need
            plan = None if eager else self.node_plans[j][node]
            if plan is not None:
                fused_inputs = []
                for (chain, src), taps, geometry in zip(ops, plan["taps"], plan["geometry"]):
                    if len(chain.convs) > 2:  # e.g. the first half of sep_conv_3x3, on oneDNN
                        fused_inputs.append((chain.run(rectified(states[src]), len(chain.convs) - 2), False,
                                             taps, geometry))
                    elif states[src]["relu"] is not None:
                        fused_inputs.append((states[src]["relu"], False, taps, geometry))
                    else:
                        fused_inputs.append((states[src]["raw"], True, taps, geometry))
                like = fused_inputs[0][0]
                forms = ([] if relu_only else ["raw"]) + \
                    (["relu"] if relu_only or 2 + node in self.relu_tensors[j] else [])
                state, outputs = {"raw": None, "relu": None}, []
                for form in forms:
                    state[form] = torch.empty((1, self.channels, *like.shape[-2:]), dtype=like.dtype,
                                              memory_format=torch.channels_last)
                    outputs.append((state[form], 0, form == "relu"))
                kernel.run(fused_inputs, plan["weight"], outputs, adds=[states[src]["raw"] for src in skips],
                           bias=plan["bias"])
                states.append(state)
                continue
            if not ops:
                out = torch.add(states[skips[0]]["raw"], states[skips[1]]["raw"])
                if relu_only:
                    out.relu_()
            elif len(ops) == 2:
                (first, a), (second, b) = ops
                acc = first.run(rectified(states[a]))
                out = _conv(second.run(rectified(states[b]), len(second.convs) - 1), second.convs[-1], into=acc,
                            relu=relu_only)
            else:  # oneDNN's out-of-place "conv + other" measured slower than conv, then add in place
                (chain, a), = ops
                out = chain.run(rectified(states[a])).add_(states[skips[0]]["raw"])
                if relu_only:
                    out.relu_()
            if relu_only:
                states.append({"raw": None, "relu": out})
            else:
                states.append({"raw": out, "relu": None})
                if "relu" in need and (eager or 2 + node in self.relu_tensors[j]):
                    rectified(states[-1])
        return states[2:]

    @staticmethod
    def _sum_of_convs(sources: list[torch.Tensor], convs: nn.ModuleList, relu: bool) -> torch.Tensor:
        """``sum_k convs[k](sources[k])`` (then ReLU), accumulated in place."""
        last = len(convs) - 1
        out = _conv(sources[0], convs[0], relu=relu and last == 0)
        for k in range(1, len(convs)):
            out = _conv(sources[k], convs[k], into=out, relu=relu and k == last)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:  # one image at a time: a row stripe of a channels_last image is dense
            return torch.cat([self._image(x[b:b + 1]) for b in range(x.shape[0])])
        return self._image(x)

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        kernel = self.kernel if x.dtype == torch.float32 and x.device.type == "cpu" else None
        stem = _conv(x, self.stem, relu=True)  # the stem output is read only through ReLUs
        pending: dict[tuple[int, int], torch.Tensor] = {}
        users, weight, offsets = self.reader_plans[-1]
        if kernel is not None and users:  # every preprocessing of the stem's output in one pass
            for user in users:
                pending[user] = torch.empty_like(stem, memory_format=torch.channels_last)
            kernel.run([(stem, False, None, None)], weight,
                       [(pending[user], offset, not self._stored_raw(*user)) for user, offset in zip(users, offsets)])
        else:
            for j, which in users:
                pending[(j, which)] = _conv(stem, self.preprocess[f"{j}_{which}"][0],
                                            relu=not self._stored_raw(j, which))
        del stem
        height = x.shape[-2]
        rows = self.stripe_rows or height
        if rows == "auto":
            rows = max(16, STRIPE_BYTES // (self.channels * x.shape[-1] * x.element_size()))
        rows = min(rows, height)
        last = len(self.chains) - 1
        for j in range(len(self.chains)):
            inputs = [pending.pop((j, which), None) for which in (0, 1)]
            # what this cell's output feeds: the head (taps) or the next cells' inputs
            users = [None] if j == last else self.consumers.get(j, [])
            outputs: dict = {}
            halo = self.halo[j]
            if kernel is not None:
                users, weight, offsets = self.reader_plans[j]
                for user in users:  # the head's taps as channel planes, as _shifted_sum reads them
                    outputs[user] = torch.empty((1, self.out_channels * 9 if user is None else self.channels, height,
                                                 x.shape[-1]), dtype=x.dtype, memory_format=torch.contiguous_format
                                                if user is None else torch.channels_last)
            for top in range(0, height, rows):
                bottom = min(top + rows, height)
                lo, hi = max(top - halo, 0), min(bottom + halo, height)
                nodes = self._cell(j, [None if t is None else t[:, :, lo:hi] for t in inputs], kernel)
                a, b = top - lo, bottom - lo
                if kernel is not None:  # every reader of this cell's output in one pass
                    if not users:
                        continue
                    if j == last:
                        sources = [(n["raw"][:, :, a:b], False, None, None) for n in nodes]
                    else:
                        sources = [(n["relu"][:, :, a:b], False, None, None) if n["relu"] is not None
                                   else (n["raw"][:, :, a:b], True, None, None) for n in nodes]
                    kernel.run(sources, weight, [(outputs[user][:, :, top:bottom], offset,
                                                  user is not None and not self._stored_raw(*user))
                                                 for user, offset in zip(users, offsets)])
                    continue
                for user in users:
                    if user is None:
                        part = self._sum_of_convs([n["raw"][:, :, a:b] for n in nodes], self.head_taps, relu=False)
                    else:
                        part = self._sum_of_convs([n["relu"][:, :, a:b] for n in nodes],
                                                  self.preprocess[f"{user[0]}_{user[1]}"],
                                                  relu=not self._stored_raw(*user))
                    if rows == height:
                        outputs[user] = part
                    else:
                        if user not in outputs:
                            outputs[user] = torch.empty((1, part.shape[1], height, x.shape[-1]), dtype=part.dtype,
                                                        device=part.device, memory_format=torch.channels_last)
                        outputs[user][:, :, top:bottom].copy_(part)
            del inputs
            if j == last:
                out = _shifted_sum(outputs[None], self.out_channels)
                if self.head_bias is not None:
                    out.add_(self.head_bias.view(1, -1, 1, 1))
                return x + out
            pending.update(outputs)
        raise AssertionError("unreachable")


class FastCascade(nn.Module):
    """An :class:`UnrolledCascade` whose reconstruction modules run a fast plan."""

    def __init__(self, cascade: UnrolledCascade, modules: list[nn.Module]):
        super().__init__()
        self.cascades = cascade.cascades
        self.recon = nn.ModuleList(modules)
        self.dc = cascade.dc
        self.config = getattr(cascade, "config", None)

    def forward(self, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        for stage in range(self.cascades):
            x = self.dc(self.recon[stage % len(self.recon)](x), k0, mask)
        return x


class _Autocast(nn.Module):
    """Runs ``module`` under autocast to ``dtype`` and returns float32 (GPU execution).

    Wraps the reconstruction modules only: the data-consistency FFTs stay in float32.
    """

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.module, self.device_type, self.dtype = module, device_type, dtype

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.module(*args)
        return out.float()


_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """Keep freed CPU tensors of up to 32 MiB in glibc's heap instead of unmapping them.

    glibc returns large freed blocks to the kernel (mmap threshold and heap trimming), so a
    network at 320x320 page-faults its way through every fresh 13-39 MB activation; measured
    here, that cost NasN more than half of its CPU time (bench/results/inference_cpu.json, the
    ``fast`` variant includes this). Sets ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's maximum) and
    ``M_TRIM_THRESHOLD`` to 256 MiB for this process; results are unchanged. Returns whether
    the settings were applied (False off glibc).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1 and libc.mallopt(m_trim_threshold, 256 << 20) == 1
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def _planned_or_reference(module: ResidualModule) -> nn.Module:
    """The module's fast plan, or (with one warning) the module itself when one of its operations
    cannot be planned (see the contract in :mod:`backend.models.ops`): outputs stay correct."""
    try:
        return FastNasNModule(module)
    except TypeError as err:
        import warnings

        warnings.warn(f"{err}; this reconstruction module runs as the training module does (reference path)",
                      RuntimeWarning, stacklevel=3)
        return module


def resolve_execution(execution: str) -> str:
    """``auto`` -> ``fast``; anything else must be one of :data:`EXECUTIONS`."""
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {', '.join(EXECUTIONS)}, not {execution!r}")
    return "fast" if execution == "auto" else execution


def prepare_for_inference(model: nn.Module, execution: str = "auto",
                          device: torch.device | str = "cpu") -> nn.Module:
    """The module to run for inference: ``model`` itself (``reference``) or a fast plan.

    ``fast`` on CPU: :func:`tune_allocator`, channels_last for the cascades, and NasN cascades
    re-planned with :class:`FastNasNModule` (with the fused C kernel where
    :func:`backend.models.kernels.fused_pointwise` provides it; same outputs to float32
    rounding). ``fast`` on CUDA: channels_last and bf16 autocast inside the reconstruction
    modules (the DC layer stays float32): outputs then differ from the reference at bf16
    precision (~1e-2). The returned module shares the parameters of ``model`` and is in eval
    mode; ``model`` is moved to channels_last in place.
    """
    device = torch.device(device)
    execution = resolve_execution(execution)
    model = model.eval()
    if execution == "reference":
        return model
    model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        if isinstance(model, UnrolledCascade):
            return FastCascade(model, [_Autocast(m, "cuda", torch.bfloat16) for m in model.recon]).eval()
        return _Autocast(model, "cuda", torch.bfloat16).eval()
    tune_allocator()
    if not isinstance(model, UnrolledCascade):
        # the U-net (max pooling, bilinear up-sampling, instance norms, up to 256 channels) measured slower in
        # channels_last on this CPU (bench/results/inference_cpu.json): keep its layout
        return model.to(memory_format=torch.contiguous_format)
    if all(isinstance(m, ResidualModule) and isinstance(m.body, CellStack) for m in model.recon):
        return FastCascade(model, [_planned_or_reference(m) for m in model.recon]).eval()
    return model
