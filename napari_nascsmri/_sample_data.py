"""Sample data: the real ch2 slab that ships with the package."""

from __future__ import annotations


def ch2_sample():
    from backend.sample import sample_path

    from ._reader import read_volume

    return read_volume(str(sample_path()))
