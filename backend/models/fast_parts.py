"""The oneDNN building blocks of NasN's fast plan (:mod:`backend.models.fast`).

:func:`fused_conv` is one oneDNN call with fused post-ops (``into += conv(x)``, a ReLU) on
float32 CPU tensors, separate calls elsewhere; :class:`ConvChain` is a cell operation as its
convolutions; the rest re-slice weights for the plan's per-node 1x1 convolutions and the head's
shifted taps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:  # oneDNN convolutions with fused post-ops, as used by torch.compile's CPU backend
    _CONV_POINTWISE = torch.ops.mkldnn._convolution_pointwise.default
    _CONV_POINTWISE_INPLACE = torch.ops.mkldnn._convolution_pointwise_
    _FUSED = torch.backends.mkldnn.is_available()
except (AttributeError, RuntimeError):
    _FUSED = False


def fused_conv(x: torch.Tensor, conv: nn.Conv2d, *, relu: bool = False,
          into: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)``, or ``into + conv(x)`` written into ``into`` (returned), then optionally a
    ReLU. One oneDNN call on float32 CPU tensors, else separate calls."""
    return fused_conv_weight(x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups,
                             relu=relu, into=into)


def fused_conv_weight(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                      padding=(0, 0), stride=(1, 1), dilation=(1, 1), groups: int = 1, *, relu: bool = False,
                      into: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`fused_conv` for a bare weight (``conv2d(x, weight, bias, ...)``). oneDNN is called
    directly, also where PyTorch's dispatcher would not choose it (a 1x1 kernel, batch < 16 and
    one thread: a GEMM path 1.2x slower here, ``bench/train_step.py --threads 1``, session 15)."""
    if _FUSED and x.device.type == "cpu" and x.dtype == torch.float32:
        args = (weight.contiguous(), bias, list(padding), list(stride), list(dilation), groups)
        unary = ("relu", [None], "") if relu else (None, [], None)
        if into is not None:
            return _CONV_POINTWISE_INPLACE.binary(into, x, *args, "add", 1.0, *unary)
        return _CONV_POINTWISE(x, *args, *(unary if relu else ("none", [], None)))
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if into is not None:
        y = into.add_(y)
    return y.relu_() if relu else y


class ConvChain(nn.Module):
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
            x = fused_conv(x, conv, relu=relu)
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


def tap_major(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 kernel ``(out, in, 3, 3)`` as nine 1x1 kernels stacked tap-major ``(9 * out, in, 1, 1)``."""
    return weight.permute(2, 3, 0, 1).reshape(-1, weight.shape[1], 1, 1)


def frozen_1x1(weight: torch.Tensor) -> nn.Conv2d:
    """A bias-free 1x1 convolution holding a dense copy of ``weight`` (out, in, 1, 1)."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=False)
    conv.weight = nn.Parameter(weight.detach().clone().contiguous(), requires_grad=False)
    return conv


def shifted_sum(taps: torch.Tensor, out_channels: int) -> torch.Tensor:
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


def pad_columns(weight: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """``weight`` (K, N) with zero columns up to a multiple of ``multiple``, dense."""
    pad = -weight.shape[1] % multiple
    return torch.cat([weight, weight.new_zeros(weight.shape[0], pad)], 1).contiguous() if pad else weight.contiguous()
