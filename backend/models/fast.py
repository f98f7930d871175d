"""NasN's fast inference plan :class:`FastNasNModule` (chosen by
:func:`backend.models.inference.prepare_for_inference`).

The plan has the same ``forward(x, k0, mask)`` and the same parameters (shared, not copied,
apart from the re-sliced and re-stacked weights below) as the model it is given; only the order of the work changes. Outputs agree with the
reference path to float32 rounding (tests/test_fast.py checks a max abs difference < 1e-5 on
the normalised scale).

Why NasN needs its own plan. Its cells are made of depthwise + pointwise convolutions: few
multiply-adds, but each one reads and writes a whole ``(B, C, H, W)`` tensor, so on a CPU the
time goes into memory traffic, not arithmetic. Profiled at 320x320 on the 2-core CPU here
(channels_last), the straightforward module spent more than half of its time in page faults on
freshly allocated activations (:func:`backend.models.inference.tune_allocator`); a first
re-planning (one fused 1x1
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
by default on CPUs with AVX-512 or AVX2), a node whose operations end in depthwise -> pointwise is one
kernel call: both depthwise convolutions (reading their inputs through the ReLU), the stacked
pointwise GEMM, the skip edges and the raw and/or rectified output, in one pass over memory;
likewise every 1x1 convolution that reads a cell's output (the next cells' preprocessing, the
head's taps, the preprocessing of the stem's output) is one call with one output per reader. A
rectified copy of a state is then only made where an operation the kernel does not start with
reads it (the first half of ``sep_conv_3x3``, the 9x1 convolution of ``conv_9x1_1x9``, run
on oneDNN). The kernel's calls then take about 90% of the time, at 48-77% of the CPU's FMA
peak by kind of call (``bench/kernel_calls.py``, session 13); ``FastNasNModule(...,
kernel=False)`` or ``NASCSMRI_KERNELS=0`` keeps the oneDNN plan.

Without oneDNN (or off float32 CPU) the oneDNN plan runs with separate convolution, addition
and ReLU calls. Other models (dense convolutions, where oneDNN is already efficient) run
unchanged in channels_last. On CUDA, ``fast`` is channels_last + bf16 autocast instead (see
:func:`backend.models.inference.prepare_for_inference`). Measurements: ``bench/inference_speed.py``,
``bench/head_to_head.py``, ``bench/stripe_rows.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from .cascade import ResidualModule, UnrolledCascade
from .fast_parts import ConvChain, frozen_1x1, fused_conv, pad_columns, shifted_sum, tap_major
from .kernels import FusedPointwise, depthwise_taps, fused_pointwise
from .nasn import Cell, CellStack

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
        self.chains = nn.ModuleList(nn.ModuleList(ConvChain(op) for op in c.ops) for c in cells)
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
        full = tap_major(weight) if taps else weight
        size = full.shape[1] // parts
        convs = nn.ModuleList()
        for part in range(parts):
            conv = frozen_1x1(full[:, part * size:(part + 1) * size])
            self._sources.append((conv, weight, taps, part, size))
            convs.append(conv)
        return convs

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the reference preprocessing and head weights into the sliced ones again (after
        the reference weights were changed in place)."""
        for conv, source, taps, part, size in self._sources:
            full = tap_major(source) if taps else source
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
                    "weight": pad_columns(torch.cat([pw.weight.detach()[:, :, 0, 0].t() for pw in pointwise])),
                    "bias": pad_columns(sum(biases)[None])[0] if biases else None,
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
            weight = pad_columns(torch.cat(blocks, 1)) if blocks else None
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
                out = fused_conv(second.run(rectified(states[b]), len(second.convs) - 1), second.convs[-1], into=acc,
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
        out = fused_conv(sources[0], convs[0], relu=relu and last == 0)
        for k in range(1, len(convs)):
            out = fused_conv(sources[k], convs[k], into=out, relu=relu and k == last)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:  # one image at a time: a row stripe of a channels_last image is dense
            return torch.cat([self._image(x[b:b + 1]) for b in range(x.shape[0])])
        return self._image(x)

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        kernel = self.kernel if x.dtype == torch.float32 and x.device.type == "cpu" else None
        stem = fused_conv(x, self.stem, relu=True)  # the stem output is read only through ReLUs
        pending: dict[tuple[int, int], torch.Tensor] = {}
        users, weight, offsets = self.reader_plans[-1]
        if kernel is not None and users:  # every preprocessing of the stem's output in one pass
            for user in users:
                pending[user] = torch.empty_like(stem, memory_format=torch.channels_last)
            kernel.run([(stem, False, None, None)], weight,
                       [(pending[user], offset, not self._stored_raw(*user)) for user, offset in zip(users, offsets)])
        else:
            for j, which in users:
                pending[(j, which)] = fused_conv(stem, self.preprocess[f"{j}_{which}"][0],
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
                for user in users:  # the head's taps as channel planes, as shifted_sum reads them
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
                out = shifted_sum(outputs[None], self.out_channels)
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

    def forward(self, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        if maps is not None:  # coil k-space: the SENSE data consistency (backend.models.multicoil)
            from .multicoil import run_multicoil

            return run_multicoil(self, x, k0, mask, maps)
        x = x.contiguous(memory_format=torch.channels_last)
        for stage in range(self.cascades):
            x = self.dc(self.recon[stage % len(self.recon)](x), k0, mask)
        return x
