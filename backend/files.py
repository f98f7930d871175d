"""Atomic file writes: a reader never sees a half-written file, a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it into place.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = check_output_path(path)
    folder = path.parent
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
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
    try:
        st = os.stat(path)  # follows links: a link to /dev/null is a device
    except FileNotFoundError:
        return path
    except OSError as err:
        raise InputError(path, f"cannot be checked ({err.strerror or err})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, f"exists and is {_kind(st.st_mode)}, not a regular file: refusing to replace it")
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def check_input_file(path: str | os.PathLike, what: str = "") -> Path:
    """Raise :class:`InputError` unless ``path`` is an existing, readable regular file.

    Never opens a FIFO or a device (that could block or read forever); ``what`` (e.g. "mask
    file") is put in front of the problem. Returns ``path`` as a Path.
    """
    path = Path(path)
    prefix = f"{what}: " if what else ""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, f"{prefix}no such file") from None
    except OSError as err:
        raise InputError(path, f"{prefix}cannot be opened ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(path, f"{prefix}is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, f"{prefix}is {_kind(st.st_mode)}, expected a regular file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError:
        raise InputError(path, f"{prefix}permission denied: the file is not readable") from None
    except OSError as err:
        raise InputError(path, f"{prefix}cannot be read ({err.strerror or err})") from None
    return path


def _identity(path: str | os.PathLike):
    """``(device, inode)`` of an existing file (after links), else its resolved path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(os.path.abspath(os.fspath(path))))


def check_distinct(outputs: Iterable[str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse an output that is the same file as an input or as another output.

    Files compare by device and inode after resolving links (hard links and symbolic links to
    an input are caught); paths that do not exist yet compare by their resolved path.
    """
    seen: dict = {}
    for path in inputs:
        if path is not None:
            seen.setdefault(_identity(path), ("input", path))
    for path in outputs:
        if path is None:
            continue
        key = _identity(path)
        if key in seen:
            role, other = seen[key]
            raise InputError(path, f"is the same file as the {role} {os.fspath(other)}: refusing to overwrite it")
        seen[key] = ("output", path)


#: Temporary files of :func:`atomic_path` older than this are stale whatever their writer.
STALE_SECONDS = 24 * 3600


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the leftovers of killed writes of ``path``: ``.NAME.PID.XXXXXXXX.tmp`` (or ``.onnx``)
    files whose process is gone (or, without a PID / older than a day, by age). Returns what was
    removed.

    Only files of this project's own pattern for this very name are touched, and only when no
    live process of this machine could still be writing them.
    """
    path = Path(path)
    # .tmp: atomic_path's temporaries; .onnx: the exporter's file beside one (it wants that suffix)
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:(\d+)\.)?[a-z0-9_]{8}\.(?:tmp|onnx)$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        if not match:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            pid = match.group(1)
            old = now - st.st_mtime > STALE_SECONDS
            if pid is None:
                stale = old or now - st.st_mtime > 3600
            else:
                stale = old or (int(pid) != os.getpid() and not _alive(int(pid)))
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


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
