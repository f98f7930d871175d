"""Which torch device a command runs on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import torch

from .errors import InputError, check_device

DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def parse_device(device) -> str:
    """``device`` if it names a device this tool runs on (``auto``, ``cpu``, ``cuda``, ``cuda:N``),
    else :class:`InputError`; availability is checked by :func:`resolve_device`."""
    check_device(device)
    return device


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA request is an error."""
    device = parse_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "CUDA was requested but no CUDA device is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(None, f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return dev
