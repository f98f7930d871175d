"""Pieces shared by the search and the training loops: device set-up, one loss, validation."""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import LOSSES, ReconConfig
from ..recon import NetworkReconstructor, reconstruct_volume
from ..devices import resolve_device
from ..models.inference import tune_allocator
from ..progress import run
from .data import Batch
from .distributed import DistInfo, device_for, setup


def prepare_device(name: str) -> tuple[torch.device, DistInfo]:
    """Resolve the device and join torchrun's process group when there is one. On the CPU the
    allocator keeps freed activations (:func:`backend.models.inference.tune_allocator`): a
    NasN training step page-faulted through fresh ones and took ~10% longer without it
    (``bench/train_step.py``, session 14)."""
    device = resolve_device(name)
    if device.type == "cpu":
        tune_allocator()
    info = setup(device)
    return device_for(info, device), info


def adam(params, lr: float) -> torch.optim.Adam:
    """The training's Adam, in PyTorch's fused implementation (the same update; one kernel for
    all tensors instead of a few per tensor: NasN's 102 parameter tensors took 2.5 ms per step
    on the CPU, 0.5 ms fused, ``bench/train_step.py``, session 14)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; nothing on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    batch = batch.to(device)
    if channels_last:
        batch.x = batch.x.contiguous(memory_format=torch.channels_last)
    return batch


def l1_loss(model: torch.nn.Module, batch: Batch, device: torch.device, amp: bool) -> torch.Tensor:
    """The paper's loss: L1 between the output and the fully sampled 2-channel image."""
    return training_loss(model, batch, device, amp, "l1")




def ssim_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` of the magnitudes of 2-channel images ``(B, 2, H, W)``, averaged over the batch.

    SSIM as :func:`backend.metrics.ssim`: 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample
    covariances, the mean over the window positions inside the image; the data range is each
    target slice's maximum magnitude (the metric uses the volume's).
    """
    from ..metrics import SSIM_K1, SSIM_K2, SSIM_WINDOW

    def magnitude(t):
        return torch.sqrt(t[:, 0:1] ** 2 + t[:, 1:2] ** 2 + 1e-12)

    x, y = magnitude(target.float()), magnitude(out.float())
    n = SSIM_WINDOW ** 2
    cov = n / (n - 1)

    def mean(t):
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    ux, uy = mean(x), mean(y)
    vx, vy, vxy = cov * (mean(x * x) - ux * ux), cov * (mean(y * y) - uy * uy), cov * (mean(x * y) - ux * uy)
    data_range = x.flatten(1).amax(1).view(-1, 1, 1, 1)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return 1 - ssim.flatten(1).mean(1).mean()


def training_loss(model: torch.nn.Module, batch: Batch, device: torch.device, amp: bool, loss: str = "l1",
                  ssim_weight: float = 1.0) -> torch.Tensor:
    """``l1`` (the paper's), ``ssim`` (:func:`ssim_loss`) or ``l1+ssim`` = L1 + ``ssim_weight`` x
    (1 - SSIM), between the output and the fully sampled 2-channel image."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    with autocast(device, amp):
        out = model(batch.x, batch.k0, batch.mask) if batch.maps is None else \
            model(batch.x, batch.k0, batch.mask, batch.maps)
    out = out.float()
    if loss == "l1":
        return F.l1_loss(out, batch.target)
    if loss == "ssim":
        return ssim_loss(out, batch.target)
    return F.l1_loss(out, batch.target) + ssim_weight * ssim_loss(out, batch.target)


def validate(model: torch.nn.Module, files: Sequence[Path], accelerations: Sequence[float],
             device: torch.device, execution: str = "reference") -> dict[str, float]:
    """PSNR/SSIM on whole validation volumes with fixed per-volume masks (file-name seeds).

    Uses the same reconstruction path and metric code as ``nascsmri reconstruct`` (multi-coil
    files from their coils, with low-resolution maps: no BART per slice). Returns
    ``psnr_4x, ssim_4x, ...`` and their means over accelerations as ``psnr``/``ssim``.
    ``execution``: ``reference`` runs the training module as it is; ``fast`` (for a model that
    trains in channels_last on the CPU, which the fast plan then leaves as it is) runs NasN's
    inference plan, the same outputs to float32 rounding in a third of the time (the shipped
    sample's 4 validation volumes at 4x and 8x: 5.5-6.2 s against 16-22 s, session 19).
    """
    was_training = model.training
    recon = NetworkReconstructor(model, device, execution=execution)
    out: dict[str, float] = {}
    try:
        for acc in accelerations:
            config = ReconConfig(acceleration=acc, coil_maps="lowres")
            rows = [run(reconstruct_volume(f, config, recon)).metrics for f in files]
            out[f"psnr_{acc:g}x"] = float(np.mean([r.psnr for r in rows]))
            out[f"ssim_{acc:g}x"] = float(np.mean([r.ssim for r in rows]))
    finally:
        model.train(was_training)
    out["psnr"] = float(np.mean([out[f"psnr_{a:g}x"] for a in accelerations]))
    out["ssim"] = float(np.mean([out[f"ssim_{a:g}x"] for a in accelerations]))
    return out


def config_dict(config) -> dict:
    return asdict(config)


@contextlib.contextmanager
def opened_run(kind: str, config, out: str, resume: bool, read_data):
    """What a search or a training runs inside: ``(run folder, device, dist, data)``.

    The device (and ``torch.distributed`` under torchrun) is set up, ``read_data()`` checks and
    indexes the data *before* the run folder is made (a bad ``--data`` leaves nothing behind),
    the folder records how the job ends (:meth:`RunFolder.recording`), and the process group is
    torn down whatever happens."""
    from .distributed import teardown
    from .runs import RunFolder

    device, dist = prepare_device(config.device)
    try:
        data = read_data()
        run = RunFolder(out, kind, config_dict(config), resume, writer=dist.is_main,
                        defaults=config_dict(type(config)()))
        with run.recording():
            yield run, device, dist, data
    finally:
        teardown(dist)
