"""Configuration dataclasses: the one home of every default.

The CLI and the napari widgets both build these objects and hand them to the backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tv import TV_ITERATIONS, TV_WEIGHT

#: The paper's accelerations; any integer >= 2 works, these are the presets.
ACCELERATIONS = (4, 8)
CLASSICAL_MODELS = ("zero-filled", "tv")
#: Training losses: the paper's L1, 1 - SSIM (fastMRI's window, on magnitudes), or their sum.
LOSSES = ("l1", "ssim", "l1+ssim")
#: Search methods and cell selections (backend.search.supernet.METHODS mirrors the first).
SEARCH_METHODS = ("darts", "pc-darts", "drnas", "beta-darts")
SELECTIONS = ("argmax", "perturb")


def network_model_names() -> tuple[str, ...]:
    """Trained-network model names (from the model registry; empty until it is importable)."""
    try:
        from .models import MODEL_NAMES
    except ImportError:
        return ()
    return tuple(MODEL_NAMES)


def model_choices() -> tuple[str, ...]:
    return CLASSICAL_MODELS + network_model_names()


def _check_mask_kinds(name: str, kinds) -> None:
    from .masks_2d import ALL_MASK_KINDS

    bad = [k for k in kinds if k not in ALL_MASK_KINDS]
    if bad or not len(kinds):
        raise ValueError(f"{name}: unknown mask type {bad[0]!r}; choose from {ALL_MASK_KINDS}" if bad
                         else f"{name}: give at least one mask type of {ALL_MASK_KINDS}")


def _check_coils(coils: int) -> None:
    if coils == 1:
        raise ValueError("coils: 0 means single-coil; simulated multi-coil data needs at least 2 coils")


#: ``ReconConfig.coils``: how a multi-coil file is reconstructed; ``coil_maps``: how its maps are
#: estimated (:func:`backend.coils.coil_maps`).
COIL_MODES = ("auto", "multi", "rss")
COIL_MAP_METHODS = ("auto", "espirit", "lowres")


@dataclass
class ReconConfig:
    """How to reconstruct a volume.

    Attributes:
        model: ``zero-filled``, ``tv`` or a trained network name (``nasn``, ``dccnn``, ...).
        weights: weights file for a network; None -> the weights shipped with the package.
        mask: one of :data:`backend.masks.ALL_MASK_KINDS`: ``random``, ``equispaced`` (fastMRI's),
            ``gaussian`` (1-D variable density), or the 2-D patterns ``gaussian2d`` and ``poisson``
            (:class:`backend.masks.Mask2DFunc`; on multi-coil files the maps are calibrated on their
            centre square).
        acceleration: nominal acceleration (4 or 8 in the paper).
        center_fraction: fully sampled centre fraction; None -> ``0.32 / acceleration``.
        seed: mask seed; None -> fastMRI's per-volume seed from the file name.
        mask_file: a saved column mask or 2-D pattern (``.npy`` or JSON, :mod:`backend.mask_files`)
            used instead of a drawn one.
        mask_lines: a column mask given as 0/1 per phase-encode column, or a 2-D pattern as rows
            of 0/1 (the GUI's edited mask), used instead of a drawn one or a file; checked against
            the volume's k-space grid.
        crop: reconstruction grid for raw k-space without reference (default 320).
        tv_weight, tv_iterations, tv_backend: the TV baseline (paper: 0.01, 200, BART).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        batch_size: slices processed at once.
        execution: how a network runs: ``auto`` (fast on every device), ``fast`` (CPU: a
            re-planned NasN with the same outputs to float32 rounding, channels_last; CUDA:
            channels_last + bf16 autocast) or ``reference`` (the training module as is);
            see :mod:`backend.models.inference`.
        coils: multi-coil files: ``auto`` and ``multi`` reconstruct from the coil k-space with
            sensitivity maps (SENSE data consistency, :mod:`backend.recon_coils`); ``rss``
            combines the coils by root-sum-of-squares and simulates single-coil k-space (the
            earlier path). Single-coil files ignore it.
        coil_maps: how the sensitivities are estimated (:func:`backend.coils.coil_maps`):
            ``auto`` (ESPIRiT by BART when installed, else low-resolution), ``espirit``, ``lowres``.
    """

    model: str = "zero-filled"
    weights: str | None = None
    mask: str = "random"
    acceleration: float = 4
    center_fraction: float | None = None
    seed: int | None = None
    mask_file: str | None = None
    mask_lines: tuple | None = None
    crop: int | None = None
    tv_weight: float = TV_WEIGHT
    tv_iterations: int = TV_ITERATIONS
    tv_backend: str = "auto"
    device: str = "auto"
    batch_size: int = 4
    execution: str = "auto"
    coils: str = "auto"
    coil_maps: str = "auto"

    def __post_init__(self) -> None:
        """Every numeric field in its range (the CLI, the GUI and config files share this)."""
        from .errors import MAX_SEED, check_device, check_fields

        check_fields(self, {"acceleration": (1, 1e6, False, False), "center_fraction": (0, 1, False, True),
                            "tv_weight": (0, 1e6, False, False), "tv_iterations": (1, 100_000, True, False),
                            "batch_size": (1, 1024, True, False)})
        if isinstance(self.seed, int) or isinstance(self.seed, float):
            check_fields(self, {"seed": (0, MAX_SEED, True, False)})
        if self.crop is None or isinstance(self.crop, (int, float)):
            check_fields(self, {"crop": (8, 4096, True, True)})
        check_device(self.device)
        _check_mask_kinds("mask", [self.mask])
        for name, choices in (("coils", COIL_MODES), ("coil_maps", COIL_MAP_METHODS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.mask_lines is not None:
            from .mask_files import strict_mask_values

            self.mask_lines = strict_mask_values(self.mask_lines, what="mask_lines")
            if self.mask_file:
                raise ValueError("give mask_lines or mask_file, not both")


@dataclass
class PrepareConfig:
    """How ``nascsmri data prepare`` turns real magnitude scans into a fastMRI-layout dataset.

    Attributes:
        size: square grid (pixels) of every slice, at ``spacing_mm`` per pixel.
        spacing_mm: in-plane pixel size after resampling (sources at 1 mm are not resampled).
        slab: slices per h5 file (a slab is the unit of the train/val/test split).
        foreground_threshold: a pixel is foreground above this fraction of the volume's 99th
            percentile intensity.
        min_foreground: keep a slice when at least this fraction of its *native* area is
            foreground (near-empty slices are skipped).
        val_every: every ``val_every``-th slab of a training source goes to validation.
    """

    size: int = 224
    spacing_mm: float = 1.0
    slab: int = 8
    foreground_threshold: float = 0.1
    min_foreground: float = 0.15
    val_every: int = 5

    def __post_init__(self) -> None:
        """Every numeric field in its range (see :meth:`ReconConfig.__post_init__`)."""
        from .errors import check_fields

        check_fields(self, {"size": (8, 4096, True, False), "slab": (1, 4096, True, False),
                            "spacing_mm": (1e-3, 100, False, False), "foreground_threshold": (0, 1, False, False),
                            "min_foreground": (0, 1, False, False), "val_every": (1, 1_000_000, True, False)})


def _run_ranges(max_seed: int) -> dict:
    """The ranges that search and training share: ``field: (low, high, integer, None allowed)``."""
    return {"epochs": (1, 100_000, True, False), "steps_per_epoch": (1, 10_000_000, True, True),
            "batch_size": (1, 1024, True, False), "crop": (8, 4096, True, True),
            "channels": (1, 1 << 17, True, False), "cells": (1, 64, True, False),
            "cascades": (1, 64, True, False), "phase_prob": (0, 1, False, False),
            "seed": (0, max_seed, True, False)}


@dataclass
class TrainConfig:
    """Retraining a network (paper section 3.2.3 / 4.2: Adam, L1, lr 1e-3 then 1e-4 at half).

    Attributes:
        model, genotype, blocks, channels, cells, cascades: the architecture (registry names).
        data: prepared dataset folder (``train/`` and ``val/`` of fastMRI h5 files).
        preset: ``cpu`` or ``paper`` (:data:`TRAIN_PRESETS`); explicit fields override it.
        epochs, steps_per_epoch (None = one pass over the training slices), batch_size.
        lr, lr_drop_factor: Adam learning rate, multiplied by the factor at half the epochs.
        crop: random square image-space crop for training (None = full grid).
        accelerations: each slice gets one of these, with equal probability, per step.
        phase_prob: probability of multiplying a training image by a synthetic smooth phase
            (so zero-phase training data also prepares for raw k-space with phase); with
            ``augment`` also a linear phase (see :mod:`backend.training.augment`).
        loss: ``l1`` (the paper's), ``ssim`` (1 - SSIM with fastMRI's 7x7 window, on
            magnitudes) or ``l1+ssim`` (L1 + ``ssim_weight`` x (1 - SSIM)).
        augment: run the augmentation pipeline of :mod:`backend.training.augment` with the
            ``aug_*`` settings below (False = the first round's: a random square window and
            the smooth phase only).
        aug_flips: random flips and 90-degree rotations.
        aug_gamma: range of the random intensity exponent (log-uniform).
        aug_contrast_prob: probability of a random non-monotone contrast curve (T2/PD-like).
        aug_fov_prob, aug_fov_fill: probability of resizing the object to fill a random
            fraction (uniform in the range) of the grid, on a zero canvas.
        aug_linear_phase_cycles: largest linear phase, in cycles across the grid per axis.
        aug_raw_prob: probability of the raw path (readout-oversampled canvas with phase and
            noise, then the grid's rows cropped in image space, as fastMRI's knee data).
        aug_noise_prob, aug_noise_snr_db: probability and range (dB, image RMS / noise RMS) of
            complex white Gaussian k-space noise.
        aspects: grid shapes, as columns / rows at the crop's area, drawn per batch
            ((1.0,) = square crops only).
        mask_kinds: mask functions drawn per sample (of :data:`backend.masks.ALL_MASK_KINDS`; with a
            2-D kind among them every sample's mask is a full ``(H, W)`` pattern, with ``coils`` too).
        coils: 0 (default) trains single-coil; N >= 2 shows every sample through N simulated
            coils (:func:`backend.training.data.coil_sample`: the benchmark's sensitivity model,
            noise per coil at an SNR drawn from ``coil_snr_db``, low-resolution maps from the
            mask's centre) with the SENSE data consistency in every cascade, and validates on
            8-coil versions of the validation volumes (:mod:`backend.models.multicoil`).
        val_volumes: validation volumes evaluated per epoch (None = all).
        init_weights: a weights file whose tensors start the run instead of the seeded
            initialisation (fine-tuning, e.g. the shipped NasN on ``coils``); its architecture must
            be the one these fields describe; a resumed run takes its checkpoint. None: seeded.
        seed, device, channels_last, amp (bf16 autocast on CUDA).
    """

    model: str = "nasn"
    genotype: str | None = None
    blocks: int | None = None
    channels: int = 32
    cells: int = 3
    cascades: int = 3
    data: str = "data/brain"
    preset: str = "cpu"
    epochs: int = 12  # the cpu preset (the default preset); paper and ship set their own
    steps_per_epoch: int | None = 200
    batch_size: int = 2
    lr: float = 1e-3
    lr_drop_factor: float = 0.1
    crop: int | None = 128
    accelerations: tuple = ACCELERATIONS
    phase_prob: float = 0.5
    loss: str = "l1"
    ssim_weight: float = 1.0
    augment: bool = True
    aug_flips: bool = True
    aug_gamma: tuple = (0.7, 1.4)
    aug_contrast_prob: float = 0.3
    aug_fov_prob: float = 0.5
    aug_fov_fill: tuple = (0.3, 1.0)
    aug_linear_phase_cycles: float = 3.0
    aug_raw_prob: float = 0.2
    aug_noise_prob: float = 0.5
    aug_noise_snr_db: tuple = (15.0, 45.0)
    aspects: tuple = (0.75, 1.0, 1.33)
    mask_kinds: tuple = ("random", "equispaced")
    coils: int = 0
    coil_snr_db: tuple = (30.0, 45.0)
    val_volumes: int | None = 4
    init_weights: str | None = None
    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    amp: bool = True

    def __post_init__(self) -> None:
        """Every numeric field in its range (see :meth:`ReconConfig.__post_init__`)."""
        from .errors import MAX_SEED, InputError, check_device, check_fields

        if self.init_weights is not None and not isinstance(self.init_weights, str):
            raise InputError(None, f"init_weights must be a weights file's path, got {self.init_weights!r}")

        check_fields(self, {**_run_ranges(MAX_SEED), "blocks": (1, 64, True, True), "lr": (1e-12, 1e3, False, False),
                            "val_volumes": (1, 1_000_000, True, True), "coils": (0, 64, True, False)})
        _check_coils(self.coils)
        check_device(self.device)
        _check_mask_kinds("mask_kinds", self.mask_kinds)

    def augmentation(self):
        """The :class:`backend.training.augment.Augmentation` these fields describe (None when
        ``augment`` is off)."""
        from .training.augment import Augmentation

        if not self.augment:
            return None
        return Augmentation(flips=self.aug_flips, gamma=tuple(self.aug_gamma), contrast_prob=self.aug_contrast_prob,
                            fov_prob=self.aug_fov_prob, fov_fill=tuple(self.aug_fov_fill),
                            phase_prob=self.phase_prob, linear_phase_cycles=self.aug_linear_phase_cycles,
                            raw_prob=self.aug_raw_prob, noise_prob=self.aug_noise_prob,
                            noise_snr_db=tuple(self.aug_noise_snr_db))


#: Preset overrides. ``paper``: the authors' schedule (80 epochs, batch 2, full grid).
#: ``cpu``: the same code path sized for 2 CPU cores (about 2,400 steps on 128x128 crops).
#: ``ship``: the shipped weights' budget on 2 CPU cores (42 epochs x 1,000 steps of batch 2 on
#: crops of 128x128 pixels' area, validation on every volume; the learning rate drops at epoch
#: 21; NasN ~12 CPU-hours here). It was 60 epochs until session 9: validation had been flat at
#: lr 1e-3 for 8 epochs, so the drop was brought forward to where the runs stood (their first 21
#: epochs are what a run of the new preset does, the lr being the only thing the count sets).
TRAIN_PRESETS: dict[str, dict] = {
    "paper": dict(epochs=80, steps_per_epoch=None, crop=None, val_volumes=None),
    "cpu": dict(epochs=12, steps_per_epoch=200, crop=128, val_volumes=4),
    "ship": dict(epochs=42, steps_per_epoch=1000, crop=128, val_volumes=None),
}


@dataclass
class SearchConfig:
    """DARTS search of the cell inside the DC cascade (first order, REFERENCE section 1).

    Attributes:
        space: ``A``, ``B`` or ``extended``; nodes: internal nodes per cell.
        channels, cells, cascades: supernet size (search small, retrain the full size).
        epochs, steps_per_epoch, batch_size, crop: as in :class:`TrainConfig`.
        w_lr, w_lr_min, w_momentum, w_weight_decay, grad_clip: SGD on the weights (cosine).
        alpha_lr, alpha_betas, alpha_weight_decay, alpha_init: Adam on the alphas.
        warmup_epochs: epochs that train only the weights (alphas frozen) before the
            alternation starts; max_skip: at most this many ``skip_connect`` edges in the derived
            cell (P-DARTS). Neither is in the paper: without them the search here collapsed onto
            an all-skip cell within two epochs (see the README).
        patience: stop when the derived genotype has not changed for this many epochs
            (``None`` = run all epochs); min_epochs: never stop before this many epochs
            (the alphas start almost uniform and move slowly, so an early genotype can look
            "stable" only because nothing has been learnt yet).
        method: ``darts`` (the paper's), ``pc-darts``, ``drnas`` or ``beta-darts``
            (:mod:`backend.search.architect`); partial_channels: PC-DARTS' K (1/K of the
            channels through the operations); drnas_kl: weight of DrNAS' KL term to a flat
            Dirichlet; beta_weight: beta-DARTS' final regulariser weight (linear from 0).
        select: how the cell is derived at the end: ``argmax`` of the weights (DARTS) or
            ``perturb`` (Wang et al. 2021: per edge, the operation whose removal costs the
            supernet most validation loss; per node, the two inputs likewise).
        signal_margin: an edge whose best and second operation weights differ by less than
            this carries no signal; the CLI and GUI warn when every chosen edge is below it.
        coils, coil_snr_db: as :class:`TrainConfig`'s: 0 searches single-coil; N >= 2 shows
            both halves' samples through N simulated coils with the SENSE DC in the supernet.
    """

    data: str = "data/brain"
    space: str = "A"
    nodes: int = 3
    preset: str = "cpu"
    channels: int = 16  # this and the search-length fields below: the cpu preset (the default)
    cells: int = 2
    cascades: int = 3
    epochs: int = 14
    steps_per_epoch: int | None = 100
    batch_size: int = 2
    crop: int | None = 64
    accelerations: tuple = ACCELERATIONS
    phase_prob: float = 0.5
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    alpha_lr: float = 3e-3
    alpha_betas: tuple = (0.5, 0.999)
    alpha_weight_decay: float = 1e-3
    alpha_init: float = 1e-3
    warmup_epochs: int = 4
    max_skip: int | None = 2
    patience: int | None = 4
    min_epochs: int = 10
    method: str = "darts"
    partial_channels: int = 4
    drnas_kl: float = 1e-3
    beta_weight: float = 1.0
    select: str = "argmax"
    signal_margin: float = 0.02
    coils: int = 0
    coil_snr_db: tuple = (30.0, 45.0)
    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    amp: bool = True

    def __post_init__(self) -> None:
        """Every numeric field in its range (see :meth:`ReconConfig.__post_init__`)."""
        from .errors import MAX_SEED, check_device, check_fields

        check_fields(self, {**_run_ranges(MAX_SEED), "nodes": (1, 16, True, False), "warmup_epochs": (0, 100_000, True, False),
                            "patience": (0, 100_000, True, True), "min_epochs": (0, 100_000, True, False),
                            "max_skip": (0, 64, True, True), "w_lr": (1e-12, 1e3, False, False),
                            "alpha_lr": (0, 1e3, False, False), "coils": (0, 64, True, False)})
        _check_coils(self.coils)
        check_device(self.device)


#: ``paper``: the authors' release (50 epochs, 32 channels, 3 cells, full grid).
#: ``cpu``: a 16-channel, 2-cell supernet on 64x64 crops, 1,400 steps at most (400 weights-only),
#: alphas at Adam 3e-3 (at the paper's 3e-4 the shipped search's alphas moved by < 0.01 in 700
#: steps: no signal).
SEARCH_PRESETS: dict[str, dict] = {
    "paper": dict(channels=32, cells=3, epochs=50, steps_per_epoch=None, crop=None, warmup_epochs=10,
                  patience=10, min_epochs=25, alpha_lr=3e-4),
    "cpu": dict(channels=16, cells=2, epochs=14, steps_per_epoch=100, crop=64, warmup_epochs=4,
                patience=4, min_epochs=10, alpha_lr=3e-3),
}


def apply_preset(config, presets: dict[str, dict], overrides: dict | None = None):
    """Return ``config`` with its preset's values, then the explicit ``overrides``, applied."""
    from dataclasses import replace

    if config.preset not in presets:
        raise ValueError(f"unknown preset {config.preset!r}; choose from {sorted(presets)}")
    merged = dict(presets[config.preset])
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return replace(config, **merged)
