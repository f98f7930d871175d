"""The metadata of a fastMRI h5 file, read without trusting it.

:func:`read_attrs` returns the file's attributes and a small ``ismrmrd_header`` as information
only: an unreadable attribute, invalid UTF-8 or a header larger than :data:`MAX_HEADER_SIZE`
(a few bytes of file can declare gigabytes) is skipped, never read into memory.
"""

from __future__ import annotations

import h5py
import numpy as np

#: ``ismrmrd_header`` datasets larger than this (bytes/elements) are not read (it is only kept
#: as information).
MAX_HEADER_SIZE = 1 << 20


def read_attrs(f: h5py.File) -> dict:
    """File attributes and a small ``ismrmrd_header``, as information only: anything unreadable
    (odd types, invalid UTF-8, an absurdly large header) is skipped rather than failing."""
    attrs = {}
    for key in f.attrs:
        try:
            if _attribute_size(f, key) > MAX_HEADER_SIZE:
                continue
            attrs[key] = _attr(f.attrs[key])
        except Exception:  # informational: an unreadable attribute is dropped
            pass
    if "ismrmrd_header" in f:
        try:
            header = f["ismrmrd_header"]
            attrs["ismrmrd_header"] = _read_header(f, header) if isinstance(header, h5py.Dataset) else ""
        except Exception:  # unreadable header: keep going, it is informational only
            attrs["ismrmrd_header"] = ""
    return attrs


def _attribute_size(f: h5py.File, key: str) -> int:
    """Bytes an attribute holds on disk (variable-length strings: their heap references)."""
    try:
        aid = f.attrs.get_id(key)
        return int(aid.get_storage_size())
    except Exception:
        return MAX_HEADER_SIZE + 1


def _read_header(f: h5py.File, header: h5py.Dataset) -> str:
    """The ``ismrmrd_header`` text when it is at most :data:`MAX_HEADER_SIZE` bytes, else "".

    The size is learnt before reading: fixed-size data from its declared type and shape (a
    scalar string may declare gigabytes); a scalar variable-length string from the 4-byte length
    stored in front of its heap reference (read straight from the file).
    """
    string = h5py.check_string_dtype(header.dtype)
    if header.dtype.kind == "O" or (string is not None and string.length is None):
        if header.shape != () or header.id.get_storage_size() != 16:
            return ""
        offset = header.id.get_offset()
        if offset is None:
            return ""
        import struct

        with open(f.filename, "rb") as fh:
            fh.seek(offset)
            (length,) = struct.unpack("<I", fh.read(4))
        if length > MAX_HEADER_SIZE:
            return ""
        return _decode(header[()])
    if header.size * max(header.dtype.itemsize, 1) > MAX_HEADER_SIZE:
        return ""
    return _decode(header[()])


def _attr(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _decode(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.size == 1:
        return _decode(value.item())
    return str(value)
