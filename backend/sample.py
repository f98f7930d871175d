"""The real sample volume that ships with the package (demo, napari sample data, tests).

It is the held-out middle ch2 slab of ``nascsmri data prepare`` (same protocol and grid; it is in
neither the training nor the validation split), built by :func:`make_sample`
(``nascsmri data sample``) from Debian's ``mricron-data``. ch2 is an average of 27 scans of one
person, so it is cleaner than a single scan.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SAMPLE_NAME = "ch2_cor_sample.h5"


def sample_path() -> Path:
    """Path of the shipped sample h5 inside the installed package."""
    return Path(str(resources.files("backend") / "data" / SAMPLE_NAME))


def make_sample(out: str | os.PathLike | None = None) -> Path:
    """Rebuild the sample from ch2: the slab that ``prepare_dataset`` marks as ``sample``."""
    from .config import PrepareConfig
    from .datasets import SOURCES, assign_splits, prepared_slices, slab_ranges, write_fastmri_h5

    config = PrepareConfig()
    source = SOURCES["ch2"]
    images, kept = prepared_slices(source, config)
    ranges = slab_ranges(len(images), config.slab)
    k = assign_splits(source, len(ranges), config).index("sample")
    r = ranges[k]
    path = Path(out) if out else sample_path()
    write_fastmri_h5(
        path,
        images[r.start : r.stop],
        source,
        config,
        {"split": "sample", "native_slices": f"{int(kept[r.start])}-{int(kept[r.stop - 1])}"},
    )
    return path
