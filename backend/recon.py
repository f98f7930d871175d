"""Reconstruct a whole volume: mask, zero-filled, TV or a trained network, metrics.

:func:`reconstruct_volume` is a generator of :class:`~backend.progress.Progress` events whose
return value is a :class:`VolumeResult`; :func:`backend.progress.run` drives such a generator
with a callback. The CLI shows the events as a progress bar and the napari widgets as a progress
widget (same code). Devices are resolved in :mod:`backend.devices`, mask files read in
:mod:`backend.masks`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator, Iterable

import numpy as np
import torch

from . import config as cfg
from .errors import InputError
from .fft import channels_to_complex, ifft2c_np
from .devices import resolve_device
from .io import Volume, VolumeInfo, open_volume
from .volume import COIL_NOTICE, RSS_NOTICE
from .mask_files import load_mask_file
from .masks import Mask, sampling_grid, seed_from_filename
from .masks_2d import make_sampling
from .metrics import VolumeMetrics, evaluate_volume
from .progress import Progress
from .recon_coils import coil_fallback, maps_fallback, reconstruct_multicoil, uses_coils
from .transforms import center_crop, network_inputs
from .tv import tv_reconstruct


@dataclass
class VolumeResult:
    """Everything a reconstruction produced for one volume (magnitudes on the output grid)."""

    info: VolumeInfo
    model: str
    reconstruction: np.ndarray  # float32 (slices, h, w)
    zero_filled: np.ndarray  # float32 (slices, h, w)
    reference: np.ndarray | None  # float32 (slices, h, w)
    mask: Mask
    seed: object
    metrics: VolumeMetrics | None = None
    zero_filled_metrics: VolumeMetrics | None = None
    notices: list[str] = field(default_factory=list)


#: Largest nominal acceleration accepted (far beyond any grid: such a mask samples nothing).
MAX_ACCELERATION = 1e6


def volume_mask(info: VolumeInfo, config: cfg.ReconConfig, file_mask: np.ndarray | None = None) -> tuple[Mask, object]:
    """The mask used for a whole volume and the seed it came from.

    Test files bring their own mask; otherwise ``config.mask_lines`` or ``config.mask_file`` (a
    column mask or a 2-D pattern, :mod:`backend.mask_files`) if given, else a mask of
    ``config.mask`` type with ``config.seed`` (default: fastMRI's per-volume seed from the name).
    """
    W = info.grid[1]
    if file_mask is not None:
        n = int(file_mask.sum())
        return Mask(file_mask.astype(bool), 0, W / max(n, 1)), None
    if config.mask_lines is not None or config.mask_file:
        if config.mask_lines is not None:  # columns, or a 2-D pattern as rows (the GUI's edits)
            mask = np.asarray(config.mask_lines, dtype=bool)
            if mask.shape[-1] != W or (mask.ndim == 2 and mask.shape != tuple(info.grid)):
                size = "x".join(map(str, mask.shape)) if mask.ndim == 2 else f"{mask.size} columns"
                grid = "x".join(map(str, info.grid)) if mask.ndim == 2 else f"{W}"
                raise InputError(info.path, f"the mask has {size}, the data has {grid}")
        else:
            mask = load_mask_file(config.mask_file, W, info.grid)
        if mask.ndim == 2:  # a 2-D pattern over the k-space grid
            from .coils import calibration_lines

            return Mask(mask.any(0), calibration_lines(mask), mask.size / int(mask.sum()), mask), None
        return Mask(mask, 0, W / int(mask.sum())), None
    seed = config.seed if config.seed is not None else seed_from_filename(info.path)
    try:
        acc = float(config.acceleration)
    except (TypeError, ValueError):
        acc = math.nan
    if not (math.isfinite(acc) and 1 <= acc <= MAX_ACCELERATION):
        raise InputError(None, f"acceleration must be a number from 1 to {MAX_ACCELERATION:g}, got {config.acceleration!r}")
    try:
        mask = make_sampling(config.mask, info.grid, acc, config.center_fraction, seed=seed)
    except ValueError as err:  # centre fraction out of range, unknown mask type
        raise InputError(None, str(err)) from None
    if not mask.lines.any():
        raise InputError(None, f"the {config.mask} mask at {acc:g}x samples no k-space line of "
                               f"the {W} columns (lower the acceleration or raise the centre fraction)")
    return mask, seed


# -- reconstructors: complex k-space batch (B, H, W) + mask (W,) or 2-D pattern (H, W)
# (:attr:`backend.masks.Mask.sampling`) -> complex images (B, H, W) ------------------------------
Reconstructor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def zero_filled_reconstructor(config: cfg.ReconConfig) -> Reconstructor:
    def recon(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return ifft2c_np(kspace * sampling_grid(mask, kspace.shape[-2:]))

    return recon


def tv_reconstructor(config: cfg.ReconConfig) -> Reconstructor:
    def recon(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.stack(
            [tv_reconstruct(k, mask, config.tv_weight, config.tv_iterations, config.tv_backend) for k in kspace]
        )

    return recon


class NetworkReconstructor:
    """Run a cascade/U-net model in the normalised domain (``6 / max|zero-filled|`` per slice).

    The model sees the normalised zero-filled image as 2 channels, the measured k-space in the
    same scale and the mask; the output is scaled back to the input's intensities.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, execution: str = "auto"):
        from .models.inference import prepare_for_inference, resolve_execution

        self.model = prepare_for_inference(model.to(device), execution, device)
        self.device = device
        # On the CPU one slice per call is fastest: in exploratory runs at 320x320 a batch of 4
        # cost 1.55x (NasN) and 1.66x (DCCNN-3) the time per slice of single slices (its
        # activations outgrow the allocator's reuse window and the cache); the reference path
        # keeps the caller's batches.
        self.slices_per_call = 1 if device.type == "cpu" and resolve_execution(execution) == "fast" else None

    @torch.inference_mode()
    def __call__(self, kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
        k = torch.as_tensor(kspace, dtype=torch.complex64, device=self.device)
        m = torch.as_tensor(np.asarray(mask), dtype=torch.float32, device=self.device)
        if m.dim() == 2:  # a 2-D pattern (H, W): one per slice, (1, H, W) for the DC layers
            m = m[None]
        x, k0, scale = network_inputs(k, m)
        step = self.slices_per_call or k.shape[0]
        per_slice = (-1,) if m.dim() == 1 else tuple(m.shape[1:])
        out = torch.cat([self.model(x[i:i + step], k0[i:i + step], m.expand(len(x[i:i + step]), *per_slice))
                         for i in range(0, k.shape[0], step)])
        return (channels_to_complex(out) / scale).cpu().numpy()

    @torch.inference_mode()
    def multicoil(self, kspace: np.ndarray, mask: np.ndarray, maps: np.ndarray) -> np.ndarray:
        """Coil k-space ``(B, C, H, W)``, a column mask ``(W,)`` or 2-D pattern ``(H, W)`` and
        sensitivities ``(B, C, H, W)`` -> complex images ``(B, H, W)`` (:mod:`backend.models.multicoil`)."""
        from .models.multicoil import run_multicoil
        from .transforms import multicoil_network_inputs

        k = torch.as_tensor(kspace, dtype=torch.complex64, device=self.device)
        s = torch.as_tensor(maps, dtype=torch.complex64, device=self.device)
        m = torch.as_tensor(mask, dtype=torch.float32, device=self.device)
        if m.dim() == 2:  # a 2-D pattern (H, W), the same for every slice: (1, H, W)
            m = m[None]
        x, k0, scale = multicoil_network_inputs(k, m, s)
        step = self.slices_per_call or k.shape[0]
        out = torch.cat([run_multicoil(self.model, x[i:i + step], k0[i:i + step], m, s[i:i + step])
                         for i in range(0, k.shape[0], step)])
        return (channels_to_complex(out) / scale).cpu().numpy()


def load_network(name: str, weights: str | os.PathLike | None = None) -> tuple[torch.nn.Module, Path]:
    """The trained network ``name`` from ``weights`` (default: the weights shipped with the
    package) and the file it came from; the file must hold that network."""
    from .models import load_model, shipped_weights

    path = Path(weights) if weights else shipped_weights(name)
    if not weights and not path.exists():
        raise InputError(None, f"no weights ship for {name!r}: pass --weights (see 'nascsmri train')")
    model, _ = load_model(path)
    if model.config.name != name:
        raise InputError(path, f"weights are for model {model.config.name!r}, not {name!r}")
    return model, path


def network_reconstructor(config: cfg.ReconConfig) -> Reconstructor:
    model, _ = load_network(config.model, config.weights)
    return NetworkReconstructor(model, resolve_device(config.device), config.execution)


RECONSTRUCTORS: dict[str, Callable[[cfg.ReconConfig], Reconstructor]] = {
    "zero-filled": zero_filled_reconstructor,
    "tv": tv_reconstructor,
}


def make_reconstructor(config: cfg.ReconConfig) -> Reconstructor:
    """The reconstructor for ``config.model`` (classical methods or a trained network)."""
    if config.model in RECONSTRUCTORS:
        return RECONSTRUCTORS[config.model](config)
    if config.model in cfg.network_model_names():
        return network_reconstructor(config)
    raise InputError(None, f"unknown model {config.model!r}; choose from {', '.join(cfg.model_choices())}")


def _batches(n: int, size: int) -> Iterable[range]:
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


def reconstruct_volume(
    source: str | os.PathLike | Volume,
    config: cfg.ReconConfig,
    reconstructor: Reconstructor | None = None,
) -> Generator[Progress, None, VolumeResult]:
    """Reconstruct every slice of ``source`` (a path or an open :class:`Volume`).

    Slices are read and processed ``config.batch_size`` at a time; only the magnitudes of the
    outputs are kept, so memory grows with the output volume, not the k-space.
    """
    volume = source if isinstance(source, Volume) else open_volume(source, crop=config.crop)
    try:
        info = volume.info
        notices = list(info.notices)
        if uses_coils(info.kind, config) and hasattr(volume, "coil_slice"):
            mask, seed = volume_mask(info, config)
            fallback = coil_fallback(config, mask.sampling) or maps_fallback(volume, config, mask.sampling)
            if fallback is None:
                if reconstructor is None and config.model in cfg.network_model_names():
                    reconstructor = make_reconstructor(config)
                parts = yield from reconstruct_multicoil(volume, config, mask, reconstructor)
                return _result(info, config, mask, seed, *parts)
            notices.append(fallback)
        if info.kind == "multicoil":
            notices = [n for n in notices if COIL_NOTICE not in n] + [RSS_NOTICE]
        recon = reconstructor or make_reconstructor(config)
        first = volume[0]
        mask, seed = volume_mask(info, config, first.file_mask)
        lines = mask.sampling.astype(np.float32)
        n = len(volume)
        out_shape = info.output_shape
        outputs = np.zeros((n,) + out_shape, dtype=np.float32)
        zfs = np.zeros_like(outputs)
        refs = np.zeros_like(outputs) if info.has_reference else None
        yield Progress(0, n, f"{config.model}: {os.path.basename(info.path)}")
        for batch in _batches(n, max(1, config.batch_size)):
            slices = [first if i == 0 else volume[i] for i in batch]
            kspace = np.stack([s.kspace for s in slices])
            images = recon(kspace, lines)
            zf = ifft2c_np(kspace * sampling_grid(lines, kspace.shape[-2:]))
            for j, i in enumerate(batch):
                outputs[i] = np.abs(center_crop(images[j], out_shape))
                zfs[i] = np.abs(center_crop(zf[j], out_shape))
                if refs is not None:
                    refs[i] = slices[j].reference
            yield Progress(batch.stop, n, f"{config.model}: slice {batch.stop}/{n}")
        return _result(info, config, mask, seed, outputs, zfs, refs, notices)
    finally:
        if not isinstance(source, Volume):
            volume.close()


def _result(info: VolumeInfo, config: cfg.ReconConfig, mask: Mask, seed, outputs: np.ndarray, zfs: np.ndarray,
            refs: np.ndarray | None, notices: list[str]) -> VolumeResult:
    result = VolumeResult(info, config.model, outputs, zfs, refs, mask, seed, notices=notices)
    if refs is not None:
        if not np.any(refs > 0):
            result.notices.append("the reference is all zero: metrics are not defined")
        else:
            result.metrics = evaluate_volume(refs, outputs)
            result.zero_filled_metrics = evaluate_volume(refs, zfs)
    return result


def check_finite_output(result: VolumeResult, config: cfg.ReconConfig) -> None:
    """Refuse to write a reconstruction holding NaN or Inf (non-finite weights, a solver that
    diverged): the one-line error names the weights (or the method), nothing is written."""
    if np.all(np.isfinite(result.reconstruction)):
        return
    where = None
    if config.model in cfg.network_model_names():
        from .models import shipped_weights

        where = config.weights or shipped_weights(config.model)
    raise InputError(where, f"the {config.model} reconstruction holds NaN or Inf values: nothing written")


def write_reconstruction(path: str | os.PathLike, result: VolumeResult, config: cfg.ReconConfig) -> None:
    """Write a fastMRI submission-style h5 (``reconstruction`` float32 (slices, h, w)) atomically."""
    from .files import atomic_h5

    check_finite_output(result, config)
    with atomic_h5(path) as f:
        f.create_dataset("reconstruction", data=result.reconstruction.astype(np.float32))
        f.attrs["model"] = result.model
        f.attrs["source"] = os.path.basename(result.info.path)
        f.attrs["mask_type"] = config.mask if result.info.kind != "test" else "file"
        f.attrs["acceleration"] = float(result.mask.acceleration)
        f.attrs["realised_acceleration"] = float(result.mask.realised_acceleration)
        f.attrs["mask_lines"] = result.mask.lines.astype(np.uint8)
        if result.mask.pattern is not None:
            f.create_dataset("mask_pattern", data=result.mask.pattern.astype(np.uint8), compression="gzip")
        if result.info.kind == "multicoil":
            coils = uses_coils(result.info.kind, config) and coil_fallback(config, result.mask.sampling) is None
            f.attrs["coils"] = "multi" if coils else "rss"
        if config.seed is not None:
            f.attrs["seed"] = int(config.seed)
