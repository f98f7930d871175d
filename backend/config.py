"""Configuration dataclasses: the one home of every default.

The CLI and the napari widgets both build these objects and hand them to the backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tv import TV_ITERATIONS, TV_WEIGHT

#: The paper's accelerations; any integer >= 2 works, these are the presets.
ACCELERATIONS = (4, 8)
CLASSICAL_MODELS = ("zero-filled", "tv")


def network_model_names() -> tuple[str, ...]:
    """Trained-network model names (from the model registry; empty until it is importable)."""
    try:
        from .models import MODEL_NAMES
    except ImportError:
        return ()
    return tuple(MODEL_NAMES)


def model_choices() -> tuple[str, ...]:
    return CLASSICAL_MODELS + network_model_names()


@dataclass
class ReconConfig:
    """How to reconstruct a volume.

    Attributes:
        model: ``zero-filled``, ``tv`` or a trained network name (``nasn``, ``dccnn``, ...).
        weights: weights file for a network; None -> the weights shipped with the package.
        mask: ``random`` or ``equispaced`` (fastMRI mask functions).
        acceleration: nominal acceleration (4 or 8 in the paper).
        center_fraction: fully sampled centre fraction; None -> ``0.32 / acceleration``.
        seed: mask seed; None -> fastMRI's per-volume seed from the file name.
        mask_file: a saved column mask (``.npy`` or JSON) used instead of a drawn one.
        crop: reconstruction grid for raw k-space without reference (default 320).
        tv_weight, tv_iterations, tv_backend: the TV baseline (paper: 0.01, 200, BART).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        batch_size: slices processed at once.
    """

    model: str = "zero-filled"
    weights: str | None = None
    mask: str = "random"
    acceleration: float = 4
    center_fraction: float | None = None
    seed: int | None = None
    mask_file: str | None = None
    crop: int | None = None
    tv_weight: float = TV_WEIGHT
    tv_iterations: int = TV_ITERATIONS
    tv_backend: str = "auto"
    device: str = "auto"
    batch_size: int = 4


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
