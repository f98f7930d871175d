"""The training plan's operations that run whole on the C kernels (issue #17).

:class:`RectifiedSeparable` is a ``dil_*_conv_3x3`` (or half a ``sep_conv_3x3``): ReLU,
depthwise 3x3, 1x1; :class:`PointwiseSum` a preprocessing 1x1 convolution over the
rectified parts of a cell's input, or the head's nine taps over the last cell's nodes. Each is
one pass of the fused inference kernel (``kernels/fused_pointwise.c``) forward and one C pass
per input backward (``kernels/depthwise_grad.c``, ``kernels/pointwise_grad.c``), and neither
keeps a rectified or intermediate image for its backward: in NasN's training step these were
images written, saved and read again, on a CPU where the step is bound by memory traffic, not
arithmetic (``bench/train_step.py``, README "Performance"). The helpers return ``None`` where
the kernels are missing or do not take the tensors, and :mod:`backend.models.training_plan`
then runs the same function with oneDNN convolutions.
"""

from __future__ import annotations

import torch
from torch import nn

from .fast_parts import pad_columns
from .kernels import MAX_CPAD, MAX_K, depthwise_taps, fused_pointwise
from .kernels.gradients import depthwise_grad, pointwise_grad


def _kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 ``weight`` (O, K, 1, 1) as the fused kernel reads it: ``(K, cpad)``."""
    return pad_columns(weight.detach()[:, :, 0, 0].t())


class RectifiedSeparable(torch.autograd.Function):
    """``into + conv1x1(depthwise3x3(relu(x)))`` (``into`` optional): a ``dil_*_conv_3x3``, or
    half a ``sep_conv_3x3``, in one pass of the fused kernel (``kernels/fused_pointwise.c``, per
    sample) with neither the ReLU's nor the depthwise convolution's output kept; the backward
    is one pass of ``dwg_separable_backward``, which recomputes the depthwise output row by row."""

    @staticmethod
    def forward(ctx, into, x, depthwise_weight, pointwise_weight, dilation):
        kernel, o = fused_pointwise(), pointwise_weight.shape[0]
        weight = _kernel_matrix(pointwise_weight)
        taps = depthwise_taps(depthwise_weight)
        y = torch.empty(x.shape[0], o, *x.shape[2:], memory_format=torch.channels_last)
        for b in range(x.shape[0]):
            kernel.run([(x[b:b + 1], True, taps, ((3, 3), tuple(dilation)))], weight, [(y[b:b + 1], 0, False)],
                       adds=[] if into is None else [into[b:b + 1]])
        ctx.save_for_backward(x, depthwise_weight, pointwise_weight)
        ctx.dilation, ctx.into = tuple(dilation), into is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, depthwise_weight, pointwise_weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x, grad_dw, grad_pw = depthwise_grad().separable_backward(
            x, grad, depthwise_weight, pointwise_weight, ctx.dilation)
        return grad if ctx.into else None, grad_x, grad_dw, grad_pw, None


def rectified_separable(module: nn.Module, t: torch.Tensor, into: torch.Tensor | None) -> torch.Tensor | None:
    """:class:`RectifiedSeparable` of a ``DilConv`` (ReLU, depthwise 3x3, 1x1) where its
    kernels take ``t`` (dense channels-last float32 on the CPU, a multiple of 16 channels,
    ``into`` of the same layout), else ``None``."""
    conv, point = module[1], module[2]
    dw_lib = depthwise_grad()  # its separable backward is the whole backward pass
    if (fused_pointwise() is None or dw_lib is None or conv.kernel_size != (3, 3)
            or point.weight.shape[0] > MAX_CPAD or t.shape[1] > MAX_K
            or not dw_lib.supports_backward(t, t, conv.weight, conv.dilation)
            or (into is not None and not (into.shape == t.shape and into.dtype == t.dtype
                                          and into.is_contiguous(memory_format=torch.channels_last)))):
        return None
    return RectifiedSeparable.apply(into, t, conv.weight, point.weight, conv.dilation)


class PointwiseSum(torch.autograd.Function):
    """``conv2d(cat(parts), weight)`` for a 1x1 ``weight``, each part read through a ReLU when
    ``rectify``: a preprocessing convolution over a cell's rectified inputs, or (``planes``) the
    head's nine taps over the last cell's raw nodes, written as channel planes (contiguous), as
    :func:`~backend.models.fast_parts.shifted_sum` reads them. Forward one pass of the fused
    kernel per sample (the ReLU applied as it reads); backward one ``pointwise_grad.c`` pass per
    part (the ReLU's backward folded in); no rectified image and no layout copy is kept."""

    @staticmethod
    def forward(ctx, weight, rectify, planes, *parts):
        matrix = _kernel_matrix(weight)
        shape = (parts[0].shape[0], weight.shape[0], *parts[0].shape[2:])
        y = torch.empty(shape) if planes else torch.empty(shape, memory_format=torch.channels_last)
        kernel = fused_pointwise()
        for b in range(y.shape[0]):
            kernel.run([(p[b:b + 1], rectify, None, None) for p in parts], matrix, [(y[b:b + 1], 0, False)])
        ctx.save_for_backward(weight, *parts)
        ctx.rectify = rectify
        return y

    @staticmethod
    def backward(ctx, grad):
        weight, *parts = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        lib, grads, pieces, offset = pointwise_grad(), [], [], 0
        for part in parts:
            width = part.shape[1]
            grad_part, grad_w = lib.backward(part, grad, weight[:, offset:offset + width], mask=ctx.rectify)
            grads.append(grad_part)
            pieces.append(grad_w)
            offset += width
        return (torch.cat(pieces, 1), None, None, *grads)


def pointwise_sum(parts: list[torch.Tensor], weight: torch.Tensor, rectify: bool = True,
                  planes: bool = False) -> torch.Tensor | None:
    """:class:`PointwiseSum` where the kernels take these tensors, else ``None``."""
    lib = pointwise_grad()
    if (fused_pointwise() is None or lib is None or weight.shape[1] > MAX_K or weight.shape[0] > MAX_CPAD
            or weight.dtype != torch.float32 or weight.shape[1] != sum(p.shape[1] for p in parts)):
        return None
    first = parts[0]
    if not all(p.dtype == torch.float32 and p.device.type == "cpu" and p.shape[0] == first.shape[0]
               and p.shape[2:] == first.shape[2:] and p.is_contiguous(memory_format=torch.channels_last)
               for p in parts):
        return None
    return PointwiseSum.apply(weight, rectify, planes, *parts)
