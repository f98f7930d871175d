"""Siemens twix raw data (``meas_*.dat``, software VB and VD/VE): Cartesian multi-coil k-space.

A VD/VE file starts with a multi-raid header listing its measurements (adjustment scans first,
the imaging scan last). Each measurement is a protocol header (named text buffers: ``Config``,
``Meas``, ``MeasYaps`` -- the ASCCONV protocol -- and others) followed by measurement data
blocks: one per acquired readout line, a 192-byte scan header (flags, counters, samples, coils)
and per coil a 32-byte channel header and the complex64 samples. A VB file (software VB15-VB20)
is one measurement without the multi-raid header: the protocol header from byte 0 (its first
4 bytes its length), then per line and coil a 128-byte header (the line's flags and counters
repeated for every coil) and the samples. The two are told apart as twixtools tells them:
a VD/VE file's first two 32-bit words are below 10,000 and at most 64 (a multi-raid header);
a VB file's are its header length (real ones are far above 10,000) and buffer count.

The layout and the header definitions are those of the ``twixtools`` package (its ctypes
structures and its protocol parser are used here); the walk over the blocks is this module's
own so that an untrusted file cannot make it loop or allocate without bound: every length is
checked against the file and against limits before anything is read, at most
:data:`MAX_BLOCKS` blocks are indexed, and slices are read one at a time.

What becomes of the data (:class:`TwixVolume`, see :class:`backend.raw_volume.RawCoilVolume`):
the last measurement of the file; image lines only (twixtools' ``is_image_scan``: no noise,
phase-correction, feedback or reference-only lines); echo 0, repetition 0, set 0, phase 0;
averages averaged; readout oversampling (samples per line / ``sKSpace.lBaseResolution``)
removed in image space; reconstruction matrix = base resolution x the phase-encode lines.
Only fully sampled 2-D Cartesian acquisitions are taken: 3-D (partitions), undersampled
(parallel imaging, partial Fourier) and reflected (EPI) readouts are refused with an
:class:`~backend.errors.InputError` naming the file.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from .errors import InputError, short_reason
from .raw_volume import RawCoilVolume, missing_lines
from .shapes import MAX_VOLUME_PIXELS, MIN_SIDE, check_size
from .volume import COIL_NOTICE, VolumeInfo

#: Most measurement data blocks indexed in one measurement.
MAX_BLOCKS = 1 << 21
#: Largest protocol header read (bytes); real ones are a few MB.
MAX_HEADER = 64 << 20
#: Most coils and samples per line taken.
MAX_COILS, MAX_SAMPLES = 128, 1 << 14
#: Most complex samples of one slice (coils x readout x phase encode) read at once (512 MiB).
MAX_SLICE_SAMPLES = 1 << 26
#: Counters that must be 0 for a line to be read (other echoes, repetitions, sets, phases).
OTHER_COUNTERS = ("Eco", "Rep", "Set", "Phs")


def _twixtools():
    try:
        from twixtools import hdr_def, mdh_def, twixprot
    except ImportError:
        return None
    return hdr_def, mdh_def, twixprot


def _protocol(path, buffer: bytes, twixprot) -> dict:
    """The named text buffers of a measurement's header, ``MeasYaps`` parsed (ASCCONV)."""
    if len(buffer) < 8:
        raise InputError(path, "twix measurement header is truncated")
    count = int.from_bytes(buffer[4:8], "little")
    if count > 64:
        raise InputError(path, f"twix measurement header declares {count} buffers (at most 64)")
    pos, buffers = 8, {}
    for _ in range(count):
        end = buffer.find(b"\x00", pos, pos + 64)
        if end < 0 or end + 5 > len(buffer):
            raise InputError(path, "twix measurement header: a buffer name is not terminated")
        name = buffer[pos:end].decode("latin1")
        size = int.from_bytes(buffer[end + 1:end + 5], "little")
        start = end + 5
        if start + size > len(buffer):
            raise InputError(path, f"twix header buffer {name!r} runs past the header ({size} bytes)")
        buffers[name] = buffer[start:start + size].decode("latin1")
        pos = start + size
    if "MeasYaps" not in buffers:
        raise InputError(path, "twix measurement header has no MeasYaps protocol")
    try:
        return twixprot.parse_buffer(buffers["MeasYaps"])
    except Exception as err:  # noqa: BLE001 - a foreign parser on untrusted text
        raise InputError(path, f"cannot parse the twix protocol ({short_reason(err)})") from None


def _int_field(protocol: dict, path, *keys: str, default=None):
    node = protocol
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    if node is None:
        if default is None:
            raise InputError(path, f"twix protocol lacks {'.'.join(keys)}")
        return default
    if isinstance(node, bool) or not isinstance(node, (int, np.integer)):
        raise InputError(path, f"twix protocol {'.'.join(keys)} is not an integer: {str(node)[:40]!r}")
    return int(node)


def _measurement(path, head: bytes, size: int, hdr_def) -> tuple[str, int, int]:
    """``(software line, offset, length)`` of the measurement to read: the last one of a VD/VE
    multi-raid file, or the whole of a VB file."""
    first, second = (int.from_bytes(head[i:i + 4], "little") for i in (0, 4)) if len(head) >= 8 else (0, 0)
    if first < 10000 and 0 < second <= 64:
        if len(head) < hdr_def.MultiRaidFileHeader.itemsize:
            raise InputError(path, "twix multi-raid header is truncated")
        raid = np.frombuffer(head, hdr_def.MultiRaidFileHeader, count=1)[0]
        entry = raid["entry"][second - 1]  # the last measurement: the imaging scan
        offset, length = int(entry["off_"]), int(entry["len_"])
        if length == 0 and second == 1:
            length = size - offset
        if not (hdr_def.MultiRaidFileHeader.itemsize <= offset < size and 0 < length <= size - offset):
            raise InputError(path, f"twix measurement {second} lies outside the file "
                                   f"(offset {offset}, length {length}, file {size} bytes)")
        return "VD/VE", offset, length
    if 10000 <= first < size and 0 < second <= 64:
        return "VB", 0, size
    raise InputError(path, "not a Siemens twix file (neither a VD/VE multi-raid header nor a VB "
                           "measurement header at its start)")


class TwixVolume(RawCoilVolume):
    """A Siemens twix file (VB or VD/VE), read one slice at a time (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = path = os.fspath(path)
        parts = _twixtools()
        if parts is None:
            raise InputError(path, "reading Siemens twix files needs the twixtools package (pip install twixtools)")
        hdr_def, mdh_def, twixprot = parts
        try:
            self._file = open(path, "rb")
        except OSError as err:
            raise InputError(path, f"cannot open ({short_reason(err)})") from None
        try:
            self._index(hdr_def, mdh_def, twixprot)
        except BaseException:
            self._file.close()
            raise

    def _index(self, hdr_def, mdh_def, twixprot) -> None:
        path, f = self.path, self._file
        size = os.fstat(f.fileno()).st_size
        head = f.read(hdr_def.MultiRaidFileHeader.itemsize)
        software, offset, length = _measurement(path, head, size, hdr_def)
        f.seek(offset)
        header_len = int.from_bytes(f.read(4), "little")
        if not 8 <= header_len <= min(MAX_HEADER, length):
            raise InputError(path, f"twix measurement header of {header_len} bytes (8 to {min(MAX_HEADER, length)})")
        f.seek(offset)
        protocol = _protocol(path, f.read(header_len), twixprot)
        base = _int_field(protocol, path, "sKSpace", "lBaseResolution")
        partitions = _int_field(protocol, path, "sKSpace", "lPartitions", default=1)
        dimension = _int_field(protocol, path, "sKSpace", "ucDimension", default=2)
        if dimension == 4 or partitions > 1:
            raise InputError(path, f"3-D twix acquisition ({partitions} partitions): only 2-D slices are read")

        # VD/VE: one scan header, then per coil a channel header and the samples; VB: per coil
        # a full line header and the samples (the first coil's header read as the line's)
        header = mdh_def.Scan_header if software == "VD/VE" else mdh_def.VB17_header
        header_size = ctypes.sizeof(header)
        scan_size = header_size if software == "VD/VE" else 0
        channel_size = ctypes.sizeof(mdh_def.Channel_header) if software == "VD/VE" else header_size
        end = offset + length
        pos = offset + header_len
        records = []  # (position, line, slice, coils, samples)
        reflected = 0
        while pos + header_size <= end:
            f.seek(pos)
            mdh = header.from_buffer_copy(f.read(header_size))
            if mdh_def.is_flag_set(mdh, "ACQEND"):
                break
            if mdh_def.is_flag_set(mdh, "SYNCDATA"):
                step = int(mdh_def.get_dma_len(mdh))
                if step < header_size:
                    raise InputError(path, f"twix block at byte {pos} declares {step} bytes")
                pos += step
                continue
            coils, samples = int(mdh.UsedChannels), int(mdh.SamplesInScan)
            if not (0 < coils <= MAX_COILS and 0 < samples <= MAX_SAMPLES):
                raise InputError(path, f"twix line at byte {pos}: {coils} coils x {samples} samples "
                                       f"(1-{MAX_COILS} coils, 1-{MAX_SAMPLES} samples)")
            step = scan_size + coils * (channel_size + 8 * samples)
            if pos + step > end:
                raise InputError(path, f"twix line at byte {pos} runs past the end of its measurement")
            counter = mdh.Counter
            if mdh_def.is_image_scan(mdh) and counter.Par == 0 and all(getattr(counter, c) == 0 for c in OTHER_COUNTERS):
                reflected += mdh_def.is_flag_set(mdh, "REFLECT")
                records.append((pos, counter.Lin, counter.Sli, coils, samples))
                if len(records) > MAX_BLOCKS:
                    raise InputError(path, f"twix measurement holds more than {MAX_BLOCKS} lines")
            elif mdh_def.is_image_scan(mdh) and counter.Par != 0:
                raise InputError(path, "3-D twix acquisition (lines of partition > 0): only 2-D slices are read")
            pos += step
        if not records:
            raise InputError(path, "the twix file holds no image line (only noise, adjustment or reference lines)")
        if reflected:
            raise InputError(path, f"{reflected} twix lines are reflected readouts (EPI-like): not read")
        table = np.array(records, dtype=np.int64)
        if len(set(table[:, 3].tolist())) != 1 or len(set(table[:, 4].tolist())) != 1:
            raise InputError(path, "twix image lines differ in samples or coils per line")
        self.coils, self.readout = coils, readout = int(table[0, 3]), int(table[0, 4])
        if base < MIN_SIDE or readout % base:
            raise InputError(path, f"lines of {readout} samples do not hold a whole multiple of the base "
                                   f"resolution {base} (or it is below {MIN_SIDE})")
        self.lines = lines = int(table[:, 1].max()) + 1
        slices = int(table[:, 2].max()) + 1
        check_size(path, slices, readout, lines, coils)
        if coils * readout * lines > MAX_SLICE_SAMPLES or slices * base * lines > MAX_VOLUME_PIXELS:
            raise InputError(path, f"{slices} slices of {coils} coils x {readout} x {lines} samples is larger "
                                   "than this tool reads")
        if lines < MIN_SIDE:
            raise InputError(path, f"{lines} phase-encode lines (need at least {MIN_SIDE})")
        self._positions, self._line = table[:, 0], table[:, 1]
        self._rows = [np.flatnonzero(table[:, 2] == s) for s in range(slices)]
        missing_lines(path, self._rows, self._line, lines, "twix")
        self._channel_size = channel_size
        self._scan_size = scan_size
        oversampling = f", readout oversampling {readout // base}x removed" if readout != base else ""
        notice = f"Siemens twix raw data ({software}, {coils} coils{oversampling}): {COIL_NOTICE}"
        out = (base, lines)
        meta = {"twix": {"software": software, "base_resolution": base, "lines": lines, "readout": readout,
                         "coils": coils}}
        self.info = VolumeInfo(path, "multicoil", slices, out, out, True, meta, [notice])

    def _samples(self, row: int) -> np.ndarray:
        coils, readout = self.coils, self.readout
        block = np.dtype([("skip", np.void, self._channel_size), ("data", np.complex64, readout)])
        try:
            self._file.seek(int(self._positions[row]) + self._scan_size)
            raw = self._file.read(coils * block.itemsize)
        except OSError as err:
            raise InputError(self.path, f"cannot read twix line {row} ({short_reason(err)})") from None
        if len(raw) != coils * block.itemsize:
            raise InputError(self.path, f"twix line {row} is truncated")
        return np.frombuffer(raw, block, count=coils)["data"].copy()

    def close(self) -> None:
        self._file.close()
