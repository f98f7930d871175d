"""Inference-only execution of trained models, faster on the same weights (issue #8).

:func:`prepare_for_inference` returns a module with the same ``forward(x, k0, mask)`` and the
same parameters (shared, not copied) as the model it is given; only the order of the work
changes. Outputs agree with the reference path to float32 rounding (tests/test_fast.py checks
a max abs difference < 1e-5 on the normalised scale).

Why NasN needs its own plan. Its cells are made of depthwise + pointwise convolutions: few
multiply-adds, but each one reads and writes a whole ``(B, C, H, W)`` tensor, so on a CPU the
time goes into memory traffic, not arithmetic. Profiled at 320x320 on the 2-core CPU here
(channels_last), the straightforward module spent more than half of its time in page faults
on freshly allocated activations (:func:`tune_allocator`), and of the rest about as much in
``torch.cat``, repeated ReLUs and the 96 -> 2 channel head as in the convolutions.
:class:`FastNasNModule` therefore

* computes ``relu(state)`` once per state instead of once per consuming edge;
* fuses every 1x1 preprocessing convolution that reads the same state (the stem output feeds
  three of them, every cell output two) into one convolution, computed once;
* writes each node straight into its channel slice of the cell output (no ``torch.cat``),
  and applies the ReLU of that output in place, since nothing else reads it;
* evaluates each cell in horizontal stripes (plus the rows its receptive field needs), so the
  intermediates of a stripe stay in cache;
* evaluates the head 3x3 convolution ``n*C -> 2`` as one 1x1 convolution ``n*C -> 18`` followed
  by nine shifted 2-channel additions (the same sums, grouped differently);

all in channels_last. Other models (dense convolutions, where oneDNN is already efficient) run
unchanged in channels_last. On CUDA, ``fast`` is channels_last + bf16 autocast instead (see
:func:`prepare_for_inference`). Measurements: ``bench/inference_speed.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cascade import ResidualModule, UnrolledCascade
from .nasn import Cell, CellStack
from .ops import Conv9x1_1x9, DilConv, SepConv

EXECUTIONS = ("auto", "reference", "fast")
"""``reference``: the training module as is (contiguous, float32); ``fast``: this module's
plans; ``auto``: ``fast`` on CPU, reference + bf16 autocast on CUDA."""


def _without_leading_relu(op: nn.Module) -> nn.Module | None:
    """The part of a cell operation after its first ReLU (``None`` for the identity).

    Every parametric operation of :mod:`backend.models.ops` starts with a ReLU; the plan feeds
    it the cached ``relu(state)`` instead. (``none`` never appears in a derived genotype.)
    """
    if isinstance(op, nn.Identity):
        return None
    if isinstance(op, (DilConv, Conv9x1_1x9)):
        return nn.Sequential(*list(op)[1:])
    if isinstance(op, SepConv):
        first, second = op
        return nn.Sequential(*list(first)[1:], second)
    raise TypeError(f"no fast plan for operation {type(op).__name__}")


class _ShiftedHead(nn.Module):
    """A 3x3 'same' convolution ``in -> out`` (dilation 1, bias) as a 1x1 conv to ``9*out``
    channels plus nine shifted sums: far fewer passes over the wide input for small ``out``."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.dilation != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
            raise TypeError("the shifted head needs a plain 3x3 convolution with padding 1")
        self.conv = conv
        self.out_channels = conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight  # (out, in, 3, 3) -> (9 * out, in, 1, 1), taps major
        taps = F.conv2d(x, w.permute(2, 3, 0, 1).reshape(-1, w.shape[1], 1, 1))
        taps = F.pad(taps, (1, 1, 1, 1))
        h, wd = x.shape[-2:]
        o = self.out_channels
        out = None
        for tap in range(9):
            dy, dx = divmod(tap, 3)
            part = taps[:, tap * o:(tap + 1) * o, dy:dy + h, dx:dx + wd]
            out = part.clone() if out is None else out.add_(part)
        if self.conv.bias is not None:
            out.add_(self.conv.bias.view(1, -1, 1, 1))
        return out


def _op_radius(op: nn.Module | None) -> int:
    """How many pixels (rows) away an operation's output depends on its input."""
    if op is None:
        return 0
    radius = 0
    for layer in op.modules():
        if isinstance(layer, nn.Conv2d):
            radius += layer.dilation[0] * (layer.kernel_size[0] // 2)
    return radius


class FastNasNModule(nn.Module):
    """One NasN reconstruction module (:func:`backend.models.nasn.nasn_module`) re-planned.

    Same parameters and the same function as the reference module; see the module docstring
    for what changes. Shape ``(B, 2, H, W) -> (B, 2, H, W)``.

    Args:
        module: the reference module.
        stripe_rows: each cell is evaluated in horizontal stripes of this many rows (plus the
            rows its receptive field needs on both sides), so that the intermediate tensors of
            a stripe stay in the CPU cache; ``None`` = whole images.
    """

    def __init__(self, module: ResidualModule, stripe_rows: int | None = 96):
        super().__init__()
        if not isinstance(module.body, CellStack):
            raise TypeError("FastNasNModule needs a NasN reconstruction module")
        cells: list[Cell] = list(module.body.cells)
        self.stripe_rows = stripe_rows
        self.stem = module.stem
        self.head = _ShiftedHead(module.head)
        self.channels = cells[0].preprocess0[1].out_channels
        self.cell_inputs = [list(c.inputs) for c in cells]
        self.cell_ops = nn.ModuleList(
            nn.ModuleList(_Optional(_without_leading_relu(op)) for op in c.ops) for c in cells)
        self.out_channels = [c.out_channels for c in cells]
        # rows of context a cell needs around a stripe: node radius over the edges
        self.halo = []
        for j, ops in enumerate(self.cell_ops):
            radius = [0, 0]
            for node in range(len(ops) // 2):
                radius.append(max((radius[self.cell_inputs[j][k]] + _op_radius(ops[k].op))
                                  for k in (2 * node, 2 * node + 1)))
            self.halo.append(max(radius))
        # States: -1 = stem output, j = output of cell j. Cell j reads s0 = state max(j-2, -1)
        # and s1 = state j-1 (CellStack.forward). Group the preprocessing convs by state.
        consumers: dict[int, list[tuple[int, int]]] = {}
        for j in range(len(cells)):
            consumers.setdefault(max(j - 2, -1), []).append((j, 0))
            consumers.setdefault(j - 1, []).append((j, 1))
        self.consumers = consumers
        self.fused = nn.ParameterDict()
        self._sources = []
        for state, users in consumers.items():
            weights = [(cells[j].preprocess0 if which == 0 else cells[j].preprocess1)[1].weight
                       for j, which in users]
            self._sources.append(weights)
            # a concatenation is a new tensor: kept as a frozen copy (see refresh())
            self.fused[str(state + 1)] = nn.Parameter(torch.cat(weights, 0).detach().clone(),
                                                      requires_grad=False)

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the reference preprocessing weights into the fused ones again (after the
        reference weights were changed in place)."""
        for state, weights in zip(self.consumers, self._sources):
            self.fused[str(state + 1)].copy_(torch.cat(weights, 0))

    def _split(self, state: int, fused: torch.Tensor, pending: dict) -> None:
        for i, key in enumerate(self.consumers[state]):
            pending[key] = fused[:, i * self.channels:(i + 1) * self.channels]

    def _cell(self, j: int, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Cell ``j`` on preprocessed inputs ``(B, C, h, W)`` -> ``(B, n*C, h, W)``."""
        c = self.channels
        ops = self.cell_ops[j]
        inputs = self.cell_inputs[j]
        states = [s0, s1]
        relus: dict[int, torch.Tensor] = {}
        out = torch.empty((s0.shape[0], self.out_channels[j], *s0.shape[-2:]), dtype=s0.dtype,
                          device=s0.device, memory_format=torch.channels_last)
        for node in range(len(ops) // 2):
            terms = []
            for k in (2 * node, 2 * node + 1):
                src = inputs[k]
                if ops[k].op is None:
                    terms.append(states[src])
                else:
                    if src not in relus:
                        relus[src] = torch.relu(states[src]).contiguous(memory_format=torch.channels_last)
                    terms.append(ops[k].op(relus[src]))
            target = out[:, node * c:(node + 1) * c]
            torch.add(terms[0], terms[1], out=target)
            states.append(target)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        pending: dict[tuple[int, int], torch.Tensor] = {}
        self._split(-1, F.conv2d(torch.relu(stem), self.fused["0"]), pending)
        del stem
        height = x.shape[-2]
        rows = self.stripe_rows or height
        last = len(self.cell_ops) - 1
        for j in range(len(self.cell_ops)):
            s0, s1 = pending.pop((j, 0)), pending.pop((j, 1))
            if j == last:
                out = torch.empty((x.shape[0], self.out_channels[j], *x.shape[-2:]), dtype=x.dtype,
                                  device=x.device, memory_format=torch.channels_last)
            else:
                weight = self.fused[str(j + 1)]
                out = torch.empty((x.shape[0], weight.shape[0], *x.shape[-2:]), dtype=x.dtype,
                                  device=x.device, memory_format=torch.channels_last)
            halo = self.halo[j]
            for top in range(0, height, rows):
                bottom = min(top + rows, height)
                lo, hi = max(top - halo, 0), min(bottom + halo, height)
                cell = self._cell(j, s0[:, :, lo:hi], s1[:, :, lo:hi])[:, :, top - lo:bottom - lo]
                # the cell output is read only by the next cells' preprocessing (ReLU, 1x1),
                # except the last one, which feeds the head
                out[:, :, top:bottom] = cell if j == last else F.conv2d(cell.relu_(), weight)
            if j == last:
                return x + self.head(out)
            self._split(j, out, pending)
        raise AssertionError("unreachable")


class _Optional(nn.Module):
    """Holds an operation or ``None`` (identity) inside a ModuleList."""

    def __init__(self, op: nn.Module | None):
        super().__init__()
        self.op = op


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


def resolve_execution(execution: str) -> str:
    """``auto`` -> ``fast``; anything else must be one of :data:`EXECUTIONS`."""
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {', '.join(EXECUTIONS)}, not {execution!r}")
    return "fast" if execution == "auto" else execution


def prepare_for_inference(model: nn.Module, execution: str = "auto",
                          device: torch.device | str = "cpu") -> nn.Module:
    """The module to run for inference: ``model`` itself (``reference``) or a fast plan.

    ``fast`` on CPU: :func:`tune_allocator`, channels_last for the cascades, and NasN cascades
    re-planned with :class:`FastNasNModule` (same outputs to float32 rounding). ``fast`` on CUDA: channels_last
    and bf16 autocast inside the reconstruction modules (the DC layer stays float32): outputs
    then differ from the reference at bf16 precision (~1e-2). The returned module shares the
    parameters of ``model`` and is in eval mode; ``model`` is moved to channels_last in place.
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
        return FastCascade(model, [FastNasNModule(m) for m in model.recon]).eval()
    return model
