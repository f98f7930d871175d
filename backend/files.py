"""Atomic file writes: a reader never sees a half-written file, a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it into place.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = check_output_path(path)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_output_path(path: str | os.PathLike) -> Path:
    """Raise :class:`InputError` unless a file can be written at ``path``; returns it as a Path.

    Commands call this for every output before starting work, so that a typo in ``--out``
    fails at once rather than after a long reconstruction. The folder must exist and be
    writable, and ``path`` must not be a folder itself.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "output folder does not exist"
        raise InputError(folder, problem)
    if not os.access(folder, os.W_OK):
        raise InputError(folder, "output folder is not writable")
    if path.is_dir():
        raise InputError(path, "is a folder, expected an output file name")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a ``Path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


_HDF5_MESSAGE = re.compile(r"error message = '([^']*)'")


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator["h5py.File"]:  # noqa: F821
    """An h5py file open for writing at a temporary name, renamed to ``path`` when complete.

    A write that fails (disk full, file size limit, I/O error) raises :class:`InputError`
    naming ``path`` and the system's reason in one line; the temporary file is removed and an
    existing ``path`` stays as it was. HDF5 reports such failures as ``OSError`` or, when the
    file is closed, as ``RuntimeError`` carrying the C library's errno.
    """
    import h5py

    with atomic_path(path) as tmp:
        try:
            with h5py.File(tmp, "w") as f:
                yield f
        except (OSError, RuntimeError) as err:
            text = str(err)
            if isinstance(err, RuntimeError) and "errno" not in text:
                raise
            found = _HDF5_MESSAGE.search(text)
            reason = found.group(1) if found else (getattr(err, "strerror", None) or text.splitlines()[0])
            raise InputError(path, f"could not write the file: {reason}") from None
