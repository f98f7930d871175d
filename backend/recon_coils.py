"""Multi-coil reconstruction of a volume (issue #21): coil k-space, sensitivity maps, SENSE DC.

:func:`reconstruct_multicoil` is what :func:`backend.recon.reconstruct_volume` runs for a
multi-coil file unless ``ReconConfig.coils`` is ``rss``: every slice's coil k-space on the output
grid (coil images cropped in image space, :meth:`backend.io.FastMRIVolume.coil_slice`), the
volume's mask on every coil, sensitivity maps per slice calibrated on the mask's fully sampled
centre (:func:`backend.coils.coil_maps`), and then

* ``zero-filled``: root-sum-of-squares of the zero-filled coil images (fastMRI's convention);
* ``tv``: BART ``pics`` with the maps (:func:`backend.coils.tv_multicoil`);
* a network: :meth:`backend.recon.NetworkReconstructor.multicoil` -- the coil-combined
  zero-filled input and SENSE data consistency in every cascade (:mod:`backend.models.multicoil`).

TV and the networks estimate one combined image ``m``; what they return is
:func:`rss_output`: the root-sum-of-squares of the coil images ``S_c m`` with each coil's
measured lines put back (``M k_c + (1 - M) F S_c m``), the same kind of image as fastMRI's
``reconstruction_rss`` reference and as the zero-filled one. Against the SENSE combination
``|m|`` it was measured (session 17, ``bench/multicoil.py`` with 8 and 2 coils, shipped NasN
and TV, 24 slices at 4x and 8x): PSNR -0.03 to +0.45 dB, SSIM +0.004 to +0.038, the gain lying
in the background, where ``|m|`` has no noise floor and an RSS reference has one.

Metrics are taken against the file's reference (fastMRI multi-coil: ``reconstruction_rss``).
"""

from __future__ import annotations

import os
from typing import Callable, Generator

import numpy as np

from . import config as cfg
from .coils import calibration_lines, coil_maps, resolve_map_method, tv_multicoil
from .fft import fft2c_np, ifft2c_np
from .errors import InputError
from .masks import Mask, sampling_grid
from .progress import Progress
from .volume import Volume

#: ``(coil k-space (B, C, H, W), column mask (W,) or 2-D pattern (H, W), maps (B, C, H, W)) ->
#: complex images (B, H, W)``
MultiCoilReconstructor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def rss(coil_images: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over the coil axis (-3) of ``(..., C, H, W)``."""
    return np.sqrt((np.abs(coil_images) ** 2).sum(-3))


def slice_maps(coil_kspace: np.ndarray, lines: np.ndarray, method: str = "auto") -> np.ndarray:
    """The sensitivity maps a reconstruction estimates for one slice's coil k-space ``(C, h, w)``
    under the column mask or 2-D pattern ``lines`` (:attr:`backend.masks.Mask.sampling`):
    calibrated on the undersampled data's fully sampled centre (columns, or the centre square)."""
    m = np.asarray(lines, dtype=np.float32)
    return coil_maps(coil_kspace * sampling_grid(m, coil_kspace.shape[-2:])[None], method=method,
                     calibration=calibration_lines(m > 0), square=m.ndim == 2)


def uses_coils(kind: str, config: cfg.ReconConfig) -> bool:
    """True when a volume of ``kind`` is reconstructed from its coils under ``config``."""
    return kind == "multicoil" and config.coils != "rss"


def coil_fallback(config: cfg.ReconConfig, lines: np.ndarray) -> str | None:
    """With ``coils="auto"``, the notice that the fully sampled centre of the mask (columns, or
    a 2-D pattern's centre square) is too narrow to
    calibrate sensitivity maps (fewer than :data:`backend.coils.MIN_ESPIRIT_LINES` lines: the
    root-sum-of-squares path is taken then); None when the coils are used."""
    from .coils import MIN_ESPIRIT_LINES

    n = calibration_lines(lines)
    if config.coils == "auto" and n < MIN_ESPIRIT_LINES:
        return (f"only {n} fully sampled centre line(s): too few to calibrate coil maps, so the coils are "
                "combined by root-sum-of-squares (--coils multi uses them anyway)")
    return None


def rss_output(combined: np.ndarray, kspace: np.ndarray, lines: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """A combined estimate ``(B, H, W)`` as the root-sum-of-squares image fastMRI's references
    are: the coil images ``S_c m`` (``maps (B, C, H, W)``) with the measured lines of the coil
    k-space ``(B, C, H, W)`` under ``lines`` (column mask or 2-D pattern) put back, then RSS over
    the coils; complex64 (zero phase) like the other reconstructors' outputs."""
    grid = sampling_grid(np.asarray(lines, dtype=np.float32), kspace.shape[-2:])[None, None]
    estimate = fft2c_np(maps * np.asarray(combined)[:, None])
    return rss(ifft2c_np(grid * kspace + (1 - grid) * estimate)).astype(np.complex64)


#: ``--coils auto`` takes the root-sum-of-squares path when the ESPIRiT maps of a checked slice
#: leave more than this share of its calibration images' energy outside their span
#: (:func:`map_residual`). Measured in session 17 on 2- and 8-coil cases (4 files, 4x and 8x):
#: at most 0.033 on every slice of the volumes where the coil path beat the RSS path, 0.061 to
#: 0.27 on those where it lost by 8-17 dB (maps with holes over the object, 2 coils, 6-13
#: calibration lines; one volume mixed 0.022-0.104).
MAX_MAP_RESIDUAL = 0.05
#: Slices whose maps are checked: those at 25, 50 and 75% of the volume (all of a shorter one).
MAP_CHECK_POSITIONS = (0.25, 0.5, 0.75)


def map_residual(coil_kspace: np.ndarray, lines: np.ndarray, maps: np.ndarray) -> float:
    """``sum |x - S S^H x|^2 / sum |x|^2`` for the coil images ``x`` of the mask's fully sampled
    centre (Hann-windowed, as :func:`backend.coils.lowres_maps` makes them) of one slice's coil
    k-space ``(C, h, w)``: the share of the measured calibration data that the maps ``S`` cannot
    represent (0 for maps made from these images, 1 for empty maps)."""
    from .coils import _hann_centre

    m = np.asarray(lines) > 0
    n = calibration_lines(m)
    window = _hann_centre(coil_kspace.shape[-1], n)[None, :]
    if m.ndim == 2:
        window = _hann_centre(coil_kspace.shape[-2], n)[:, None] * window
    x = ifft2c_np(np.asarray(coil_kspace) * window[None])
    outside = x - maps * (np.conj(maps) * x).sum(0)[None]
    return float((np.abs(outside) ** 2).sum() / max(float((np.abs(x) ** 2).sum()), 1e-30))


_MAPS_CHECKED: dict = {}  # maps_fallback's answers by file, mask and map method (the GUI asks twice a job)


def maps_fallback(volume: Volume, config: cfg.ReconConfig, lines: np.ndarray) -> str | None:
    """With ``coils="auto"`` and ESPIRiT maps, the notice that the maps of a checked slice
    (:data:`MAP_CHECK_POSITIONS`) fit its calibration data poorly (:data:`MAX_MAP_RESIDUAL`):
    the root-sum-of-squares path is taken then; None when the coils are used. The answer is
    kept per file (path, size, modification time), mask and map method, so that a slice preview
    and the volume reconstruction after it calibrate the checked slices once."""
    m = np.asarray(lines, dtype=np.float32)
    if config.coils != "auto" or resolve_map_method(config.coil_maps, calibration_lines(m > 0)) != "espirit":
        return None
    try:
        stat = os.stat(volume.info.path)
        key = (os.path.realpath(volume.info.path), stat.st_size, stat.st_mtime_ns, m.shape, m.tobytes(), config.coil_maps)
    except (OSError, TypeError):
        key = None
    if key is not None and key in _MAPS_CHECKED:
        return _MAPS_CHECKED[key]
    notice = _check_maps(volume, config, m)
    if key is not None:
        if len(_MAPS_CHECKED) >= 32:
            _MAPS_CHECKED.pop(next(iter(_MAPS_CHECKED)))
        _MAPS_CHECKED[key] = notice
    return notice


def _check_maps(volume: Volume, config: cfg.ReconConfig, m: np.ndarray) -> str | None:
    n = len(volume)
    checked = range(n) if n <= len(MAP_CHECK_POSITIONS) else sorted({int(q * (n - 1) + 0.5) for q in MAP_CHECK_POSITIONS})
    worst, where = 0.0, 0
    for i in checked:
        k = volume.coil_slice(i)[0]
        r = map_residual(k, m, slice_maps(k, m, config.coil_maps))
        if r > worst:
            worst, where = r, i
    if worst <= MAX_MAP_RESIDUAL:
        return None
    return (f"the coil maps fit the calibration data poorly ({worst:.0%} of it outside the maps on slice {where}, "
            f"more than {MAX_MAP_RESIDUAL:.0%}), so the coils are combined by root-sum-of-squares "
            "(--coils multi uses them anyway)")


def multicoil_reconstructor(config: cfg.ReconConfig, network=None) -> MultiCoilReconstructor:
    """The multi-coil form of ``config.model``: the ``network`` reconstructor's ``multicoil``
    (:class:`backend.recon.NetworkReconstructor`) or the classical method's, its combined
    image returned as :func:`rss_output`."""
    if network is not None and hasattr(network, "multicoil"):
        combine = network.multicoil
    elif config.model == "zero-filled":
        return lambda k, m, maps: rss(ifft2c_np(k * sampling_grid(m, k.shape[-2:]))).astype(np.complex64)
    elif config.model == "tv":
        def combine(k, m, maps):
            return np.stack([tv_multicoil(k[i], m, maps[i], config.tv_weight, config.tv_iterations) for i in range(len(k))])
    else:
        raise InputError(None, f"{config.model!r} cannot reconstruct multi-coil data from its coils (use --coils rss)")
    return lambda k, m, maps: rss_output(combine(k, m, maps), k, m, maps)


def reconstruct_multicoil(volume: Volume, config: cfg.ReconConfig, mask: Mask, network=None
                          ) -> Generator[Progress, None, tuple]:
    """The slices of a multi-coil ``volume`` (one that has ``coil_slice``) under ``mask``, with
    :func:`backend.recon.reconstruct_volume`'s progress events; returns ``(outputs, zero-filled,
    references or None, notices)``, float32 ``(slices, h, w)`` magnitudes."""
    info = volume.info
    recon = multicoil_reconstructor(config, network)
    lines = mask.sampling.astype(np.float32)
    calibration = calibration_lines(mask.sampling)
    n, out_shape = len(volume), info.output_shape
    outputs = np.zeros((n,) + out_shape, dtype=np.float32)
    zfs = np.zeros_like(outputs)
    refs = np.zeros_like(outputs) if info.has_reference else None
    coils = None
    yield Progress(0, n, f"{config.model} (multi-coil): {os.path.basename(info.path)}")
    for start in range(0, n, max(1, config.batch_size)):
        batch = range(start, min(start + max(1, config.batch_size), n))
        pairs = [volume.coil_slice(i) for i in batch]
        kspace = np.stack([k for k, _ in pairs])
        coils = kspace.shape[1]
        maps = np.stack([slice_maps(k, lines, config.coil_maps) for k in kspace])
        images = recon(kspace, lines, maps)
        zf = rss(ifft2c_np(kspace * sampling_grid(lines, kspace.shape[-2:])))
        for j, i in enumerate(batch):
            outputs[i] = np.abs(images[j])
            zfs[i] = zf[j]
            if refs is not None:
                refs[i] = pairs[j][1]
        yield Progress(batch.stop, n, f"{config.model} (multi-coil): slice {batch.stop}/{n}")
    method = resolve_map_method(config.coil_maps, calibration)
    notices = list(info.notices)
    notices.append(f"multi-coil file ({coils} coils): reconstructed from the coil k-space with "
                   f"{'ESPIRiT' if method == 'espirit' else 'low-resolution'} sensitivity maps "
                   f"({_calibration_text(mask, calibration)}) and SENSE data consistency; output: the RSS of the "
                   "coil images with the measured lines kept")
    return outputs, zfs, refs, notices


def _calibration_text(mask: Mask, calibration: int) -> str:
    if mask.pattern is None:
        return f"{calibration} calibration lines"
    return f"the 2-D mask's {calibration}x{calibration} calibration square"


def slice_kspace(volume: Volume, index: int, coils: str = cfg.ReconConfig.coils) -> np.ndarray:
    """The k-space of slice ``index`` as a viewer shows and previews it: the coil k-space
    ``(C, h, w)`` when the volume is reconstructed from its coils under ``coils``, else the
    slice's ``(H, W)`` (:func:`backend.viewer.preview_slice` and ``log_kspace`` take both)."""
    if uses_coils(volume.info.kind, cfg.ReconConfig(coils=coils)) and hasattr(volume, "coil_slice"):
        return volume.coil_slice(index)[0]
    return volume[index].kspace  # (the GUI shows coil data whenever there is some to show)


def reconstruct_slice(volume: Volume, index: int, config: cfg.ReconConfig, lines: np.ndarray,
                      reconstructor=None) -> np.ndarray:
    """One slice reconstructed as :func:`backend.recon.reconstruct_volume` would under the column
    mask ``lines`` (or 2-D pattern): complex ``(h, w)`` on the output grid (the GUI's current-slice preview).
    ``reconstructor``: what :func:`backend.recon.make_reconstructor` gives for ``config``."""
    from .transforms import center_crop

    m = np.asarray(lines, dtype=np.float32)
    if (uses_coils(volume.info.kind, config) and hasattr(volume, "coil_slice") and coil_fallback(config, m > 0) is None
            and maps_fallback(volume, config, m) is None):
        k = volume.coil_slice(index)[0]
        return multicoil_reconstructor(config, reconstructor)(k[None], m, slice_maps(k, m, config.coil_maps)[None])[0]
    return center_crop(reconstructor(volume[index].kspace[None], m)[0], volume.info.output_shape)


def coil_views(coil_kspace: np.ndarray, lines: np.ndarray, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """What a viewer shows of one slice's coils ``(C, h, w)``: the magnitudes of its coil images
    (the data as measured in full) and of the maps a reconstruction under ``lines`` would
    estimate (:func:`slice_maps`; ESPIRiT runs BART, so call it off the GUI thread)."""
    maps = slice_maps(coil_kspace, lines, method)
    return np.abs(ifft2c_np(coil_kspace)).astype(np.float32), np.abs(maps).astype(np.float32)
