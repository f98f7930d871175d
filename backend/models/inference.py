"""Which module runs a trained model for inference: :func:`prepare_for_inference`.

``--execution reference`` runs the training module as is (contiguous, float32). ``fast`` (the
default through ``auto``) runs the same weights faster with the same outputs: on a CPU,
:func:`tune_allocator`, channels_last, and NasN cascades re-planned by
:class:`backend.models.fast.FastNasNModule` (its C kernel where it compiled; a module whose
operations cannot be planned runs as trained, with one warning); on CUDA, channels_last and bf16
autocast inside the reconstruction modules (the data-consistency FFTs stay float32).
Measurements: ``bench/inference_speed.py``, ``bench/head_to_head.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from .cascade import ResidualModule, UnrolledCascade
from .fast import FastCascade, FastNasNModule
from .nasn import CellStack

EXECUTIONS = ("auto", "reference", "fast")
"""``reference``: the training module as is (contiguous, float32); ``fast``: the fast plans;
``auto``: ``fast`` (on CUDA: channels_last + bf16 autocast)."""


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
