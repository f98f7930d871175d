"""Siemens twix files for the tests: VD/VE written with ``twixtools.write_twix`` (the format's
Python implementation, independent of the reader in :mod:`backend.twix`), VB (whose writer
twixtools marks as unfinished) written here from twixtools' ``VB17_header`` structure."""

from __future__ import annotations

import ctypes

import numpy as np


def protocol_header(base: int, lines: int, partitions: int = 1, yaps: bool = True, vb: bool = False) -> np.ndarray:
    """A measurement header as scanners write it: ``hdr_len``, the buffer count, then named
    text buffers (``Config``, ``Dicom``, ``Meas`` and the ASCCONV ``MeasYaps``), padded to 32 bytes;
    ``vb``: a VB17 software version and a ``Phoenix`` buffer that makes it as long as real
    ones are at least (VB headers run to hundreds of kB)."""
    meas_yaps = ("### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData version=51130001 ###\n"
                 f"sKSpace.lBaseResolution                  = {base}\n"
                 f"sKSpace.lPhaseEncodingLines              = {lines}\n"
                 f"sKSpace.ucDimension                      = {'0x4' if partitions > 1 else '0x2'}\n"
                 f"sKSpace.lPartitions                      = {partitions}\n"
                 'tProtocolName                            = ""nascsmri_test""\n'
                 "### ASCCONV END ###\n")
    buffers = {"Config": '<XProtocol> { <ParamString."tPatientName"> { "xx" } }',
               "Dicom": '<XProtocol> { <ParamString."SoftwareVersions"> { "syngo MR %s" } }' % ("B17" if vb else "E11"),
               "Meas": '<XProtocol> { <ParamDouble."flReadoutOSFactor"> { <Precision> 6 2.000000 } }'}
    if yaps:
        buffers["MeasYaps"] = meas_yaps
    if vb:
        buffers["Phoenix"] = "<XProtocol> { }\n" + "#" * 12000 + "\n"
    body = b"".join(name.encode() + b"\x00" + len(text).to_bytes(4, "little") + text.encode("latin1")
                    for name, text in buffers.items())
    total = 8 + len(body)
    total += (-total) % 32
    data = total.to_bytes(4, "little") + len(buffers).to_bytes(4, "little") + body
    return np.frombuffer(data.ljust(total, b"\x00"), dtype="S1")


def line_block(data: np.ndarray, line: int, slc: int = 0, flags=(), average: int = 0, partition: int = 0):
    """One measurement data block: ``data`` (coils, samples) of phase-encode ``line``."""
    from twixtools.mdb import Mdb_local

    mdb = Mdb_local(np.ascontiguousarray(data, dtype=np.complex64))
    mdb.mdh.Counter.Lin, mdb.mdh.Counter.Sli = line, slc
    mdb.mdh.Counter.Ave, mdb.mdh.Counter.Par = average, partition
    mdb.mdh.CenterCol = data.shape[-1] // 2
    for flag in flags:
        mdb.add_flag(flag)
    return mdb


def _lines(coil_images: np.ndarray, oversampling: int, shuffle: bool, noise: bool, repeat_line, skip_line,
           flags_of, partitions: int) -> list[dict]:
    """The imaging measurement's readout lines in acquisition order, as (data, line, slice,
    flags, average, partition) records (see :func:`write_twix`)."""
    slices, coils, h, w = coil_images.shape
    readout = h * oversampling
    rng = np.random.default_rng(2)
    blocks = []
    if noise:
        blocks.append(dict(data=rng.normal(size=(coils, readout)) + 1j * rng.normal(size=(coils, readout)), line=0,
                           flags=["NOISEADJSCAN"]))
    lines = []
    for s in range(slices):
        padded = np.zeros((coils, readout, w), np.complex64)
        top = (readout - h) // 2
        padded[:, top:top + h] = coil_images[s]
        kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(padded, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        for line in range(w):
            if line == skip_line:
                continue
            extra = list(flags_of(line)) if flags_of else []
            lines.append(dict(data=kspace[:, :, line], line=line, slc=s, flags=extra))
            if line == repeat_line:
                lines.append(dict(data=kspace[:, :, line], line=line, slc=s, flags=extra, average=1))
            if partitions > 1:
                lines.append(dict(data=kspace[:, :, line], line=line, slc=s, flags=extra, partition=1))
    order = rng.permutation(len(lines)) if shuffle else range(len(lines))
    return blocks + [lines[k] for k in order]


def write_twix(path, coil_images: np.ndarray, oversampling: int = 2, shuffle: bool = True, noise: bool = True,
               adjustment: bool = True, repeat_line=None, skip_line=None, flags_of=None, partitions: int = 1,
               yaps: bool = True, vb: bool = False) -> None:
    """Write coil images (slices, coils, h, w) as a twix file: readout along ``h`` (oversampled
    ``oversampling`` x, the object in the middle of the wider field of view), phase encode along
    ``w``. With ``adjustment`` an adjustment measurement comes first (a noise line only; VD/VE
    only, a VB file holds one measurement), with ``noise`` the imaging measurement starts with a
    noise line; ``repeat_line`` is acquired twice (two averages), ``skip_line`` never;
    ``flags_of(line)`` gives extra flags per line; ``vb`` writes the VB layout."""
    slices, coils, h, w = coil_images.shape
    records = _lines(coil_images, oversampling, shuffle, noise, repeat_line, skip_line, flags_of, partitions)
    if vb:
        _write_vb(path, protocol_header(h, w, partitions, yaps, vb=True), records)
        return
    import twixtools

    blocks = [line_block(r["data"], r["line"], r.get("slc", 0), r["flags"], r.get("average", 0), r.get("partition", 0))
              for r in records]
    scans = []
    if adjustment:
        scans.append({"hdr_str": protocol_header(h, w), "mdb": [line_block(np.ones((coils, h * oversampling)), 0,
                                                                           flags=["NOISEADJSCAN"])]})
    scans.append({"hdr_str": protocol_header(h, w, partitions, yaps), "mdb": blocks})
    twixtools.write_twix(scans, str(path))


def _write_vb(path, header: np.ndarray, records: list[dict]) -> None:
    """A VB file: the protocol header, then per line and coil a 128-byte ``VB17_header`` and the
    samples, and an ``ACQEND`` header."""
    from twixtools import mdh_def

    with open(path, "wb") as f:
        f.write(header.tobytes())
        for counter, r in enumerate(records, start=1):
            data = np.ascontiguousarray(r["data"], dtype=np.complex64)
            coils, samples = data.shape
            for c in range(coils):
                mdh = mdh_def.VB17_header(ScanCounter=counter, SamplesInScan=samples, UsedChannels=coils,
                                          ChannelId=c, CenterCol=samples // 2)
                mdh_def.set_dma_len(mdh, coils * (ctypes.sizeof(mdh) + 8 * samples))
                mdh.Counter.Lin, mdh.Counter.Sli = r["line"], r.get("slc", 0)
                mdh.Counter.Ave, mdh.Counter.Par = r.get("average", 0), r.get("partition", 0)
                for flag in r["flags"]:
                    mdh_def.set_flag(mdh, flag, True)
                f.write(bytes(mdh))
                f.write(data[c].tobytes())
        end = mdh_def.VB17_header(ScanCounter=len(records) + 1)
        mdh_def.set_flag(end, "ACQEND", True)
        mdh_def.set_dma_len(end, ctypes.sizeof(end))
        f.write(bytes(end))
