"""Atomic file writes: a reader never sees a half-written file, a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
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
    """Write ``data`` as indented JSON atomically (a failed write raises :class:`InputError`)."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data) -> Path:
    """Write ``data`` (bytes or a buffer) to ``path`` atomically; returns ``path`` as a ``Path``.

    A write that fails (disk full, file size limit, I/O error) raises :class:`InputError`
    naming ``path`` and the system's reason in one line; the temporary file is removed and an
    existing ``path`` stays as it was.
    """
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except OSError as err:
        raise InputError(path, f"could not write the file: {err.strerror or err}") from None
    return Path(path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 100, **savefig_kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the file name's suffix); returns ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=dpi, **savefig_kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator["h5py.File"]:  # noqa: F821
    """An h5py file open for writing; on success its bytes land at ``path`` atomically.

    HDF5 builds the file in memory and Python writes it out, so a failed write (disk full,
    file size limit, I/O error) is an ordinary ``OSError`` turned into :class:`InputError`
    (see :func:`atomic_write_bytes`). Letting HDF5 write to disk itself is not safe: a
    dataset whose flush fails on close stays half-closed inside the C library, which then
    crashes the interpreter at exit (segmentation fault in ``H5D_close`` from
    ``H5_term_library``; seen with h5py 3.16 / HDF5 2.0 under a file size limit). Files
    written here are single volumes (tens of MB), so memory is not a concern.
    """
    import h5py

    check_output_path(path)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        yield f
    atomic_write_bytes(path, buffer.getbuffer())
