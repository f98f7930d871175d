"""NasN's training plan on the CPU: the reference module's function and gradients, less memory traffic.

:func:`prepare_for_training` returns, for a NasN cascade on the CPU, a module whose forward
computes what :class:`backend.models.nasn.CellStack` computes, differentiably and with the
*same parameters* (the reference module is a registered submodule; nothing is copied), so the
optimiser, the state dict and the weights files are those of the reference model. Other models,
and every device but the CPU, train as they are.

What differs from the reference module, measured on the CPUs here (``bench/train_step.py``):

* no concatenation of a cell's nodes: the 1x1 preprocessing convolution over ``n*C`` channels
  is the sum of one 1x1 convolution per node (with the matching slice of its weight), and the
  head's 3x3 convolution likewise; the reference module's ``cat`` and the backward passes over
  channel slices of a channels-last concatenation (which ran several times slower than over
  dense tensors) disappear;
* one ReLU per state, shared by every operation and preprocessing convolution that reads it
  (the reference module computes one per reader);
* depthwise convolutions through :class:`DepthwiseConv`, whose backward computes, for 3x3
  taps over a multiple of 16 channels (every one of space A's), both gradients in one C pass
  (``dwg_backward`` of ``kernels/depthwise_grad.c``), and otherwise the input's gradient as a
  forward depthwise convolution with the flipped taps (oneDNN's forward is fast) and the taps'
  gradient with that file's C loop (oneDNN's channels-last depthwise backward took 10-15x the
  forward's time);
* each ``dil_*_conv_3x3`` and each half of a ``sep_conv_3x3`` (ReLU, depthwise 3x3, 1x1) as one
  ``RectifiedSeparable`` and each preprocessing 1x1 convolution over rectified parts as one
  ``PointwiseSum`` (:mod:`backend.models.training_fused`), where the kernels take
  them: one pass forward and one backward, with no ReLU or depthwise output kept (two images
  per operation written, saved and read again before; ``bench/train_step.py``, session 19);
* 1x1 convolutions through :class:`PointwiseConv`, whose backward computes the input's and the
  weight's gradients in one pass (``kernels/pointwise_grad.c``), with the ReLU's backward
  folded in where the convolution reads a rectified state;
* the head's 3x3 convolution to 2 channels as a 1x1 convolution to its nine taps (one
  ``PointwiseSum`` over the last cell's nodes) and a shifted sum (:func:`_head`).

With glibc's allocator tuned and Adam fused, as ``train`` runs, the shipped NasN's step (batch
2, 128x128, 2 threads) went from 253-259 to 210 ms on the AVX-512 EPYC of session 14 (README,
"Performance").

Sums are regrouped, so results equal the reference module's to float32 rounding
(``tests/test_training_plan.py``: gradcheck in float64, and float32 outputs and gradients of the
shipped network against the reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cascade import ResidualModule, UnrolledCascade
from .fast_parts import fused_conv_weight, shifted_sum, tap_major
from .kernels.gradients import depthwise_grad, pointwise_grad
from .nasn import CellStack
from .ops import Conv9x1_1x9, DilConv, SepConv
from .training_fused import pointwise_sum, rectified_separable


class DepthwiseConv(torch.autograd.Function):
    """``conv2d(x, weight, groups=C, padding, dilation)`` (stride 1, "same" padding, no bias)
    with the backward described in the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = tuple(padding), tuple(dilation)
        return F.conv2d(x, weight, padding=ctx.padding, dilation=ctx.dilation, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        if x.is_contiguous(memory_format=torch.channels_last):
            grad = grad.contiguous(memory_format=torch.channels_last)
        else:
            grad = grad.contiguous()
        groups, kernel = weight.shape[0], tuple(weight.shape[-2:])
        lib = depthwise_grad()
        if all(ctx.needs_input_grad[:2]) and lib is not None and lib.supports_backward(x, grad, weight, ctx.dilation):
            return (*lib.backward(x, grad, weight, ctx.dilation), None, None)  # both in one pass
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # the transposed convolution of a "same" one = the flipped taps
            grad_x = F.conv2d(grad, weight.flip(2, 3), padding=ctx.padding, dilation=ctx.dilation, groups=groups)
        if ctx.needs_input_grad[1]:
            if lib is not None and lib.supports(x, grad, kernel, ctx.dilation):
                grad_w = lib.weight_grad(x, grad, kernel, ctx.dilation)
            else:
                grad_w = torch.ops.aten.convolution_backward(
                    grad, x, weight, None, [1, 1], list(ctx.padding), list(ctx.dilation), False, [0, 0],
                    groups, [False, True, False])[1]
        return grad_x, grad_w, None, None


class PointwiseConv(torch.autograd.Function):
    """``conv2d(x, weight)`` for a 1x1 ``weight`` (no bias), or, with ``rectified = relu(x)``
    given, ``conv2d(rectified, weight)`` whose input gradient is taken with respect to ``x``
    (the ReLU's backward folded in, as its mask is the sign of ``rectified``). The backward
    computes both gradients in one pass with ``kernels/pointwise_grad.c`` (oneDNN otherwise)."""

    @staticmethod
    def forward(ctx, x, weight, rectified):
        source = x if rectified is None else rectified
        ctx.save_for_backward(source, weight)
        ctx.mask = rectified is not None
        return fused_conv_weight(source, weight)

    @staticmethod
    def backward(ctx, grad):
        grad_x, grad_w = _pointwise_backward(ctx, grad)
        return grad_x, grad_w, None


class PointwiseConvInto(torch.autograd.Function):
    """:class:`PointwiseConv` added into ``into`` in place (``into += conv2d(...)``, one oneDNN
    call with its sum post-op): the sum of a node's two operations, or of the per-part
    convolutions of a concatenation, without a separate pass over memory. ``into`` must be a
    tensor that nothing saved for backward (a convolution's fresh output)."""

    @staticmethod
    def forward(ctx, into, x, weight, rectified):
        source = x if rectified is None else rectified
        ctx.save_for_backward(source, weight)
        ctx.mask = rectified is not None
        ctx.mark_dirty(into)
        return fused_conv_weight(source, weight, into=into)

    @staticmethod
    def backward(ctx, grad):
        grad_x, grad_w = _pointwise_backward(ctx, grad)
        return grad, grad_x, grad_w, None


def _pointwise_backward(ctx, grad):
    """Both gradients of a :class:`PointwiseConv` (``None`` where not needed)."""
    source, weight = ctx.saved_tensors
    x_index = len(ctx.needs_input_grad) - 3  # (into,) x, weight, rectified
    if source.is_contiguous(memory_format=torch.channels_last):
        grad = grad.contiguous(memory_format=torch.channels_last)
    lib = pointwise_grad()
    if lib is not None and lib.supports(source, grad, weight):
        grad_x, grad_w = lib.backward(source, grad, weight, mask=ctx.mask)
    else:
        grad_x, grad_w = torch.ops.aten.convolution_backward(
            grad, source, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False])[:2]
        if ctx.mask:
            grad_x = torch.ops.aten.threshold_backward(grad_x, source, 0.0)
    return (grad_x if ctx.needs_input_grad[x_index] else None), (grad_w if ctx.needs_input_grad[x_index + 1] else None)


def pointwise(weight: torch.Tensor, x: torch.Tensor, rectified: torch.Tensor | None = None,
              into: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 convolution of ``x`` (or of ``rectified = relu(x)``) through :class:`PointwiseConv`,
    or added into ``into`` through :class:`PointwiseConvInto`."""
    if into is None:
        return PointwiseConv.apply(x, weight, rectified)
    return PointwiseConvInto.apply(into, x, weight, rectified)


def depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A depthwise ``nn.Conv2d`` of the search space applied through :class:`DepthwiseConv`."""
    return DepthwiseConv.apply(x, conv.weight, conv.padding, conv.dilation)


def run_op(module: nn.Module, t: torch.Tensor, relu, into: torch.Tensor | None = None) -> torch.Tensor:
    """One operation of :data:`backend.models.ops.OPS` applied to ``t``, its leading ReLU taken
    from ``relu(t)`` (shared between the readers of a state) and its depthwise convolutions
    through :class:`DepthwiseConv`; any other operation runs as its module defines it. With
    ``into`` (a convolution's fresh output), the result is added into it in place."""
    if isinstance(module, nn.Identity):
        return t if into is None else into.add_(t)
    if isinstance(module, DilConv):
        fused = rectified_separable(module, t, into)
        return fused if fused is not None else pointwise(module[2].weight, depthwise(module[1], relu(t)), into=into)
    if isinstance(module, SepConv):
        inner = rectified_separable(module[0], t, None)
        if inner is not None:
            fused = rectified_separable(module[1], inner, into)
            if fused is not None:
                return fused
        inner = pointwise(module[0][2].weight, depthwise(module[0][1], relu(t)))
        return pointwise(module[1][2].weight, depthwise(module[1][1], torch.relu(inner)), into=into)
    if isinstance(module, Conv9x1_1x9):
        return pointwise(module[3].weight, depthwise(module[2], depthwise(module[1], relu(t))), into=into)
    return module(t) if into is None else into.add_(module(t))


CONV_OPS = (DilConv, SepConv, Conv9x1_1x9)  # operations whose output is a fresh convolution output


class TrainingNasNModule(nn.Module):
    """A NasN reconstruction module (stem, cell stack, head) computed as described above."""

    def __init__(self, module: ResidualModule):
        super().__init__()
        if not isinstance(module.body, CellStack):
            raise TypeError("TrainingNasNModule needs a NasN module (a CellStack body)")
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        rectified: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def relu(t: torch.Tensor) -> torch.Tensor:
            hit = rectified.get(id(t))
            if hit is None:  # keep t itself too, so that its id is not reused while cached
                hit = rectified[id(t)] = (t, torch.relu(t))
            return hit[1]

        stem = m.stem(x)
        before, last = [stem], [stem]
        for cell in m.body.cells:
            states = [_sum_over_parts(before, cell.preprocess0[1].weight, relu, 0),
                      _sum_over_parts(last, cell.preprocess1[1].weight, relu, 0)]
            for k in range(0, len(cell.ops), 2):
                # a convolution's fresh output takes the other operation's result in place (no
                # other reader holds it); two identities are summed out of place
                first, second = (k, k + 1) if isinstance(cell.ops[k], CONV_OPS) else (k + 1, k)
                if isinstance(cell.ops[first], CONV_OPS):
                    into = run_op(cell.ops[first], states[cell.inputs[first]], relu)
                    states.append(run_op(cell.ops[second], states[cell.inputs[second]], relu, into=into))
                else:
                    states.append(states[cell.inputs[k]] + states[cell.inputs[k + 1]])
            before, last = last, states[2:]
        head = _head(last, m.head)
        return x + head + m.head.bias.view(1, -1, 1, 1)


def _sum_over_parts(parts: list[torch.Tensor], weight: torch.Tensor, relu, padding) -> torch.Tensor:
    """``conv2d(cat(parts), weight)`` (inputs rectified when ``relu`` is given) as a sum of one
    convolution per part with its slice of the weight's input channels (1x1 ones with a ReLU
    through ``training_fused.PointwiseSum``, or :class:`PointwiseConv` where its
    kernels are missing)."""
    if relu is not None and weight.shape[-2:] == (1, 1) and padding == 0:
        fused = pointwise_sum(parts, weight)
        if fused is not None:
            return fused
    total, offset = None, 0
    for part in parts:
        width = part.shape[1]
        piece = weight[:, offset:offset + width]
        if relu is not None and piece.shape[-2:] == (1, 1) and padding == 0:
            total = pointwise(piece, part, relu(part).detach(), into=total)  # total: a convolution's own output
        else:
            y = F.conv2d(part if relu is None else relu(part), piece, padding=padding)
            total = y if total is None else total.add_(y)
        offset += width
    return total


def _head(parts: list[torch.Tensor], head: nn.Conv2d) -> torch.Tensor:
    """The head's ``conv2d(cat(parts), weight)`` without its bias. A 3x3 "same" one (NasN's)
    is computed as :func:`backend.models.fast_parts.shifted_sum` of a 1x1 convolution of the
    parts to the nine taps' output channels (tap-major): oneDNN ran the 3x3 convolution to 2
    channels and its backward at a small fraction of its speed on 32 outputs, and they were a
    sixth of the training step (``bench/train_step.py``, session 14). The taps come from one
    ``training_fused.PointwiseSum`` pass over all parts, written as the channel planes
    ``shifted_sum`` reads (session 20: the head's forward and backward 7.9 -> 6.3 ms), else
    from one :class:`PointwiseConv` per part."""
    if head.kernel_size != (3, 3) or head.padding != (1, 1) or head.dilation != (1, 1) or head.stride != (1, 1):
        return _sum_over_parts(parts, head.weight, None, head.padding)
    taps = pointwise_sum(parts, tap_major(head.weight), rectify=False, planes=True)
    if taps is None:
        offset = 0
        for part in parts:
            width = part.shape[1]
            taps = pointwise(tap_major(head.weight[:, offset:offset + width]), part, into=taps)
            offset += width
    return ShiftedSum.apply(taps, head.out_channels)


class ShiftedSum(torch.autograd.Function):
    """:func:`backend.models.fast_parts.shifted_sum` with a backward of its own: the taps'
    gradient is each tap's window of the output's gradient, written in one pass per tap (autograd
    through the in-place sums over windows made ~40 small copies and clones per head)."""

    @staticmethod
    def forward(ctx, taps, out_channels):
        ctx.out_channels = out_channels
        return shifted_sum(taps, out_channels)

    @staticmethod
    def backward(ctx, grad):
        o = ctx.out_channels
        n, _, h, w = grad.shape
        # channels last, as the 1x1 backward reads it (no copy per part)
        grad_taps = torch.empty(n, 9 * o, h, w, dtype=grad.dtype, device=grad.device,
                                memory_format=torch.channels_last).zero_()
        for tap in range(9):
            dy, dx = tap // 3 - 1, tap % 3 - 1  # output (y, x) read input (y + dy, x + dx)
            grad_taps[:, tap * o:(tap + 1) * o, max(dy, 0):h - max(-dy, 0), max(dx, 0):w - max(-dx, 0)] = \
                grad[:, :, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return grad_taps, None


class TrainingCascade(nn.Module):
    """The unrolled cascade with its reconstruction modules replaced by training plans; the
    reference cascade is the registered submodule ``cascade`` (its parameters are this
    module's parameters, in the same order)."""

    def __init__(self, cascade: UnrolledCascade):
        super().__init__()
        self.cascade = cascade
        self._plans = [TrainingNasNModule(m) for m in cascade.recon]  # plain list: no second registration

    @property
    def recon(self) -> list:
        """The stages' modules (the plans), as :func:`backend.models.multicoil.run_multicoil` reads them."""
        return self._plans

    @property
    def cascades(self) -> int:
        return self.cascade.cascades

    @property
    def dc(self) -> nn.Module:
        return self.cascade.dc

    def forward(self, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                maps: torch.Tensor | None = None) -> torch.Tensor:
        if maps is not None:
            from .multicoil import run_multicoil

            return run_multicoil(self, x, k0, mask, maps)
        for stage in range(self.cascades):
            x = self.dc(self._plans[stage % len(self._plans)](x), k0, mask)
        return x


def is_nasn(model: nn.Module) -> bool:
    return isinstance(model, UnrolledCascade) and all(
        isinstance(m, ResidualModule) and isinstance(m.body, CellStack) for m in model.recon)


def prepare_for_training(model: nn.Module, device: torch.device | str) -> nn.Module:
    """The module to train: :class:`TrainingCascade` for a NasN cascade on the CPU, else ``model``.

    Either way ``model``'s parameters are the ones trained; save and load ``model``.
    """
    if torch.device(device).type == "cpu" and is_nasn(model):
        return TrainingCascade(model)
    return model
