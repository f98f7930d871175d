"""Pieces shared by the search and the training loops: device set-up, one loss, validation."""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ReconConfig
from ..recon import NetworkReconstructor, reconstruct_volume, resolve_device, run
from .data import Batch
from .distributed import DistInfo, device_for, setup


def prepare_device(name: str) -> tuple[torch.device, DistInfo]:
    """Resolve the device and join torchrun's process group when there is one."""
    device = resolve_device(name)
    info = setup(device)
    return device_for(info, device), info


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
    with autocast(device, amp):
        out = model(batch.x, batch.k0, batch.mask)
    return F.l1_loss(out.float(), batch.target)


def validate(model: torch.nn.Module, files: Sequence[Path], accelerations: Sequence[float],
             device: torch.device) -> dict[str, float]:
    """PSNR/SSIM on whole validation volumes with fixed per-volume masks (file-name seeds).

    Uses the same reconstruction path and metric code as ``nascsmri reconstruct``. Returns
    ``psnr_4x, ssim_4x, ...`` and their means over accelerations as ``psnr``/``ssim``.
    """
    was_training = model.training
    recon = NetworkReconstructor(model, device, execution="reference")  # leaves the training module as it is
    out: dict[str, float] = {}
    try:
        for acc in accelerations:
            config = ReconConfig(acceleration=acc)
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
