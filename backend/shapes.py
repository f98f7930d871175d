"""The shapes this tool agrees to read, checked from a file's declaration before any data.

A file can *declare* a huge shape in a few bytes; :func:`check_size` and :func:`check_padding`
refuse such shapes (an :class:`~backend.errors.InputError` naming the file) before anything is
allocated. Used by every reader (:mod:`backend.io`, :mod:`backend.nifti`).
"""

from __future__ import annotations

from .errors import InputError

#: Largest slice we agree to read, in pixels (a 4096 x 4096 slice); guards against absurd shapes.
MAX_SLICE_PIXELS = 4096 * 4096
#: Largest volume (slices x H x W) we agree to reconstruct or display: 2^28 pixels, 1 GiB per
#: float32 output array (e.g. 1024 slices of 512 x 512). Files can *declare* far larger shapes
#: (chunked datasets with a fill value, resized ``maxshape`` datasets, NIfTI/npy headers) in a few
#: bytes; such shapes are refused from the declaration, before anything is allocated.
MAX_VOLUME_PIXELS = 1 << 28
#: Smallest slice (and output grid) we reconstruct: SSIM needs a 7x7 window.
MIN_SIDE = 8
#: A slice may be zero-padded to its square grid up to this factor of its own area (an 8 x 4096
#: strip would become 4096 x 4096: 512 times the data, gigabytes of work for a few kilobytes).
MAX_PADDING_FACTOR = 16


def check_padding(path, H: int, W: int, side: int) -> None:
    """Refuse slices that zero-padding to a ``side x side`` grid would blow up (see :data:`MAX_PADDING_FACTOR`)."""
    if H * W and side * side > MAX_PADDING_FACTOR * H * W:
        raise InputError(path, f"slices of {H}x{W} would be zero-padded to {side}x{side} "
                               f"({side * side // (H * W)} times their size; at most {MAX_PADDING_FACTOR}): "
                               "crop or resample the volume first")


def check_size(path, slices: int, H: int, W: int, coils: int = 1) -> None:
    """Refuse absurd declared shapes before reading (see :data:`MAX_VOLUME_PIXELS`)."""
    if slices == 0:
        raise InputError(path, "the volume holds zero slices")
    if H < MIN_SIDE or W < MIN_SIDE:
        raise InputError(path, f"slices of {H}x{W} are too small (need at least {MIN_SIDE}x{MIN_SIDE})")
    if H * W * coils > MAX_SLICE_PIXELS:
        what = f"{coils}x{H}x{W}" if coils > 1 else f"{H}x{W}"
        raise InputError(path, f"one slice of {what} is larger than this tool reads")
    if slices * H * W > MAX_VOLUME_PIXELS:
        raise InputError(path, f"a volume of {slices} slices of {H}x{W} is larger than this tool reads "
                               f"(at most {MAX_VOLUME_PIXELS} pixels)")
