"""ISMRMRD raw data (the ISMRM raw-data format, HDF5): Cartesian multi-coil k-space, read with h5py.

An ISMRMRD file holds a group ``dataset`` with ``xml`` (the XML header: encoded and
reconstruction matrices, encoding limits, trajectory) and ``data`` (one record per acquired
readout line: a header with flags and counters, and the samples of every active coil). Read here
without the ``ismrmrd`` package (the tests write their files with it) and without trusting the
file: the header is read only up to :data:`~backend.h5meta.MAX_HEADER_SIZE`, the declared shape
is checked before any sample is read, and slices are read one at a time.

What becomes of the data (:class:`IsmrmrdVolume`, the layout the rest of the code uses):

* lines flagged as noise, navigator, phase-correction, dummy scan or calibration-only are
  skipped; contrast 0 / repetition 0 only; repeated averages are averaged;
* k-space, readout oversampling (encoded x > reconstructed x), the coil and RSS paths: as
  :class:`backend.raw_volume.RawCoilVolume` (shared with the twix reader); a notice says which
  path a reconstruction took;
* only fully sampled Cartesian 2-D acquisitions are taken; anything else is an
  :class:`~backend.errors.InputError` naming the file.

:func:`backend.io.open_volume` opens such a file (an HDF5 file with ``dataset/xml`` and
``dataset/data`` and no fastMRI ``kspace``) as an :class:`IsmrmrdVolume`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import h5py
import numpy as np

from .errors import InputError, short_reason
from .h5meta import MAX_HEADER_SIZE
from .raw_volume import RawCoilVolume, missing_lines
from .shapes import MAX_VOLUME_PIXELS, MIN_SIDE, check_size
from .volume import COIL_NOTICE, VolumeInfo

#: ISMRMRD acquisition flags (bit ``n`` is ``1 << (n - 1)``) of lines that are not image data.
SKIPPED_FLAGS = {19: "noise", 20: "calibration", 23: "navigator", 24: "phase correction", 27: "dummy scan",
                 28: "feedback", 29: "surface-coil correction"}
#: Most acquisitions (readout lines) a file may hold.
MAX_ACQUISITIONS = 1 << 20
#: Most complex samples of one slice (coils x readout x phase encode) read at once (512 MiB).
MAX_SLICE_SAMPLES = 1 << 26
NAMESPACE = "{http://www.ismrm.org/ISMRMRD}"


def is_ismrmrd(f: h5py.File) -> bool:
    """An open HDF5 file in the ISMRMRD layout (``dataset/xml`` and ``dataset/data``)."""
    try:
        group = f.get("dataset")
        return isinstance(group, h5py.Group) and "xml" in group and "data" in group
    except Exception:  # an unreadable link: not ours to judge here
        return False


def _find(node, *path: str):
    for name in path:
        node = None if node is None else node.find(NAMESPACE + name)
    return node


def _int(node, *path: str, default=None):
    found = _find(node, *path)
    if found is None or found.text is None:
        return default
    try:
        return int(found.text.strip())
    except ValueError:
        raise ValueError(f"<{'/'.join(path)}> is not an integer: {found.text.strip()[:40]!r}") from None


def read_header(f: h5py.File, path) -> dict:
    """The first encoding of the XML header: matrices, trajectory, phase-encode lines."""
    xml = f["dataset/xml"]
    if not isinstance(xml, h5py.Dataset) or xml.size != 1:
        raise InputError(path, "ISMRMRD 'dataset/xml' must hold one XML string")
    if xml.dtype.kind not in "OS" or (xml.dtype.kind == "S" and xml.dtype.itemsize > MAX_HEADER_SIZE):
        raise InputError(path, "ISMRMRD 'dataset/xml' is not a string")
    if xml.dtype.kind == "O" and xml.id.get_storage_size() > 16 * max(xml.size, 1):
        raise InputError(path, "ISMRMRD 'dataset/xml' is not one variable-length string")
    text = xml[()] if xml.shape == () else xml[0]
    if isinstance(text, bytes):
        if len(text) > MAX_HEADER_SIZE:
            raise InputError(path, f"the ISMRMRD XML header is larger than {MAX_HEADER_SIZE} bytes")
        text = text.decode("utf-8", errors="replace")
    try:
        root = ET.fromstring(str(text))
        encoding = _find(root, "encoding")
        if encoding is None:
            raise ValueError("no <encoding>")
        node = _find(encoding, "trajectory")
        trajectory = (node.text or "").strip() if node is not None else ""
        header = {
            "trajectory": trajectory,
            "encoded": (_int(encoding, "encodedSpace", "matrixSize", "x"), _int(encoding, "encodedSpace", "matrixSize", "y"),
                        _int(encoding, "encodedSpace", "matrixSize", "z", default=1)),
            "recon": (_int(encoding, "reconSpace", "matrixSize", "x"), _int(encoding, "reconSpace", "matrixSize", "y")),
            "lines": _int(encoding, "encodingLimits", "kspace_encoding_step_1", "maximum"),
        }
    except ET.ParseError as err:
        raise InputError(path, f"the ISMRMRD XML header is not valid XML ({short_reason(err)})") from None
    except ValueError as err:
        raise InputError(path, f"ISMRMRD XML header: {err}") from None
    if header["trajectory"] != "cartesian":
        raise InputError(path, f"ISMRMRD trajectory {header['trajectory'] or '(none)'!r}: only Cartesian data is read")
    if None in header["encoded"][:2] or None in header["recon"]:
        raise InputError(path, "ISMRMRD XML header lacks the encoded or reconstruction matrix size")
    if header["encoded"][2] != 1:
        raise InputError(path, f"3-D ISMRMRD acquisition ({header['encoded'][2]} partitions): only 2-D slices are read")
    return header


class IsmrmrdVolume(RawCoilVolume):
    """An ISMRMRD raw file, read one slice at a time (see the module docstring).

    Args:
        path: the file; f: it, open read-only with h5py (closed by :meth:`close`).
    """

    def __init__(self, path: str | os.PathLike, f: h5py.File):
        self.path, self._file = os.fspath(path), f
        path = self.path
        self.header = header = read_header(f, path)
        data = f["dataset/data"]
        if not isinstance(data, h5py.Dataset) or data.dtype.names is None \
                or not {"head", "data"} <= set(data.dtype.names):
            raise InputError(path, "ISMRMRD 'dataset/data' is not a table of acquisitions (head, data)")
        if data.ndim != 1 or not 0 < data.shape[0] <= MAX_ACQUISITIONS:
            raise InputError(path, f"ISMRMRD 'dataset/data' holds {data.shape} acquisitions "
                                   f"(1 to {MAX_ACQUISITIONS})")
        self._data = data
        try:
            heads = data.fields("head")[()]
            flags = heads["flags"].astype(np.uint64)
            idx = heads["idx"]
            line, slc = idx["kspace_encode_step_1"].astype(int), idx["slice"].astype(int)
            contrast, repetition = idx["contrast"].astype(int), idx["repetition"].astype(int)
            samples, channels = heads["number_of_samples"].astype(int), heads["active_channels"].astype(int)
        except Exception as err:  # noqa: BLE001 - h5py/HDF5/numpy errors on a foreign compound type
            raise InputError(path, f"cannot read the ISMRMRD acquisition headers ({short_reason(err)})") from None
        skip = np.zeros(flags.shape, bool)
        for bit in SKIPPED_FLAGS:
            skip |= (flags & np.uint64(1 << (bit - 1))) != 0
        use = ~skip & (contrast == 0) & (repetition == 0)
        if not use.any():
            raise InputError(path, "the ISMRMRD file holds no image acquisition (only noise/calibration lines)")
        if len(set(samples[use])) != 1 or len(set(channels[use])) != 1:
            raise InputError(path, "ISMRMRD image acquisitions differ in samples or coils per line")
        self.readout, self.coils = readout, coils = int(samples[use][0]), int(channels[use][0])
        enc_x, enc_y, _ = header["encoded"]
        rec_x, rec_y = header["recon"]
        if readout != enc_x:
            raise InputError(path, f"lines of {readout} samples, the header's encoded matrix has x = {enc_x}")
        self.lines = lines = max(enc_y, int(line[use].max()) + 1)
        slices = int(slc[use].max()) + 1
        check_size(path, slices, readout, lines, coils)
        if coils * readout * lines > MAX_SLICE_SAMPLES or slices * rec_x * rec_y > MAX_VOLUME_PIXELS:
            raise InputError(path, f"{slices} slices of {coils} coils x {readout} x {lines} samples is larger "
                                   "than this tool reads")
        if not (MIN_SIDE <= rec_x <= readout and MIN_SIDE <= rec_y <= lines):
            raise InputError(path, f"reconstruction matrix {rec_x}x{rec_y} does not fit the encoded "
                                   f"{readout}x{lines} (or is below {MIN_SIDE}x{MIN_SIDE})")
        self._line = line
        self._rows = [np.flatnonzero(use & (slc == s)) for s in range(slices)]
        missing_lines(path, self._rows, line, lines, "ISMRMRD")
        oversampling = f", readout oversampling {readout / rec_x:g}x removed" if readout != rec_x else ""
        notice = f"ISMRMRD raw data ({coils} coils{oversampling}): {COIL_NOTICE}"
        out = (rec_x, rec_y)
        self.info = VolumeInfo(path, "multicoil", slices, out, out, True, {"ismrmrd": header}, [notice])

    def _samples(self, row: int) -> np.ndarray:
        coils, readout = self.coils, self.readout
        try:
            values = np.asarray(self._data[row]["data"], dtype=np.float32)
        except Exception as err:  # noqa: BLE001 - h5py/HDF5 errors
            raise InputError(self.path, f"cannot read acquisition {row} ({short_reason(err)})") from None
        if values.size != 2 * coils * readout:
            raise InputError(self.path, f"acquisition {row} holds {values.size // 2} samples, expected "
                                        f"{coils} coils x {readout}")
        return values.view(np.complex64).reshape(coils, readout)

    def close(self) -> None:
        self._file.close()
