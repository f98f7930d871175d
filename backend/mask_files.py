"""Mask files: the GUI's mask editor writes them, ``nascsmri reconstruct --mask-file`` reads them.

A mask file holds either a column mask (the sampled phase-encode columns of centred k-space,
bool ``(W,)``, as :attr:`backend.masks.Mask.lines`) or a 2-D pattern (bool ``(H, W)`` over the
k-space grid, as :attr:`backend.masks.Mask.pattern`), in one of two formats:

* ``.npy``: a uint8 0/1 array, ``(W,)`` or ``(H, W)`` (read with ``allow_pickle=False``);
* ``.json``: ``{"lines": [0, 1, ...]}`` or ``{"pattern": [[0, 1, ...], ...]}``.

Anything else -- other values than 0/1, wrong shapes, pickles, archives -- is an
:class:`~backend.errors.InputError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np

from .masks import strict_mask_lines

#: What a mask file's name ends in.
MASK_SUFFIXES = (".npy", ".json")


def strict_mask_pattern(values, shape: tuple[int, int] | None = None, what: str = "mask") -> np.ndarray:
    """A 2-D pattern as bool ``(H, W)``, or ``ValueError`` with a one-line reason: every row a
    column mask by :func:`backend.masks.strict_mask_lines`'s rules (0/1 only), all rows alike
    in length, ``shape`` when given."""
    if isinstance(values, np.ndarray):
        if values.ndim != 2:
            raise ValueError(f"{what} must be a 2-D pattern (H, W), got shape {values.shape}")
        rows = list(values)
    elif isinstance(values, (list, tuple)) and values and all(isinstance(r, (list, tuple)) for r in values):
        rows = values
    else:
        raise ValueError(f"{what} must be a 2-D pattern: a list of rows of 0/1")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError(f"{what}: the rows of the pattern differ in length")
    pattern = np.stack([strict_mask_lines(r, width, what) for r in rows])
    if shape is not None and pattern.shape != tuple(shape):
        raise ValueError(f"{what} is a {pattern.shape[0]}x{pattern.shape[1]} pattern, the data's k-space "
                         f"grid is {shape[0]}x{shape[1]} (a column mask is a 1-D array of {shape[1]})")
    return pattern


def strict_mask_values(values, what: str = "mask") -> tuple:
    """A column mask ``(W,)`` or a 2-D pattern (rows) as plain 0/1 tuples -- a tuple of ints, or
    a tuple of such rows -- by the rules of :func:`backend.masks.strict_mask_lines` and
    :func:`strict_mask_pattern`; ``ValueError`` when it is neither or samples nothing."""
    rows = values.tolist() if isinstance(values, np.ndarray) else values
    if not isinstance(rows, (list, tuple)):
        raise ValueError(f"{what} must be a list of 0/1 (a column mask) or of rows of 0/1 (a 2-D pattern)")

    def plain(seq):
        return [v.item() if isinstance(v, np.generic) else v for v in seq]

    if rows and isinstance(rows[0], (list, tuple)):
        mask = strict_mask_pattern([plain(r) if isinstance(r, (list, tuple)) else r for r in rows], what=what)
        out = tuple(tuple(int(v) for v in row) for row in mask)
    else:
        mask = strict_mask_lines(plain(rows), what=what)
        out = tuple(int(v) for v in mask)
    if not mask.any():
        raise ValueError(f"{what} samples no k-space line")
    return out


def load_mask_file(path: str | os.PathLike, num_cols: int, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file: bool ``(W,)`` for a column mask of ``num_cols`` columns, or bool ``(H,
    W)`` for a 2-D pattern of the data's k-space ``grid`` (refused when ``grid`` is None)."""
    import json

    from .errors import InputError
    from .files import check_input_file

    path = os.fspath(path)
    check_input_file(path)
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if not isinstance(data, dict) or not ("lines" in data or "pattern" in data):
                raise ValueError('expected a JSON object {"lines": [0/1, ...]} or {"pattern": [[0/1, ...], ...]}')
            values = data.get("lines", data.get("pattern"))
            if not isinstance(values, list):
                raise ValueError(f"'{'lines' if 'lines' in data else 'pattern'}' must be a list, "
                                 f"got {type(values).__name__}")
            two_d = "pattern" in data and "lines" not in data
        else:
            values = np.load(path, allow_pickle=False)
            if not isinstance(values, np.ndarray):
                raise ValueError("expected one array, found an .npz archive")
            two_d = values.ndim == 2
    except RecursionError:
        raise InputError(path, "not a mask file (JSON nested too deeply)") from None
    except Exception as err:
        text = " ".join(str(err).split())[:160] or type(err).__name__
        raise InputError(path, f"not a mask file ({type(err).__name__}: {text})") from None
    try:
        if two_d and grid is None:
            raise ValueError("a 2-D pattern cannot be used here (a column mask is needed)")
        mask = strict_mask_pattern(values, tuple(grid)) if two_d else strict_mask_lines(values, num_cols)
    except ValueError as err:
        raise InputError(path, str(err)) from None
    if not mask.any():
        raise InputError(path, "mask samples no k-space line")
    return mask


def write_mask_file(path: str | os.PathLike, mask: np.ndarray) -> str:
    """Write a column mask ``(W,)`` or a 2-D pattern ``(H, W)`` as ``.npy`` (uint8 0/1) or JSON,
    atomically; what :func:`load_mask_file` reads back."""
    import json

    from .errors import InputError
    from .files import atomic_path

    path = os.fspath(path)
    if not path.lower().endswith(MASK_SUFFIXES):
        raise InputError(path, "mask files end in .npy or .json")
    try:
        two_d = np.ndim(mask) == 2
        values = (strict_mask_pattern(np.asarray(mask)) if two_d else strict_mask_lines(mask)).astype(np.uint8)
    except ValueError as err:
        raise InputError(path, str(err)) from None
    npy = path.lower().endswith(".npy")
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if npy else "w") as f:
            if npy:
                np.save(f, values)
            else:
                json.dump({"pattern" if two_d else "lines": values.tolist()}, f)
                f.write("\n")
    return path
