"""The training plan's C passes (``depthwise_grad.c``, ``pointwise_grad.c``), loaded as
:mod:`backend.models.kernels` builds and loads its sources; ``None`` where they cannot be
built, and the training plan then asks oneDNN for the same results."""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from . import GRAD_SOURCE, POINTWISE_GRAD_SOURCE, KernelError, _entry, _load, _mode, depthwise_taps

ABI = 4  # depthwise_grad.c's dwg_abi_version()


class DepthwiseGrad:
    """The loaded ``depthwise_grad.c``: a depthwise convolution's taps' gradient (any odd size),
    both its gradients in one pass (3x3), and the gradients of ReLU, depthwise 3x3 and 1x1 in one."""

    def __init__(self, path: Path):
        self._weight = _entry(path, "dwg", ABI, "dwg_weight", [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 9)
        self._backward = _entry(path, "dwg", ABI, "dwg_backward", [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 8)
        self._separable = _entry(path, "dwg", ABI, "dwg_separable_backward",
                                 [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 8)
        self.path = path

    @staticmethod
    def supports(x: torch.Tensor, grad: torch.Tensor, kernel: tuple[int, int], dilation: tuple[int, int]) -> bool:
        """Whether :meth:`weight_grad` takes these tensors (dense channels-last float32 on the
        CPU, equal shapes, odd kernel sizes, dilations >= 1)."""
        return (x.dtype == grad.dtype == torch.float32 and x.device.type == grad.device.type == "cpu"
                and x.dim() == 4 and x.shape == grad.shape and 1 <= x.shape[1] <= 1024
                and x.is_contiguous(memory_format=torch.channels_last)
                and grad.is_contiguous(memory_format=torch.channels_last)
                and all(k % 2 == 1 for k in kernel) and kernel[0] * kernel[1] <= 81 and min(dilation) >= 1)

    def weight_grad(self, x: torch.Tensor, grad: torch.Tensor, kernel: tuple[int, int],
                    dilation: tuple[int, int]) -> torch.Tensor:
        """``d loss / d weight`` ``(C, 1, kh, kw)`` float32 of ``conv2d(x, weight, groups=C,
        dilation, padding="same")`` given ``grad = d loss / d output`` (both ``(N, C, H, W)``)."""
        if not self.supports(x, grad, kernel, dilation):
            raise KernelError(f"depthwise weight gradient: unsupported tensors {tuple(x.shape)} {x.dtype} / "
                              f"{tuple(grad.shape)} {grad.dtype}, kernel {kernel}, dilation {dilation}")
        n, c, h, w = x.shape
        (kh, kw), (dh, dw) = kernel, dilation
        out = torch.empty(kh * kw, c, dtype=torch.float64)
        rc = self._weight(x.data_ptr(), grad.data_ptr(), out.data_ptr(), n, h, w, c, kh, kw, dh, dw,
                          torch.get_num_threads())
        if rc != 0:
            raise KernelError(f"depthwise_grad refused its arguments (code {rc})")
        return out.t().reshape(c, 1, kh, kw).to(torch.float32)

    def supports_backward(self, x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor,
                          dilation: tuple[int, int]) -> bool:
        """Whether :meth:`backward` takes these: as :meth:`supports`, 3x3 taps, a multiple of 16 channels."""
        return (tuple(weight.shape) == (x.shape[1], 1, 3, 3) and x.shape[1] % 16 == 0
                and self.supports(x, grad, (3, 3), dilation))

    def backward(self, x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor,
                 dilation: tuple[int, int], relu: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d loss / d x, d loss / d weight)`` of a 3x3 ``conv2d(x, weight, groups=C,
        dilation, padding="same")`` given ``grad``, in one pass (``dwg_backward``); with
        ``relu``, of ``conv2d(relu(x), ...)`` (the first gradient with respect to ``x``)."""
        if not self.supports_backward(x, grad, weight, dilation):
            raise KernelError(f"depthwise backward: unsupported tensors {tuple(x.shape)} {x.dtype} / "
                              f"{tuple(grad.shape)} / {tuple(weight.shape)}, dilation {dilation}")
        n, c, h, w = x.shape
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
        out = torch.empty(9, c, dtype=torch.float64)
        taps = depthwise_taps(weight)  # held until the call returns
        self._call(self._backward, x.data_ptr(), grad.data_ptr(), taps.data_ptr(), grad_x.data_ptr(),
                   out.data_ptr(), n, h, w, c, dilation[0], dilation[1], int(relu))
        return grad_x, out.t().reshape(c, 1, 3, 3).to(torch.float32)

    def separable_backward(self, x: torch.Tensor, grad: torch.Tensor, depthwise_weight: torch.Tensor,
                           pointwise_weight: torch.Tensor, dilation: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """``(d loss / d x, d loss / d depthwise_weight, d loss / d pointwise_weight)`` of
        ``conv2d(conv2d(relu(x), depthwise_weight, groups=C, dilation, padding="same"),
        pointwise_weight)`` given ``grad`` (N, O, H, W), in one pass without intermediate images
        (``dwg_separable_backward``)."""
        n, c, h, w = x.shape
        o = pointwise_weight.shape[0]
        if not (self.supports_backward(x, x, depthwise_weight, dilation) and pointwise_weight.shape == (o, c, 1, 1)
                and grad.shape == (n, o, h, w) and grad.dtype == torch.float32 and o <= 1024
                and grad.is_contiguous(memory_format=torch.channels_last)):
            raise KernelError(f"separable backward: unsupported tensors {tuple(x.shape)} / {tuple(grad.shape)} / "
                              f"{tuple(depthwise_weight.shape)} / {tuple(pointwise_weight.shape)}")
        taps, wp = depthwise_taps(depthwise_weight), pointwise_weight.detach().reshape(o, c).contiguous()
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
        out_dw, out_pw = torch.empty(9, c, dtype=torch.float64), torch.empty(o, c, dtype=torch.float64)
        self._call(self._separable, x.data_ptr(), grad.data_ptr(), taps.data_ptr(), wp.data_ptr(), grad_x.data_ptr(),
                   out_dw.data_ptr(), out_pw.data_ptr(), n, h, w, c, o, dilation[0], dilation[1])
        return (grad_x, out_dw.t().reshape(c, 1, 3, 3).to(torch.float32),
                out_pw.to(torch.float32).view(o, c, 1, 1))

    @staticmethod
    def _call(function, *args) -> None:
        rc = function(*args, torch.get_num_threads())
        if rc != 0:
            raise KernelError(f"depthwise_grad refused its arguments (code {rc})")


def depthwise_grad() -> DepthwiseGrad | None:
    """The compiled depthwise weight-gradient kernel, or ``None`` (``NASCSMRI_KERNELS=0``, no
    compiler, or a failed build: the training plan then asks oneDNN for the same gradient).
    Plain C that the compiler vectorises, so it is used on every CPU where it builds."""
    if _mode() == "0":
        return None
    return _load("depthwise_grad", GRAD_SOURCE, DepthwiseGrad, "the training plan uses oneDNN's gradient")


class PointwiseGrad:
    """The loaded ``pointwise_grad.c``: both gradients of a 1x1 convolution in one pass."""

    def __init__(self, path: Path):
        self._backward = _entry(path, "pwg", 2, "pwg_backward", [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 5)
        self.path = path

    @staticmethod
    def supports(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether :meth:`backward` takes these tensors: ``x`` (N, C, H, W) and ``grad``
        (N, O, H, W) dense channels-last float32 on the CPU, ``weight`` (O, C, 1, 1)."""
        return (x.dtype == grad.dtype == weight.dtype == torch.float32
                and x.device.type == grad.device.type == weight.device.type == "cpu"
                and x.dim() == grad.dim() == 4 and weight.shape == (grad.shape[1], x.shape[1], 1, 1)
                and x.shape[0] == grad.shape[0] and x.shape[2:] == grad.shape[2:]
                and 1 <= x.shape[1] <= 1024 and 1 <= grad.shape[1] <= 1024
                and x.is_contiguous(memory_format=torch.channels_last)
                and grad.is_contiguous(memory_format=torch.channels_last))

    def backward(self, x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor,
                 mask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d loss / d x, d loss / d weight)`` of ``conv2d(x, weight)`` given ``grad = d loss /
        d output``; with ``mask``, of ``conv2d(relu(x), weight)``, the first gradient with respect
        to ``x`` (zero where ``x`` is not positive); ``x`` may be ``relu(t)`` itself."""
        if not self.supports(x, grad, weight):
            raise KernelError(f"1x1 convolution gradient: unsupported tensors {tuple(x.shape)} {x.dtype} / "
                              f"{tuple(grad.shape)} {grad.dtype} / {tuple(weight.shape)}")
        n, c, h, w = x.shape
        o = grad.shape[1]
        weight = weight.detach().reshape(o, c).contiguous()
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
        grad_w = torch.empty(o, c, dtype=torch.float64)
        rc = self._backward(x.data_ptr(), grad.data_ptr(), weight.data_ptr(), grad_x.data_ptr(), grad_w.data_ptr(),
                            n * h * w, c, o, int(mask), torch.get_num_threads())
        if rc != 0:
            raise KernelError(f"pointwise_grad refused its arguments (code {rc})")
        return grad_x, grad_w.to(torch.float32).view(o, c, 1, 1)


def pointwise_grad() -> PointwiseGrad | None:
    """The compiled 1x1 backward kernel, or ``None`` (``NASCSMRI_KERNELS=0``, no compiler, or a
    failed build: the training plan then asks oneDNN for the same gradients)."""
    if _mode() == "0":
        return None
    return _load("pointwise_grad", POINTWISE_GRAD_SOURCE, PointwiseGrad, "the training plan uses oneDNN's gradients")
