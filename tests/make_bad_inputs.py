"""Generate a corpus of bad inputs for ``nascsmri`` and the napari reader (no blobs checked in).

    python tests/make_bad_inputs.py OUTDIR      # writes the files and OUTDIR/cases.json

or, from a test, ``cases = make_corpus(outdir)``. Every :class:`Case` is one command line of
``nascsmri`` (without ``--out`` / ``--json`` / ``--quiet``, which the runner adds) and what must
happen: ``expect`` is a fragment of the one-line error ``nascsmri: error: FILE: problem`` (exit
status 2), or ``None`` when the input is odd but acceptable and the command must succeed.
``names`` is the file (base name) the error line must name; ``reader`` is a path to hand to
``napari_nascsmri._reader.get_reader`` (which must never raise, and whose reader may only raise
``InputError``). ``big`` marks cases that declare an enormous shape in a tiny file: they must be
rejected from the declared shape, without allocating it (the tests also run them under an
address-space limit).

The generator needs h5py, numpy, nibabel and torch (for the weights cases) and writes a few
hundred kilobytes in well under a second or two.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

H = W = 16  # grid of the small good files (>= the 8x8 minimum)
S = 2  # slices
MARKER = "PWNED_MARKER"  # file the pickle payload would create when unpickled with pickle


@dataclass
class Case:
    """One bad (or odd) input and the behaviour it must get.

    Attributes:
        name: identifier (pytest id).
        argv: ``nascsmri`` arguments, without ``--out``/``--json``/``--quiet``.
        expect: fragment of the error line; None = the command succeeds (exit 0).
        names: base name of the file the error line names (None: an option, not a file).
        reader: path to give the napari reader (None: not a reader input).
        big: declares an enormous shape in a tiny file (must not be allocated).
        note: what the case is, for the report.
    """

    name: str
    argv: list[str]
    expect: str | None
    names: str | None = None
    reader: str | None = None
    big: bool = False
    note: str = ""
    outputs: bool = field(default=True)  # the command takes --out/--json (reconstruct)
    untouched: list = field(default_factory=list)  # paths whose bytes (or kind) must not change
    absent: list = field(default_factory=list)  # paths that must not exist afterwards
    klass: str = ""  # the issue #18 class of a reliability case

    @property
    def command(self) -> str:
        return self.argv[0]


# -- small good data ------------------------------------------------------------------------
def _kspace(slices: int = S, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((slices, h, w), np.complex64)
    img[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1.0
    img += 0.1 * rng.standard_normal((slices, h, w))
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return k.astype(np.complex64)


def _write_h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def _good_h5(path: Path) -> Path:
    """A valid single-coil fastMRI-layout file without reference (2 x 16 x 16)."""
    return _write_h5(path, kspace=_kspace())


# -- the corpus -----------------------------------------------------------------------------
def make_corpus(outdir: str | os.PathLike) -> list[Case]:
    """Write every bad input under ``outdir`` and return the cases."""
    root = Path(outdir)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    good = _good_h5(root / "good.h5")

    def recon(name, path, expect, names="same", extra=(), reader=True, big=False, note=""):
        path = str(path)
        cases.append(Case(name, ["reconstruct", path, *extra], expect,
                          os.path.basename(path) if names == "same" else names,
                          path if reader else None, big, note))

    # ---- files that are not files / not HDF5 ----------------------------------------------
    recon("missing_file", root / "missing.h5", "no such file", note="a path that does not exist")
    (root / "empty.h5").write_bytes(b"")
    recon("empty_file", root / "empty.h5", "the file is empty")
    (root / "directory.h5").mkdir(exist_ok=True)
    recon("directory", root / "directory.h5", "is a directory")
    (root / "junk.h5").write_bytes(b"this is not an HDF5 file\n" * 20)
    recon("not_hdf5", root / "junk.h5", "unrecognised file type")
    blob = _write_h5(root / "full.h5", kspace=_kspace(4, 32, 32)).read_bytes()
    (root / "truncated_head.h5").write_bytes(blob[:1024])
    recon("truncated_head", root / "truncated_head.h5", "not a readable HDF5")
    (root / "truncated_tail.h5").write_bytes(blob[: len(blob) * 3 // 5])
    recon("truncated_tail", root / "truncated_tail.h5", "not a readable HDF5")
    (root / "full.h5").unlink()

    # ---- HDF5 but not (valid) fastMRI ----------------------------------------------------
    recon("no_kspace", _write_h5(root / "no_kspace.h5", image=np.zeros((2, 8, 8))), "no 'kspace' dataset")
    with h5py.File(root / "kspace_group.h5", "w") as f:
        f.create_group("kspace").create_dataset("data", data=_kspace())
    recon("kspace_is_group", root / "kspace_group.h5", "'kspace' is not a dataset")
    with h5py.File(root / "kspace_link.h5", "w") as f:
        f["kspace"] = h5py.ExternalLink(str(root / "nowhere.h5"), "/kspace")
    recon("kspace_dangling_link", root / "kspace_link.h5", "kspace",
          note="'kspace' is an external link to a missing file")
    recon("real_kspace", _write_h5(root / "real.h5", kspace=np.ones((S, H, W), np.float32)), "must be complex")
    recon("int_kspace", _write_h5(root / "int.h5", kspace=np.ones((S, H, W), np.int16)), "must be complex")
    recon("rank_1", _write_h5(root / "rank1.h5", kspace=np.ones(64, np.complex64)), "(slices, H, W)")
    recon("rank_2", _write_h5(root / "rank2.h5", kspace=_kspace()[0]), "(slices, H, W)")
    recon("rank_5", _write_h5(root / "rank5.h5", kspace=np.ones((1, 1, 2, H, W), np.complex64)), "(slices, H, W)")
    recon("zero_slices", _write_h5(root / "zero_slices.h5", kspace=np.zeros((0, H, W), np.complex64)), "zero slices")
    recon("zero_coils", _write_h5(root / "zero_coils.h5", kspace=np.zeros((S, 0, H, W), np.complex64)), "zero coils")
    recon("one_by_one", _write_h5(root / "one.h5", kspace=np.ones((1, 1, 1), np.complex64)), "too small")
    recon("thin", _write_h5(root / "thin.h5", kspace=np.ones((S, 64, 4), np.complex64)), "too small")

    # ---- values ----------------------------------------------------------------------------
    k = _kspace()
    k[1, 3, 3] = np.nan
    recon("nan_kspace", _write_h5(root / "nan.h5", kspace=k), "NaN or Inf", note="NaN in slice 1")
    k = _kspace()
    ref = np.abs(np.fft.ifft2(k)).astype(np.float32)[:, 4:12, 4:12]
    ref[0, 0, 0] = np.inf
    recon("inf_reference", _write_h5(root / "inf_ref.h5", kspace=k, reconstruction_esc=ref), "NaN or Inf")
    recon("all_zero_kspace", _write_h5(root / "all_zero.h5", kspace=np.zeros((S, H, W), np.complex64)), None,
          note="valid: reconstructs zeros")
    recon("all_zero_with_reference",
          _write_h5(root / "all_zero_ref.h5", kspace=np.zeros((S, H, W), np.complex64),
                    reconstruction_esc=np.zeros((S, 8, 8), np.float32)), None,
          note="valid: reconstructs zeros, metrics not defined (notice)")

    # ---- shapes ----------------------------------------------------------------------------
    recon("crop_larger_than_grid", good, "smaller than the crop", extra=["--crop", "64"], reader=False)
    recon("crop_zero", good, "crop", names=None, extra=["--crop", "0"], reader=False)
    recon("reference_wrong_slices",
          _write_h5(root / "ref_slices.h5", kspace=_kspace(), reconstruction_esc=np.ones((S + 1, 8, 8), np.float32)),
          "'reconstruction_esc' has shape")
    recon("reference_larger_than_grid",
          _write_h5(root / "ref_large.h5", kspace=_kspace(), reconstruction_esc=np.ones((S, 32, 32), np.float32)),
          "larger than the k-space grid")
    recon("reference_tiny",
          _write_h5(root / "ref_tiny.h5", kspace=_kspace(), reconstruction_esc=np.ones((S, 4, 4), np.float32)),
          "too small", note="a 4x4 reference: no SSIM possible")
    with h5py.File(root / "ref_group.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_group("reconstruction_esc")
    recon("reference_is_group", root / "ref_group.h5", "'reconstruction_esc' is not a dataset")

    # ---- enormous declared shapes in tiny files -------------------------------------------
    with h5py.File(root / "huge_slice.h5", "w") as f:
        f.create_dataset("kspace", shape=(1, 1 << 16, 1 << 16), dtype=np.complex64, chunks=(1, 64, 64))
    recon("huge_slice", root / "huge_slice.h5", "larger than this tool reads", big=True,
          note="1 x 65536 x 65536 complex declared, nothing written")
    with h5py.File(root / "huge_volume.h5", "w") as f:
        f.create_dataset("kspace", shape=(10**8, 64, 64), dtype=np.complex64, chunks=(1, 64, 64),
                         fillvalue=1 + 0j)
    recon("huge_volume", root / "huge_volume.h5", "larger than this tool reads", big=True,
          note="10^8 slices of 64x64 declared (fill value), file of a few kB")
    with h5py.File(root / "resized.h5", "w") as f:
        ds = f.create_dataset("kspace", data=_kspace(), maxshape=(None, None, None), chunks=(1, H, W))
        ds.resize((10**7, 1024, 1024))
    recon("resized_maxshape", root / "resized.h5", "larger than this tool reads", big=True,
          note="resizable dataset grown to 10^7 x 1024 x 1024")
    with h5py.File(root / "huge_header.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_dataset("ismrmrd_header", shape=(1 << 36,), dtype=np.uint8, chunks=(1 << 16,))
    recon("huge_ismrmrd_header", root / "huge_header.h5", None, big=True,
          note="valid k-space, 64 GiB ismrmrd_header declared: ignored, not read")

    # ---- text and metadata -----------------------------------------------------------------
    with h5py.File(root / "header_latin1.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_dataset("ismrmrd_header", data=np.void(b"<ismrmrdHeader>\xff\xfe caf\xe9</ismrmrdHeader>"))
        f.attrs["patient_id"] = np.bytes_(b"\xff\xfe\xe9")
    recon("header_not_utf8", root / "header_latin1.h5", None,
          note="valid: the header is informational, decoded with replacement characters")
    with h5py.File(root / "attr_bad_utf8.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(h5py.h5t.VARIABLE)
        tid.set_cset(h5py.h5t.CSET_UTF8)
        space = h5py.h5s.create(h5py.h5s.SCALAR)
        attr = h5py.h5a.create(f.id, b"acquisition", tid, space)
        attr.write(np.array(b"\xff\xfe bad utf-8", dtype=object), mtype=tid)
        f.create_dataset("ismrmrd_header", data=b"\xff\xfe\xe9", dtype=h5py.string_dtype("utf-8"))
    recon("attr_declared_utf8_invalid", root / "attr_bad_utf8.h5", None,
          note="valid: a UTF-8 attribute/header holding invalid bytes is kept with replacement characters")

    # ---- test files (own mask) ------------------------------------------------------------
    mask = np.zeros(W, bool)
    mask[::3] = True
    recon("test_mask_wrong_width", _write_h5(root / "test_mask_w.h5", kspace=_kspace(), mask=np.ones(W + 1, bool)),
          "'mask' has shape")
    recon("test_mask_2d", _write_h5(root / "test_mask_2d.h5", kspace=_kspace(), mask=mask[None]), "'mask' has shape")
    recon("test_mask_empty", _write_h5(root / "test_mask_0.h5", kspace=_kspace(), mask=np.zeros(W, bool)),
          "samples no k-space line")
    with h5py.File(root / "test_mask_group.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_group("mask")
    recon("test_mask_is_group", root / "test_mask_group.h5", "'mask' is not a dataset")

    # ---- NIfTI ---------------------------------------------------------------------------
    import nibabel as nib

    def nii(name, data, dtype=None):
        img = nib.Nifti1Image(np.asarray(data), np.eye(4), dtype=dtype)
        nib.save(img, root / name)
        return root / name

    recon("nifti_4d", nii("vol4d.nii.gz", np.ones((H, W, 3, 2), np.float32)), "expected a 2-D or 3-D volume")
    recon("nifti_complex", nii("complex.nii", np.ones((H, W, 2), np.complex64)), "complex NIfTI")
    int8 = (np.arange(H * W * 2) % 200 - 100).astype(np.int8).reshape(H, W, 2)
    recon("nifti_int8", nii("int8.nii.gz", int8, dtype=np.int8), None,
          note="valid: integer NIfTI is a magnitude volume (negative values taken by magnitude)")
    recon("nifti_1x1", nii("one.nii", np.ones((1, 1, 1), np.float32)), "too small")
    nan = np.ones((H, W, 2), np.float32)
    nan[2, 2, 1] = np.nan
    recon("nifti_nan", nii("nan.nii.gz", nan), "NaN or Inf")
    full = (root / "full.nii.gz")
    nii("full.nii.gz", np.random.default_rng(1).uniform(size=(64, 64, 8)).astype(np.float32))
    (root / "truncated.nii.gz").write_bytes(full.read_bytes()[:2000])
    full.unlink()
    recon("nifti_truncated", root / "truncated.nii.gz", "cannot read the image data")
    (root / "garbage.nii.gz").write_bytes(b"\x1f\x8b not really gzip" * 8)
    recon("nifti_garbage", root / "garbage.nii.gz", "not a readable NIfTI")
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((2048, 2048, 2048))
    hdr["vox_offset"] = 352
    import gzip

    with gzip.open(root / "huge.nii.gz", "wb") as f:  # 32 GiB declared, a few bytes stored
        f.write(hdr.binaryblock + b"\0" * 4 + b"\0" * 4096)
    recon("nifti_huge_declared", root / "huge.nii.gz", "larger than this tool reads", big=True,
          note="gzip NIfTI header declaring 2048^3 float32 (32 GiB)")
    (root / "huge.nii").write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 4096)
    recon("nifti_huge_declared_raw", root / "huge.nii", "larger than this tool reads", big=True)

    # ---- numpy -----------------------------------------------------------------------------
    np.save(root / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    recon("npy_pickled_object", root / "object.npy", "not a readable .npy", reader=False)
    np.save(root / "complex.npy", np.ones((2, H, W), np.complex64))
    recon("npy_complex", root / "complex.npy", "complex", reader=False)
    np.save(root / "rank4.npy", np.ones((2, 2, H, W), np.float32))
    recon("npy_4d", root / "rank4.npy", "expected a 2-D image or a 3-D volume", reader=False)
    with open(root / "huge.npy", "wb") as f:  # header for 10^5 x 4096 x 4096, 1 kB of data
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (10**5, 4096, 4096)})
        f.write(b"\0" * 1024)
    recon("npy_huge_declared", root / "huge.npy", "not a readable .npy", big=True, reader=False)

    # ---- options that cannot work ---------------------------------------------------------
    recon("acceleration_zero", good, "acceleration", names=None, extra=["--acceleration", "0"], reader=False)
    recon("center_fraction_too_large", good, "centre fraction", names=None,
          extra=["--acceleration", "4", "--center-fraction", "0.9"], reader=False)
    recon("acceleration_samples_nothing", good, "samples no k-space line", names=None,
          extra=["--acceleration", "1000", "--seed", "2"], reader=False)

    # ---- mask files ------------------------------------------------------------------------
    np.save(root / "mask_w17.npy", np.ones(W + 1, bool))
    recon("mask_file_wrong_width", good, "mask has 17 columns, the data has 16", names="mask_w17.npy",
          extra=["--mask-file", str(root / "mask_w17.npy")], reader=False)
    np.save(root / "mask_object.npy", np.array([None] * W, dtype=object), allow_pickle=True)
    recon("mask_file_pickled", good, "not a mask file", names="mask_object.npy",
          extra=["--mask-file", str(root / "mask_object.npy")], reader=False)
    (root / "mask_nolines.json").write_text(json.dumps({"columns": [1, 0, 1]}))
    recon("mask_file_json_without_lines", good, "not a mask file", names="mask_nolines.json",
          extra=["--mask-file", str(root / "mask_nolines.json")], reader=False)
    np.save(root / "mask_zero.npy", np.zeros(W, bool))
    recon("mask_file_samples_nothing", good, "samples no k-space line", names="mask_zero.npy",
          extra=["--mask-file", str(root / "mask_zero.npy")], reader=False)
    recon("mask_file_missing", good, "no such file", names="mask_missing.npy",
          extra=["--mask-file", str(root / "mask_missing.npy")], reader=False)
    np.save(root / "pattern_wrong_shape.npy", np.ones((H + 1, W), np.uint8))
    recon("mask_file_pattern_wrong_shape", good, f"is a {H + 1}x{W} pattern, the data's k-space grid is {H}x{W} ",
          names="pattern_wrong_shape.npy", extra=["--mask-file", str(root / "pattern_wrong_shape.npy")], reader=False)
    (root / "pattern_values.json").write_text(json.dumps({"pattern": [[0, 2] * (W // 2)] * H}))
    recon("mask_file_pattern_not_0_1", good, "must hold only 0 and 1", names="pattern_values.json",
          extra=["--mask-file", str(root / "pattern_values.json")], reader=False)
    (root / "pattern_ragged.json").write_text(json.dumps({"pattern": [[1] * W, [1] * (W - 1)] * (H // 2)}))
    recon("mask_file_pattern_ragged", good, "rows of the pattern differ in length", names="pattern_ragged.json",
          extra=["--mask-file", str(root / "pattern_ragged.json")], reader=False)

    cases.extend(_ismrmrd_cases(root))
    cases.extend(_twix_cases(root))
    cases.extend(_weights_cases(root, good))
    cases.extend(_genotype_cases(root))
    cases.extend(_evaluate_cases(root))
    cases.extend(_data_folder_cases(root, good))
    cases.extend(_reliability_cases(root, good))
    _write_manifest(root, cases)
    return cases


# -- ISMRMRD raw data -----------------------------------------------------------------------
ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"


def _ismrmrd_xml(trajectory: str = "cartesian", x: int = 32, y: int = 16, z: int = 1) -> str:
    space = (f"<matrixSize><x>{{}}</x><y>{y}</y><z>{z}</z></matrixSize>"
             "<fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm>")
    return (f'<?xml version="1.0"?><ismrmrdHeader xmlns="{ISMRMRD_NS}"><encoding>'
            f"<encodedSpace>{space.format(x)}</encodedSpace><reconSpace>{space.format(x // 2)}</reconSpace>"
            f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{y - 1}</maximum>"
            f"<center>{y // 2}</center></kspace_encoding_step_1></encodingLimits>"
            f"<trajectory>{trajectory}</trajectory></encoding></ismrmrdHeader>")


def _write_ismrmrd(path: Path, xml, data=None) -> Path:
    """An HDF5 file in the ISMRMRD layout: ``dataset/xml`` (a variable-length string, unless
    ``xml`` is an array) and ``dataset/data`` (a compound table with head and data, unless given)."""
    with h5py.File(path, "w") as f:
        group = f.create_group("dataset")
        if isinstance(xml, np.ndarray):
            group.create_dataset("xml", data=xml)
        else:
            group.create_dataset("xml", data=np.array([xml.encode()], dtype=object), dtype=h5py.special_dtype(vlen=bytes))
        if data is None:
            head = np.dtype([("flags", "<u8"), ("number_of_samples", "<u2"), ("active_channels", "<u2"),
                             ("idx", [("kspace_encode_step_1", "<u2"), ("slice", "<u2"), ("contrast", "<u2"),
                                      ("repetition", "<u2")])])
            table = np.zeros(4, dtype=[("head", head), ("data", h5py.vlen_dtype(np.float32))])
            for line in range(4):
                table[line]["head"]["number_of_samples"] = 32
                table[line]["head"]["active_channels"] = 1
                table[line]["head"]["idx"]["kspace_encode_step_1"] = line
                table[line]["data"] = np.zeros(64, np.float32)
            data = table
        group.create_dataset("data", data=data)
    return path


def _ismrmrd_cases(root: Path) -> list[Case]:
    """ISMRMRD raw files the reader must refuse with one line (headers are read size-capped and
    parsed by expat, which refuses entity expansion bombs)."""
    cases: list[Case] = []

    def raw(name, xml, expect, data=None, note=""):
        path = _write_ismrmrd(root / f"{name}.h5", xml, data)
        cases.append(Case(name, ["reconstruct", str(path)], expect, path.name, str(path), False, note))

    raw("ismrmrd_bad_xml", "<ismrmrdHeader><encoding", "not valid XML")
    raw("ismrmrd_no_encoding", f'<ismrmrdHeader xmlns="{ISMRMRD_NS}"></ismrmrdHeader>', "no <encoding>")
    raw("ismrmrd_radial", _ismrmrd_xml("radial"), "only Cartesian data is read")
    raw("ismrmrd_3d", _ismrmrd_xml(z=8), "3-D ISMRMRD acquisition")
    raw("ismrmrd_bad_matrix", _ismrmrd_xml().replace("<x>32</x>", "<x>many</x>"), "is not an integer")
    raw("ismrmrd_huge_header", _ismrmrd_xml() + " " * (2 << 20), "larger than", note="a 2 MiB XML header")
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i + 1} "{("&lol" + (str(i) if i else "") + ";") * 10}">' for i in range(8))
            + f']><ismrmrdHeader xmlns="{ISMRMRD_NS}">&lol8;</ismrmrdHeader>')
    raw("ismrmrd_entity_bomb", bomb, "not valid XML", note="billion laughs: 10^8 expansions refused by expat")
    raw("ismrmrd_xml_not_text", np.zeros((1,), np.float64), "is not a string")
    raw("ismrmrd_data_not_table", _ismrmrd_xml(), "not a table of acquisitions", data=np.zeros(10))
    raw("ismrmrd_lines_missing", _ismrmrd_xml(), "lacks 12 of its 16 phase-encode lines", note="4 of 16 lines acquired")
    return cases


# -- Siemens twix raw data ------------------------------------------------------------------
def _twix_cases(root: Path) -> list[Case]:
    """Siemens twix files the reader must refuse with one line; every length in them is checked
    against the file before it is followed (twixtools' own reader loops forever on a
    zero-length sync block)."""
    import ctypes

    try:
        from twixtools import mdh_def
    except ImportError:  # the reader's own dependency; without it every .dat is refused anyway
        return []
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from twix_files import write_twix

    cases: list[Case] = []
    coil_images = np.ones((1, 2, H, W), np.complex64) * np.arange(1, W + 1, dtype=np.float32)
    good = root / "twix_good.dat"
    if not good.exists():
        write_twix(good, coil_images, adjustment=False, noise=False, shuffle=False)
    data = good.read_bytes()
    offset = int.from_bytes(data[16:24], "little")  # the first measurement's offset (entry 0)
    first = offset + int.from_bytes(data[offset:offset + 4], "little")  # its first data block
    header = ctypes.sizeof(mdh_def.Scan_header)

    def twix(name, content: bytes, expect, note=""):
        path = root / f"{name}.dat"
        path.write_bytes(content)
        cases.append(Case(name, ["reconstruct", str(path)], expect, path.name, str(path), False, note))

    def patched(field_name: str, value: int) -> bytes:
        mdh = mdh_def.Scan_header.from_buffer_copy(data[first:first + header])
        setattr(mdh, field_name, value)
        return data[:first] + bytes(mdh) + data[first + header:]

    twix("twix_text", b"not a twix file\n" * 700, "not a Siemens twix file")
    twix("twix_truncated", data[: len(data) // 2], "outside the file", note="half of a good file")
    twix("twix_header_too_long", data[:offset] + (1 << 30).to_bytes(4, "little") + data[offset + 4:],
         "measurement header of", note="a 1 GiB protocol header declared")
    twix("twix_too_many_coils", patched("UsedChannels", 60000), "coils x", note="60,000 coils declared")
    sync = mdh_def.Scan_header.from_buffer_copy(data[first:first + header])
    mdh_def.add_flag(sync, "SYNCDATA")
    sync.FlagsAndDMALength = 0
    twix("twix_zero_length_block", data[:first] + bytes(sync) + data[first + header:], "declares 0 bytes",
         note="a sync block of length 0 (an endless loop for a naive walk)")
    good_vb = root / "twix_good_vb.dat"
    if not good_vb.exists():
        write_twix(good_vb, coil_images, noise=False, shuffle=False, vb=True)
    vb = good_vb.read_bytes()
    vb_first = int.from_bytes(vb[:4], "little")  # VB: the header from byte 0, then the lines
    vb_header = ctypes.sizeof(mdh_def.VB17_header)
    line = mdh_def.VB17_header.from_buffer_copy(vb[vb_first:vb_first + vb_header])
    line.UsedChannels = 60000
    twix("twix_vb_too_many_coils", vb[:vb_first] + bytes(line) + vb[vb_first + vb_header:], "coils x",
         note="a VB line declaring 60,000 coils")
    line = mdh_def.VB17_header.from_buffer_copy(vb[vb_first:vb_first + vb_header])
    mdh_def.add_flag(line, "SYNCDATA")
    line.FlagsAndDMALength = 0
    twix("twix_vb_zero_length_block", vb[:vb_first] + bytes(line) + vb[vb_first + vb_header:], "declares 0 bytes",
         note="a VB sync block of length 0")
    twix("twix_vb_header_past_end", vb[:vb_first - 100], "not a Siemens twix file",
         note="a VB file cut inside its protocol header")
    only_noise = root / "twix_only_noise.dat"
    write_twix(only_noise, coil_images[:, :, :, :1], adjustment=False, noise=True, skip_line=0, shuffle=False)
    cases.append(Case("twix_only_noise", ["reconstruct", str(only_noise)], "no image line", only_noise.name,
                      str(only_noise), False, "a noise line and nothing else"))
    return cases


# -- weights -------------------------------------------------------------------------------
class Payload:
    """Pickles to ``open(marker, "w")``: unpickling it with plain pickle creates the marker."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _weights_cases(root: Path, good: Path) -> list[Case]:
    import torch

    from backend.models import Genotype, build_model, save_weights

    cases = []

    def net(name, weights, expect, names, model="nasn", note=""):
        cases.append(Case(name, ["reconstruct", str(good), "--model", model, "--weights", str(weights),
                                 "--device", "cpu"], expect, names, None, False, note))

    torch.manual_seed(0)
    small = dict(channels=4, cells=1, cascades=1)
    nasn = save_weights(build_model("nasn", **small), root / "nasn.safetensors")
    sidecar = json.loads((root / "nasn.json").read_text())

    marker = str(root / MARKER)
    evil = root / "evil.pt"
    torch.save({"stem.weight": torch.zeros(1), "payload": Payload(marker)}, evil)
    (root / "evil.json").write_text(json.dumps(sidecar))
    net("weights_pickle_payload", evil, "refused", "evil.pt",
        note="a .pt whose unpickling would call open(marker, 'w')")
    (root / "evil_named.safetensors").write_bytes(evil.read_bytes())
    net("weights_pickle_named_safetensors", root / "evil_named.safetensors", "not a valid safetensors",
        "evil_named.safetensors")

    # sidecar genotype differs from the one the tensors were trained with
    other = Genotype("A", [[["dil_2_conv_3x3", 0], ["dil_3_conv_3x3", 1]]])
    (root / "nasn_other.safetensors").write_bytes(nasn.read_bytes())
    (root / "nasn_other.json").write_text(json.dumps({**sidecar, "genotype": other.to_dict()}))
    net("weights_do_not_match_genotype", root / "nasn_other.safetensors", "do not match",
        "nasn_other.safetensors")
    dccnn = save_weights(build_model("dccnn", blocks=1, channels=4, cascades=1), root / "dccnn.safetensors")
    net("weights_of_another_model", dccnn, "weights are for model 'dccnn'", "dccnn.safetensors")
    (root / "nasn_huge.safetensors").write_bytes(nasn.read_bytes())
    (root / "nasn_huge.json").write_text(json.dumps({**sidecar, "channels": 100_000}))
    cases.append(Case("weights_sidecar_enormous_channels",
                      ["reconstruct", str(good), "--model", "nasn", "--weights",
                       str(root / "nasn_huge.safetensors"), "--device", "cpu"],
                      "do not match", "nasn_huge.safetensors", None, True,
                      "sidecar declares 100,000 channels (a ~10^11-parameter model)"))
    (root / "nasn_badgeno.safetensors").write_bytes(nasn.read_bytes())
    (root / "nasn_badgeno.json").write_text(json.dumps(
        {**sidecar, "genotype": {"space": "A", "num_nodes": 1, "nodes": [[["conv_99x99", 0], ["skip_connect", 1]]]}}))
    net("weights_sidecar_unknown_op", root / "nasn_badgeno.safetensors", "unknown operation", "nasn_badgeno.json")
    (root / "nasn_badjson.safetensors").write_bytes(nasn.read_bytes())
    (root / "nasn_badjson.json").write_text("{not json")
    net("weights_sidecar_invalid_json", root / "nasn_badjson.safetensors", "invalid JSON", "nasn_badjson.json")
    (root / "trunc.safetensors").write_bytes(nasn.read_bytes()[:200])
    net("weights_truncated", root / "trunc.safetensors", "not a valid safetensors", "trunc.safetensors")
    torch.save(build_model("nasn", **small).state_dict(), root / "plain.pt")
    net("weights_without_sidecar", root / "plain.pt", "no sidecar", "plain.pt")
    net("weights_missing", root / "absent.safetensors", "weights file not found", "absent.safetensors")
    return cases


# -- genotypes -----------------------------------------------------------------------------
def _genotype_cases(root: Path) -> list[Case]:
    cases = []

    def geno(name, text: str | bytes | None, expect):
        path = root / f"{name}.json"
        if isinstance(text, bytes):
            path.write_bytes(text)
        elif text is not None:
            path.write_text(text)
        cases.append(Case(name, ["model-info", "--model", "nasn", "--genotype", str(path)], expect,
                          path.name, None, False, "", outputs=False))

    def nodes(*ns):
        return json.dumps({"space": "A", "num_nodes": len(ns), "nodes": list(ns)})

    geno("genotype_unknown_op", nodes([["conv_99x99", 0], ["skip_connect", 1]]), "unknown operation")
    geno("genotype_input_out_of_range", nodes([["sep_conv_3x3", 0], ["skip_connect", 5]]), "out of range")
    geno("genotype_negative_input", nodes([["sep_conv_3x3", -1], ["skip_connect", 1]]), "out of range")
    geno("genotype_none_op", nodes([["none", 0], ["skip_connect", 1]]), "'none'")
    geno("genotype_op_not_in_space", nodes([["conv_9x1_1x9", 0], ["skip_connect", 1]]), "not in search space")
    geno("genotype_wrong_count", json.dumps({"space": "A", "num_nodes": 3, "nodes": [[["skip_connect", 0], ["skip_connect", 1]]]}),
         "'num_nodes' is 3")
    geno("genotype_not_json", "space: A\n", "invalid JSON")
    geno("genotype_not_utf8", b"\xff\xfe{}", "cannot read genotype file")
    geno("genotype_missing", None, "cannot read genotype file")
    return cases


# -- evaluate ------------------------------------------------------------------------------
def _evaluate_cases(root: Path) -> list[Case]:
    cases = []
    ref = np.abs(np.fft.ifft2(_kspace())).astype(np.float32)

    def pair(name, target=None, prediction=None, expect=None, names=None, note=""):
        t, p = root / f"{name}_targets", root / f"{name}_predictions"
        t.mkdir(exist_ok=True)
        p.mkdir(exist_ok=True)
        for folder, content, key in ((t, target, "reconstruction_esc"), (p, prediction, "reconstruction")):
            if content is None:
                continue
            if callable(content):
                content(folder / "vol.h5")
            elif isinstance(content, bytes):
                (folder / "vol.h5").write_bytes(content)
            else:
                _write_h5(folder / "vol.h5", **{key: content})
        named = {"target": f"{t.name}/vol.h5", "prediction": f"{p.name}/vol.h5"}[names]
        cases.append(Case(name, ["evaluate", "--targets", str(t), "--predictions", str(p)], expect,
                          named, None, False, note, outputs=False))

    cases.append(Case("evaluate_targets_missing",
                      ["evaluate", "--targets", str(root / "no_targets"), "--predictions", str(root)],
                      "is not a folder", "no_targets", None, False, "", outputs=False))
    pair("evaluate_prediction_not_hdf5", ref, b"garbage" * 100, "not a readable HDF5", "prediction")
    pair("evaluate_target_without_reference", lambda p: _write_h5(p, kspace=_kspace()), ref, "no dataset", "target")
    nan = ref.copy()
    nan[0, 1, 1] = np.nan
    pair("evaluate_prediction_nan", ref, nan, "NaN or Inf", "prediction")
    pair("evaluate_prediction_wrong_slices", ref, ref[:1], "1 slices, the target has 2", "prediction")
    pair("evaluate_prediction_4d", ref, ref[None], "expected (slices, H, W)", "prediction")
    pair("evaluate_prediction_complex", ref, ref.astype(np.complex64), "real", "prediction")
    pair("evaluate_prediction_tiny", ref[:, :4, :4], ref[:, :4, :4], "too small", "target",
         note="4x4 slices: SSIM's 7x7 window does not fit")
    pair("evaluate_target_all_zero", np.zeros_like(ref), ref, "all zero", "target")

    def huge(path):
        with h5py.File(path, "w") as f:
            f.create_dataset("reconstruction", shape=(10**8, 64, 64), dtype=np.float32, chunks=(1, 64, 64))

    pair("evaluate_prediction_huge_declared", ref, huge, "larger than this tool reads", "prediction")
    cases[-1].big = True
    return cases


def _data_folder_cases(root: Path, good: Path) -> list[Case]:
    """``train`` and ``search`` with a bad ``--data`` folder (the runner adds ``--out``)."""
    cases = []

    def folder(name: str, train: dict, val: dict) -> Path:
        base = root / f"{name}_data"
        for split, files in (("train", train), ("val", val)):
            (base / split).mkdir(parents=True, exist_ok=True)
            for fname, content in files.items():
                target = base / split / fname
                if isinstance(content, bytes):
                    target.write_bytes(content)
                elif callable(content):
                    content(target)
        return base

    def good_file(path: Path) -> None:
        _write_h5(path, kspace=_kspace(), reconstruction_esc=np.abs(np.fft.ifft2(_kspace())).astype(np.float32))

    def add(name, command, data, expect, names, note=""):
        model = ["--model", "dccnn"] if command == "train" else []
        cases.append(Case(name, [command, *model, "--data", str(data), "--preset", "cpu"], expect, names, None, False,
                          note, outputs=False))

    add("train_data_missing", "train", root / "no_such_data", "data folder does not exist", "no_such_data")
    add("train_data_is_a_file", "train", good, "is not a folder", good.name)
    only_val = folder("only_val", {}, {"v.h5": good_file})
    add("train_without_train_split", "train", only_val, "no .h5 files for split 'train'", "train")
    no_val = folder("no_val", {"a.h5": good_file, "b.h5": good_file}, {})
    add("train_without_val_split", "train", no_val, "no .h5 files for split 'val'", "val")
    corrupt = folder("corrupt_train", {"a.h5": good_file, "broken.h5": b"not hdf5" * 64}, {"v.h5": good_file})
    add("train_corrupt_training_file", "train", corrupt, "not a readable HDF5", "broken.h5")
    add("search_corrupt_training_file", "search", corrupt, "not a readable HDF5", "broken.h5")
    foreign = folder("foreign_train", {"a.h5": good_file, "foreign.h5": lambda p: _write_h5(p, image=np.zeros((2, 16, 16)))},
                     {"v.h5": good_file})
    add("train_foreign_training_file", "train", foreign, "kspace", "foreign.h5", "an h5 without 'kspace'")
    single = folder("single_train", {"a.h5": good_file}, {"v.h5": good_file})
    add("search_one_training_file", "search", single, "at least 2 training files", None,
        "the search splits the training files into weight and architecture halves")
    return cases


# -- issue #18: reliability ------------------------------------------------------------------
def _reliability_cases(root: Path, good: Path) -> list[Case]:
    """Cases of the classes of issue #18: data loss, garbage written, masks, memory and hangs,
    internal errors, things left behind, messages."""
    import stat as stat_

    import torch

    from backend.models import build_model, save_weights

    rel = root / "reliability"
    rel.mkdir(exist_ok=True)
    cases: list[Case] = []
    ref = np.abs(np.fft.ifft2(_kspace())).astype(np.float32)
    with_ref = _write_h5(rel / "with_ref.h5", kspace=_kspace(), reconstruction_esc=ref[:, 4:12, 4:12])

    def add(klass, name, argv, expect, names=None, reader=None, big=False, note="", outputs=True,
            untouched=(), absent=()):
        cases.append(Case(name, [str(a) for a in argv], expect, names, None if reader is None else str(reader), big,
                          note, outputs, [str(u) for u in untouched], [str(a) for a in absent], klass))

    def recon(klass, name, path, expect, names="same", extra=(), reader=True, **kw):
        path = Path(path)
        add(klass, name, ["reconstruct", path, *extra], expect,
            path.name if names == "same" else names, path if reader else None, **kw)

    # ---- data loss: an output that is an input, another output, a device or a FIFO ----------
    nii_path = rel / "vol.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.random.default_rng(2).uniform(size=(H, W, 2)).astype(np.float32), np.eye(4)),
             nii_path)
    npy_path = rel / "vol.npy"
    np.save(npy_path, np.random.default_rng(3).uniform(size=(2, H, W)).astype(np.float32))
    mask_npy = rel / "mask_ok.npy"
    np.save(mask_npy, (np.arange(W) % 2 == 0))
    fifo = rel / "fifo_out"
    if not fifo.exists():
        os.mkfifo(fifo)
    link_in = rel / "link_to_input.h5"
    if not link_in.is_symlink():
        link_in.symlink_to(with_ref)
    hard_in = rel / "hard_link_to_input.h5"
    if not hard_in.exists():
        os.link(with_ref, hard_in)
    link_null = rel / "link_to_null"
    if not link_null.is_symlink():
        link_null.symlink_to("/dev/null")
    loss = [
        ("out_is_input_h5", with_ref, ["--out", with_ref], with_ref),
        ("out_is_input_nifti", nii_path, ["--out", nii_path], nii_path),
        ("out_is_input_npy", npy_path, ["--out", npy_path], npy_path),
        ("json_is_input", with_ref, ["--out", rel / "o1.h5", "--json", with_ref], with_ref),
        ("json_is_out", with_ref, ["--out", rel / "o2.h5", "--json", rel / "o2.h5"], rel / "o2.h5"),
        ("out_is_mask_file", with_ref, ["--mask-file", mask_npy, "--out", mask_npy], mask_npy),
        ("json_is_mask_file", with_ref, ["--mask-file", mask_npy, "--out", rel / "o3.h5", "--json", mask_npy], mask_npy),
        ("out_symlink_to_input", with_ref, ["--out", link_in], link_in.name),
        ("out_hard_link_to_input", with_ref, ["--out", hard_in], hard_in.name),
        ("out_input_spelled_differently", with_ref, ["--out", f"{rel}/./../{rel.name}/{with_ref.name}"], with_ref.name),
        ("input_via_symlink_out_real", link_in, ["--out", with_ref], with_ref.name),
        ("out_dev_null", with_ref, ["--out", "/dev/null"], "/dev/null"),
        ("json_dev_null", with_ref, ["--out", rel / "o4.h5", "--json", "/dev/null"], "/dev/null"),
        ("out_fifo", with_ref, ["--out", fifo], fifo.name),
        ("json_fifo", with_ref, ["--out", rel / "o5.h5", "--json", fifo], fifo.name),
        ("out_link_to_dev_null", with_ref, ["--out", link_null], link_null.name),
        ("json_dev_zero", with_ref, ["--out", rel / "o6.h5", "--json", "/dev/zero"], "/dev/zero"),
    ]
    for name, src, extra, named in loss:
        named = named if isinstance(named, str) else Path(named).name
        untouched = {src, *(x for x in extra if isinstance(x, Path) and x.exists())}
        absent = [x for x in extra if isinstance(x, Path) and not x.exists() and x.suffix == ".h5"]
        expect = "refusing" if "dev" in name or "fifo" in name or "null" in name else "same file"
        add("data loss", name, ["reconstruct", src, *extra, "--quiet"], expect, named, None,
            outputs=False, untouched=sorted(map(str, untouched)) + ["/dev/null"], absent=absent)
    torch.manual_seed(0)
    small = dict(channels=4, cells=1, cascades=1)
    nasn_w = save_weights(build_model("nasn", **small), rel / "nasn_ok.safetensors")
    add("data loss", "out_is_weights", ["reconstruct", good, "--model", "nasn", "--weights", nasn_w, "--device", "cpu",
                                         "--out", nasn_w, "--quiet"], "same file", nasn_w.name, outputs=False,
        untouched=[nasn_w])
    add("data loss", "json_is_weights_sidecar", ["reconstruct", good, "--model", "nasn", "--weights", nasn_w,
                                                  "--device", "cpu", "--out", rel / "o7.h5", "--json",
                                                  nasn_w.with_suffix(".json"), "--quiet"],
        "same file", "nasn_ok.json", outputs=False, untouched=[nasn_w.with_suffix(".json")], absent=[rel / "o7.h5"])
    add("data loss", "export_out_is_weights", ["export-onnx", "--model", "nasn", "--weights", nasn_w, "--out", nasn_w],
        "same file", nasn_w.name, outputs=False, untouched=[nasn_w])
    add("data loss", "export_json_is_out", ["export-onnx", "--model", "nasn", "--weights", nasn_w, "--out",
                                             rel / "m.onnx", "--json", rel / "m.onnx"], "same file", "m.onnx",
        outputs=False, absent=[rel / "m.onnx"])
    add("data loss", "export_out_dev_null", ["export-onnx", "--model", "nasn", "--weights", nasn_w, "--out",
                                              "/dev/null"], "refusing", "/dev/null", outputs=False,
        untouched=["/dev/null"])
    ev_t, ev_p = rel / "ev_targets", rel / "ev_predictions"
    ev_t.mkdir(exist_ok=True)
    ev_p.mkdir(exist_ok=True)
    _write_h5(ev_t / "vol.h5", reconstruction_esc=ref)
    _write_h5(ev_p / "vol.h5", reconstruction=ref)
    for who, folder in (("target", ev_t), ("prediction", ev_p)):
        add("data loss", f"evaluate_json_is_{who}", ["evaluate", "--targets", ev_t, "--predictions", ev_p,
                                                     "--json", folder / "vol.h5", "--quiet"],
            "same file", "vol.h5", outputs=False, untouched=[folder / "vol.h5"])
    add("data loss", "evaluate_json_fifo", ["evaluate", "--targets", ev_t, "--predictions", ev_p, "--json", fifo,
                                            "--quiet"], "refusing", fifo.name, outputs=False)

    # ---- garbage written: non-finite weights, out-of-range numbers --------------------------
    for label, value in (("nan", float("nan")), ("inf", float("inf"))):
        for model, build in (("nasn", lambda: build_model("nasn", **small)),
                             ("dccnn", lambda: build_model("dccnn", blocks=1, channels=4, cascades=1))):
            net = build()
            with torch.no_grad():
                next(iter(net.parameters())).fill_(value)
            w = save_weights(net, rel / f"{model}_{label}.safetensors")
            add("garbage", f"weights_{label}_{model}", ["reconstruct", good, "--model", model, "--weights", w,
                                                        "--device", "cpu"], "NaN or Inf", w.name)
    net = build_model("nasn", **small)
    with torch.no_grad():
        list(net.parameters())[-1][0] = float("nan")
    w = save_weights(net, rel / "nasn_one_nan.safetensors")
    add("garbage", "weights_one_nan_entry", ["reconstruct", good, "--model", "nasn", "--weights", w, "--device", "cpu"],
        "NaN or Inf", w.name)
    flags = {
        "--tv-weight": ["nan", "inf", "-inf", "-1", "-0.001", "1e7", "abc", ""],
        "--tv-iterations": ["-1", "0", "1.5", "abc", "1e9", "200000"],
        "--acceleration": ["nan", "inf", "-4", "0.5", "abc", "1e19", "1e400"],
        "--center-fraction": ["-0.1", "1.5", "nan", "inf"],
        "--batch-size": ["0", "-1", "2000", "abc"],
        "--crop": ["7", "-1", "5000", "abc", "1e3"],
        "--seed": ["-1", str(2**32), str(2**64), "abc", "1.5"],
        "--device": ["tpu", "cuda:x", "", "CPU", "gpu0"],
        "--model": ["nosuch"],
    }
    for flag, values in flags.items():
        for i, value in enumerate(values):
            extra = [flag, value]
            if flag.startswith("--tv"):
                extra = ["--model", "tv", "--tv-backend", "torch", *extra]
            expect = f"argument {flag}" if flag != "--model" else "unknown model"
            add("garbage", f"flag_{flag[2:].replace('-', '_')}_{i}", ["reconstruct", good, *extra], expect, None)

    # ---- masks: strictly 0/1 of the right length --------------------------------------------
    def json_mask(name, text, expect):
        path = rel / f"{name}.json"
        path.write_text(text)
        add("masks", name, ["reconstruct", good, "--mask-file", path], expect, path.name if expect else None)

    ones = [1 if i % 2 == 0 else 0 for i in range(W)]
    json_mask("mask_json_strings", json.dumps({"lines": [str(v) for v in ones]}), "0/1")
    json_mask("mask_json_words", json.dumps({"lines": ["yes" if v else "no" for v in ones]}), "0/1")
    json_mask("mask_json_null", json.dumps({"lines": [None if v else 0 for v in ones]}), "0/1")
    json_mask("mask_json_nested", json.dumps({"lines": [[v] for v in ones]}), "0/1")
    json_mask("mask_json_dicts", json.dumps({"lines": [{"v": v} for v in ones]}), "0/1")
    json_mask("mask_json_two", json.dumps({"lines": [2 * v for v in ones]}), "only 0 and 1")
    json_mask("mask_json_negative", json.dumps({"lines": [-3 * v for v in ones]}), "only 0 and 1")
    json_mask("mask_json_quarter", json.dumps({"lines": [0.25 if v else 1 for v in ones]}), "only 0 and 1")
    json_mask("mask_json_nan", '{"lines": [' + ", ".join("NaN" if v else "1" for v in ones) + "]}", "only 0 and 1")
    json_mask("mask_json_infinity", '{"lines": [' + ", ".join("Infinity" if v else "0" for v in ones) + "]}",
              "only 0 and 1")
    json_mask("mask_json_lines_string", json.dumps({"lines": "1010101010101010"}), "must be a list")
    json_mask("mask_json_lines_object", json.dumps({"lines": {"0": 1}}), "must be a list")
    json_mask("mask_json_top_level_list", json.dumps(ones), "not a mask file")
    json_mask("mask_json_empty_lines", json.dumps({"lines": []}), "columns")
    json_mask("mask_json_short", json.dumps({"lines": ones[:-1]}), "15 columns")
    json_mask("mask_json_huge_int", '{"lines": [' + ", ".join(["1" + "0" * 400] + ["1"] * (W - 1)) + "]}",
              "only 0 and 1")
    json_mask("mask_json_deep", '{"lines": ' + "[" * 50_000 + "]" * 50_000 + "}", "not a mask file")
    json_mask("mask_json_truncated", '{"lines": [1, 0, 1', "not a mask file")
    json_mask("mask_json_bools_valid", json.dumps({"lines": [bool(v) for v in ones]}), None)
    json_mask("mask_json_floats_valid", json.dumps({"lines": [float(v) for v in ones]}), None)
    (rel / "mask_json_latin1.json").write_bytes(b'{"lines": "\xff\xfe"}')
    add("masks", "mask_json_not_utf8", ["reconstruct", good, "--mask-file", rel / "mask_json_latin1.json"],
        "not a mask file", "mask_json_latin1.json")

    def npy_mask(name, array, expect):
        path = rel / f"{name}.npy"
        np.save(path, array)
        add("masks", name, ["reconstruct", good, "--mask-file", path], expect, path.name if expect else None)

    base = np.asarray(ones)
    nanm = base.astype(np.float32)
    nanm[1] = np.nan
    npy_mask("mask_npy_nan", nanm, "only 0 and 1")
    npy_mask("mask_npy_inf", np.where(base == 1, np.inf, 0.0), "only 0 and 1")
    npy_mask("mask_npy_negative", -3 * base, "only 0 and 1")
    npy_mask("mask_npy_quarter", np.where(base == 1, 0.25, 1.0), "only 0 and 1")
    npy_mask("mask_npy_two", 2 * base.astype(np.uint8), "only 0 and 1")
    # 2-D arrays are read as 2-D patterns (of the wrong grid here), with a hint at column masks
    npy_mask("mask_npy_row", base[None].astype(bool), "is a 1x16 pattern, the data's k-space grid is 16x16 "
             "(a column mask is a 1-D array of 16)")
    npy_mask("mask_npy_column", base[:, None].astype(bool), "is a 16x1 pattern")
    npy_mask("mask_npy_square", np.ones((4, 4), bool), "is a 4x4 pattern")
    npy_mask("mask_npy_strings", np.array([str(v) for v in ones]), "data type")
    npy_mask("mask_npy_complex", base.astype(np.complex64), "data type")
    npy_mask("mask_npy_structured", np.zeros(W, dtype=[("a", "i4")]), "data type")
    npy_mask("mask_npy_scalar", np.array(1), "shape ()")
    npy_mask("mask_npy_uint8_valid", base.astype(np.uint8), None)
    npy_mask("mask_npy_float_valid", base.astype(np.float64), None)
    npy_mask("mask_npy_int64_valid", base.astype(np.int64), None)
    np.savez(rel / "mask_archive.npz", lines=base)
    (rel / "mask_archive.npy").write_bytes((rel / "mask_archive.npz").read_bytes())
    add("masks", "mask_npy_is_npz", ["reconstruct", good, "--mask-file", rel / "mask_archive.npy"], "not a mask file",
        "mask_archive.npy")

    def test_file(name, mask, expect, **extra):
        path = rel / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("kspace", data=_kspace())
            f.create_dataset("mask", data=mask, **extra)
        recon("masks", name, path, expect, names="same" if expect else None)

    test_file("test_mask_strings", np.array([str(v).encode() for v in ones]), "'mask'")
    test_file("test_mask_vlen_strings", np.array([str(v) for v in ones], dtype=object), "'mask'",
              dtype=h5py.string_dtype())
    test_file("test_mask_nan", np.where(base == 1, np.nan, 0.0), "only 0 and 1")
    test_file("test_mask_nan_and_ones", np.where(base == 1, 1.0, np.nan), "only 0 and 1")
    test_file("test_mask_two", 2 * base, "only 0 and 1")
    test_file("test_mask_negative", -3 * base, "only 0 and 1")
    test_file("test_mask_quarter", np.where(base == 1, 1.0, 0.25), "only 0 and 1")
    test_file("test_mask_complex", base.astype(np.complex64), "'mask'")
    test_file("test_mask_compound", np.zeros(W, dtype=[("a", "i4"), ("b", "f4")]), "'mask'")
    test_file("test_mask_uint8_valid", base.astype(np.uint8), None)
    test_file("test_mask_float_valid", base.astype(np.float32), None)
    test_file("test_mask_int_valid", base.astype(np.int32), None)

    # ---- memory and hangs ------------------------------------------------------------------
    with h5py.File(rel / "header_2gib_string.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_dataset("ismrmrd_header", shape=(), dtype="S2147483647")
    recon("memory", "header_scalar_2gib_string", rel / "header_2gib_string.h5", None, big=True,
          note="a scalar fixed-length string of 2 GiB declared in an 18 kB file: not read")
    with h5py.File(rel / "header_vlen_2mib.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_dataset("ismrmrd_header", data="x" * (2 << 20), dtype=h5py.string_dtype())
    recon("memory", "header_vlen_over_cap", rel / "header_vlen_2mib.h5", None,
          note="a real 2 MiB variable-length header: over the cap, skipped from its stored length")
    with h5py.File(rel / "header_1d_strings.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_dataset("ismrmrd_header", shape=(1 << 20,), dtype="S4096")
    recon("memory", "header_array_of_long_strings", rel / "header_1d_strings.h5", None, big=True)
    with h5py.File(rel / "attr_4gib.h5", "w", libver="latest") as f:
        f.create_dataset("kspace", data=_kspace())
        f.attrs.create("note", data=b"x" * (2 << 20))
    recon("memory", "attribute_over_cap", rel / "attr_4gib.h5", None)
    for name, shape in (("thin_wide", (8, 4096, 2)), ("tall_thin", (4096, 8, 2)), ("strip_16", (16, 2048, 1))):
        path = rel / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), path)
        recon("memory", f"nifti_{name}", path, "zero-padded", big=True)
    for name, shape in (("thin_wide", (2, 8, 4096)), ("tall_thin", (2, 4096, 8))):
        path = rel / f"{name}.npy"
        np.save(path, np.ones(shape, np.float32))
        recon("memory", f"npy_{name}", path, "zero-padded", reader=False, big=True)
    path = rel / "moderate_strip.npy"
    np.save(path, np.ones((1, 64, 256), np.float32))
    recon("memory", "npy_moderate_strip_valid", path, None, reader=False, note="4x padding: accepted")
    sidecar = json.loads(nasn_w.with_suffix(".json").read_text())
    dcc_w = save_weights(build_model("dccnn", blocks=1, channels=4, cascades=1), rel / "dcc_ok.safetensors")
    dcc_side = json.loads(dcc_w.with_suffix(".json").read_text())
    for name, model, side, weights in (
            ("sidecar_million_cascades_nasn", "nasn", {**sidecar, "cascades": 10**6}, nasn_w),
            ("sidecar_million_cells", "nasn", {**sidecar, "cells": 10**6}, nasn_w),
            ("sidecar_million_blocks", "dccnn", {**dcc_side, "blocks": 10**6}, dcc_w),
            ("sidecar_million_cascades_dccnn", "dccnn", {**dcc_side, "cascades": 10**6}, dcc_w),
            ("sidecar_billion_channels", "dccnn", {**dcc_side, "channels": 10**9}, dcc_w),
            ("sidecar_blocks_float", "dccnn", {**dcc_side, "blocks": 2.5}, dcc_w),
            ("sidecar_blocks_string", "dccnn", {**dcc_side, "blocks": "3"}, dcc_w),
            ("sidecar_name_dict", "dccnn", {**dcc_side, "name": {"a": 1}}, dcc_w),
            ("sidecar_genotype_list", "nasn", {**sidecar, "genotype": [1, 2]}, nasn_w),
            ("sidecar_genotype_space_dict", "nasn", {**sidecar, "genotype": {**sidecar["genotype"], "space": {}}},
             nasn_w),
    ):
        w = rel / f"{name}.safetensors"
        w.write_bytes(weights.read_bytes())
        w.with_suffix(".json").write_text(json.dumps(side))
        expect = {"sidecar_genotype_list": "genotype", "sidecar_name_dict": "unknown model",
                  "sidecar_genotype_space_dict": "search space"}.get(name, "must be")
        add("memory", name, ["reconstruct", good, "--model", model, "--weights", w, "--device", "cpu"], expect,
            w.with_suffix(".json").name, big=True)
    for blocks in ("1000000", "65", "0", "-3"):
        add("memory", f"model_info_blocks_{blocks}", ["model-info", "--model", "dccnn", "--blocks", blocks],
            "argument --blocks", None, outputs=False)
    add("memory", "train_blocks_million", ["train", "--model", "dccnn", "--blocks", "1000000", "--data", rel,
                                           "--preset", "cpu"], "argument --blocks", None, outputs=False)
    for i, size in enumerate((["60000"], ["8", "60000"], ["1025"], ["7"], ["0"], ["320", "320", "320"])):
        expect = ("--size takes N or H W" if len(size) == 3 else "too small to export" if size == ["7"]
                  else "argument --size")
        add("memory", f"export_size_{i}", ["export-onnx", "--model", "nasn", "--weights", nasn_w, "--size", *size,
                                           "--out", rel / f"size{i}.onnx"], expect, None, outputs=False,
            absent=[rel / f"size{i}.onnx"])
    geno_many = rel / "genotype_many_nodes.json"
    geno_many.write_text(json.dumps({"space": "A", "num_nodes": 100_000,
                                     "nodes": [[["sep_conv_3x3", 0], ["skip_connect", 1]]] * 100_000}))
    add("memory", "genotype_100k_nodes", ["model-info", "--model", "nasn", "--genotype", geno_many], "at most",
        geno_many.name, outputs=False)

    # ---- internal errors that must be one-line errors --------------------------------------
    comp = np.zeros((S, 8, 8), dtype=[("re", "f4"), ("im", "f4")])
    recon("internal", "reference_compound", _write_h5(rel / "ref_compound.h5", kspace=_kspace(),
                                                      reconstruction_esc=comp), "data type")
    recon("internal", "reference_complex", _write_h5(rel / "ref_complex.h5", kspace=_kspace(),
                                                     reconstruction_esc=ref[:, 4:12, 4:12].astype(np.complex64)),
          "data type")
    recon("internal", "reference_strings", _write_h5(rel / "ref_strings.h5", kspace=_kspace(),
                                                     reconstruction_esc=np.full((S, 8, 8), b"ab")), "data type")
    kcomp = np.zeros((S, H, W), dtype=[("a", "f4"), ("b", "f4")])  # ("r", "i") would be h5py complex
    recon("internal", "kspace_compound", _write_h5(rel / "k_compound.h5", kspace=kcomp), "must be complex")
    for name, key, target in (("loop_kspace", "kspace", "/kspace"), ("loop_reference", "reconstruction_esc", "/a"),
                              ("loop_mask", "mask", "/mask")):
        path = rel / f"{name}.h5"
        with h5py.File(path, "w") as f:
            if key != "kspace":
                f.create_dataset("kspace", data=_kspace())
            if key == "reconstruction_esc":
                f["a"] = h5py.SoftLink("/b")
                f["b"] = h5py.SoftLink("/a")
            f[key] = h5py.SoftLink(target)
        recon("internal", f"soft_link_{name}", path, "cannot", note="an h5 soft link loop")
    path = rel / "loop_header.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f["ismrmrd_header"] = h5py.SoftLink("/ismrmrd_header")
    recon("internal", "soft_link_loop_header", path, None, note="an informational header that loops: skipped")
    path = rel / "ext_loop.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = h5py.ExternalLink(str(path), "/kspace")
    recon("internal", "external_link_to_itself", path, "cannot")
    for dev in ("tpu", "cuda:x", "xla", "cuda:1:2"):
        add("internal", f"reconstruct_device_{dev.replace(':', '_')}",
            ["reconstruct", good, "--model", "nasn", "--device", dev], "argument --device", None)
        add("internal", f"train_device_{dev.replace(':', '_')}",
            ["train", "--model", "dccnn", "--data", rel, "--device", dev], "argument --device", None, outputs=False)
    add("internal", "reconstruct_device_cuda_999", ["reconstruct", good, "--model", "nasn", "--weights", nasn_w,
                                                    "--device", "cuda:999"], "device", None)

    def geno(name, text, expect):
        path = rel / f"{name}.json"
        path.write_text(text)
        add("internal", name, ["model-info", "--model", "nasn", "--genotype", path], expect, path.name,
            outputs=False)

    ok_nodes = [[["sep_conv_3x3", 0], ["skip_connect", 1]]]
    geno("genotype_nested_deep", '{"space": "A", "num_nodes": 1, "nodes": ' + "[" * 100_000 + "]" * 100_000 + "}",
         "nested too deeply")
    geno("genotype_nested_deep_top", "[" * 100_000 + "]" * 100_000, "invalid JSON")
    geno("genotype_nodes_dict", json.dumps({"space": "A", "num_nodes": 1, "nodes": {"a": 1}}), "'nodes' must be a list")
    geno("genotype_node_dict", json.dumps({"space": "A", "num_nodes": 1, "nodes": [{"a": 1, "b": 2}]}), "node 1")
    geno("genotype_edge_dict", json.dumps({"space": "A", "num_nodes": 1, "nodes": [[{"0": "a", "1": 0}, ["skip_connect", 1]]]}),
         "edge 1")
    geno("genotype_space_dict", json.dumps({"space": {"A": 1}, "num_nodes": 1, "nodes": ok_nodes}), "search space")
    geno("genotype_space_list", json.dumps({"space": ["A"], "num_nodes": 1, "nodes": ok_nodes}), "search space")
    geno("genotype_space_null", json.dumps({"space": None, "num_nodes": 1, "nodes": ok_nodes}), "search space")
    geno("genotype_num_nodes_string", json.dumps({"space": "A", "num_nodes": "1", "nodes": ok_nodes}), "'num_nodes'")
    geno("genotype_num_nodes_float", json.dumps({"space": "A", "num_nodes": 1.0, "nodes": ok_nodes}), "'num_nodes'")
    geno("genotype_num_nodes_bool", json.dumps({"space": "A", "num_nodes": True, "nodes": ok_nodes}), "'num_nodes'")
    geno("genotype_op_int", json.dumps({"space": "A", "num_nodes": 1, "nodes": [[[3, 0], ["skip_connect", 1]]]}), "edge 1")
    geno("genotype_op_list", json.dumps({"space": "A", "num_nodes": 1, "nodes": [[[["a"], 0], ["skip_connect", 1]]]}),
         "edge 1")
    geno("genotype_index_string", json.dumps({"space": "A", "num_nodes": 1, "nodes": [[["sep_conv_3x3", "0"], ["skip_connect", 1]]]}),
         "edge 1")
    geno("genotype_index_bool", json.dumps({"space": "A", "num_nodes": 1, "nodes": [[["sep_conv_3x3", True], ["skip_connect", 1]]]}),
         "edge 1")
    geno("genotype_index_float", json.dumps({"space": "A", "num_nodes": 1, "nodes": [[["sep_conv_3x3", 0.0], ["skip_connect", 1]]]}),
         "edge 1")
    geno("genotype_index_huge", json.dumps({"space": "A", "num_nodes": 1, "nodes": [[["sep_conv_3x3", 10**30], ["skip_connect", 1]]]}),
         "out of range")
    geno("genotype_top_string", json.dumps("A"), "JSON object")
    geno("genotype_top_null", "null", "JSON object")
    geno("genotype_empty_nodes", json.dumps({"space": "A", "num_nodes": 0, "nodes": []}), "at least one node")
    for flag, value in (("--epochs", "0"), ("--epochs", "-1"), ("--steps-per-epoch", "0"), ("--seed", "-1"),
                        ("--seed", str(2**64)), ("--crop", "0"), ("--crop", "nan"), ("--epochs", "1.5")):
        add("internal", f"train_{flag[2:].replace('-', '_')}_{value.replace('-', 'm').replace('.', '_')}",
            ["train", "--model", "dccnn", "--data", rel, flag, value], f"argument {flag}", None, outputs=False)
    for flag, value in (("--channels", "0"), ("--channels", "-4"), ("--seed", str(2**64)), ("--seed", "-1"),
                        ("--cells", "0"), ("--patience", "0"), ("--warmup-epochs", "-1"), ("--epochs", "0"),
                        ("--nodes", "9")):
        add("internal", f"search_{flag[2:].replace('-', '_')}_{value.replace('-', 'm')}",
            ["search", "--data", rel, flag, value], f"argument {flag}", None, outputs=False)
    for flag, value in (("--size", "0"), ("--slab", "0"), ("--size", "-5"), ("--slab", "abc"), ("--size", "99999")):
        out = rel / f"prepared_{flag[2:]}_{value}"
        add("internal", f"prepare_{flag[2:]}_{value.replace('-', 'm')}",
            ["data", "prepare", "--out", out, flag, value, "--quiet"], f"argument {flag}", None, outputs=False,
            absent=[out])

    # ---- left behind ------------------------------------------------------------------------
    data = rel / "tiny_data"
    for split, n in (("train", 2), ("val", 1)):
        (data / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _write_h5(data / split / f"{split}{i}.h5", kspace=_kspace(), reconstruction_esc=ref)
    bad_geno = rel / "bad_genotype_for_train.json"
    bad_geno.write_text(json.dumps({"space": "A", "num_nodes": 1, "nodes": [[["conv_99x99", 0], ["skip_connect", 1]]]}))
    add("left behind", "train_bad_genotype", ["train", "--model", "nasn", "--genotype", bad_geno, "--data", data,
                                              "--preset", "cpu"], "unknown operation", bad_geno.name, outputs=False)
    add("left behind", "train_genotype_missing", ["train", "--model", "nasn", "--genotype", rel / "nosuch.json",
                                                  "--data", data], "cannot read genotype file", "nosuch.json",
        outputs=False)
    add("left behind", "train_genotype_for_dccnn", ["train", "--model", "dccnn", "--genotype", bad_geno,
                                                    "--data", data], "--genotype only applies", None, outputs=False)
    add("left behind", "train_blocks_for_nasn", ["train", "--model", "nasn", "--blocks", "2", "--data", data],
        "--blocks does not apply", None, outputs=False)
    add("left behind", "train_cuda_unavailable_or_missing", ["train", "--model", "dccnn", "--data", data,
                                                             "--device", "cuda:999"], "device", None, outputs=False)
    add("left behind", "search_cuda_missing", ["search", "--data", data, "--device", "cuda:999"], "device", None,
        outputs=False)
    for i, src in enumerate((["nosuch"], ["ch2", "nosuch"], ["CH2"])):
        out = rel / f"prepare_sources_{i}"
        add("left behind", f"prepare_unknown_sources_{i}", ["data", "prepare", "--out", out, "--sources", *src,
                                                            "--quiet"], "unknown source", None, outputs=False,
            absent=[out])
    out = rel / "prepare_onto_file"
    out.write_bytes(b"x")
    add("left behind", "prepare_out_is_a_file", ["data", "prepare", "--out", out, "--sources", "ch2", "--quiet"],
        "not a folder", out.name, outputs=False, untouched=[out])
    stale_dir = rel / "stale"
    stale_dir.mkdir(exist_ok=True)
    stale = [stale_dir / ".out.h5.999999999.abcdefgh.tmp", stale_dir / ".out.h5.zyxwvuts.tmp"]
    for t in stale:
        t.write_bytes(b"half")
    old = 2 * 24 * 3600
    os.utime(stale[1], (os.path.getmtime(stale[1]) - old,) * 2)
    keep = stale_dir / ".other.h5.999999999.abcdefgh.tmp"
    keep.write_bytes(b"not ours")
    add("left behind", "stale_temporaries_removed", ["reconstruct", good, "--out", stale_dir / "out.h5", "--quiet"],
        None, None, outputs=False, absent=stale, untouched=[keep],
        note="temporaries of killed writes (dead PID, or no PID and two days old) of the same name go; others stay")

    # ---- messages ---------------------------------------------------------------------------
    fifo_in = rel / "fifo_input.h5"
    if not fifo_in.exists():
        os.mkfifo(fifo_in)
    recon("messages", "input_fifo", fifo_in, "FIFO")
    zero_link = rel / "zero_link.h5"
    if not zero_link.is_symlink():
        zero_link.symlink_to("/dev/zero")
    recon("messages", "input_link_to_dev_zero", zero_link, "character device")
    null_link = rel / "null_link.nii"
    if not null_link.is_symlink():
        null_link.symlink_to("/dev/null")
    recon("messages", "input_link_to_dev_null", null_link, "character device")
    dangling = rel / "dangling.h5"
    if not dangling.is_symlink():
        dangling.symlink_to(rel / "nowhere_at_all.h5")
    recon("messages", "input_dangling_symlink", dangling, "no such file")
    fifo_mask = rel / "fifo_mask.npy"
    if not fifo_mask.exists():
        os.mkfifo(fifo_mask)
    add("messages", "mask_file_fifo", ["reconstruct", good, "--mask-file", fifo_mask], "FIFO", fifo_mask.name)
    fifo_geno = rel / "fifo_genotype.json"
    if not fifo_geno.exists():
        os.mkfifo(fifo_geno)
    add("messages", "genotype_fifo", ["model-info", "--model", "nasn", "--genotype", fifo_geno], "FIFO",
        fifo_geno.name, outputs=False)
    add("messages", "genotype_dev_zero", ["model-info", "--model", "nasn", "--genotype", "/dev/zero"],
        "character device", "/dev/zero", outputs=False)
    fifo_w = rel / "fifo_weights.safetensors"
    if not fifo_w.exists():
        os.mkfifo(fifo_w)
    add("messages", "weights_fifo", ["reconstruct", good, "--model", "nasn", "--weights", fifo_w, "--device", "cpu"],
        "not found", fifo_w.name)
    add("messages", "mask_file_directory", ["reconstruct", good, "--mask-file", rel], "is a directory", rel.name)
    if os.geteuid() != 0:  # root reads any file
        unreadable = rel / "unreadable.h5"
        unreadable.write_bytes(good.read_bytes())
        unreadable.chmod(0)
        recon("messages", "input_no_read_permission", unreadable, "permission denied", reader=False)
    big = _kspace().astype(np.complex128)
    ref64 = np.full((S, 8, 8), 1e300)
    recon("messages", "reference_overflows_float32", _write_h5(rel / "ref_1e300.h5", kspace=big,
                                                               reconstruction_esc=ref64), "NaN or Inf",
          note="a float64 reference beyond float32: numpy's overflow warning must not precede the error line")
    kbig = np.full((S, H, W), 1e300 + 0j)
    recon("messages", "kspace_overflows_complex64", _write_h5(rel / "k_1e300.h5", kspace=kbig), "NaN or Inf")
    add("messages", "acceleration_1e19", ["reconstruct", good, "--mask", "equispaced", "--acceleration", "1e19"],
        "argument --acceleration", None)
    add("messages", "acceleration_huge_equispaced", ["reconstruct", good, "--mask", "equispaced",
                                                     "--acceleration", "999999", "--center-fraction", "0"],
        "samples no k-space line", None)
    add("messages", "unknown_flag", ["reconstruct", good, "--no-such-flag"], "unrecognized arguments", None)
    add("messages", "missing_required_out", ["export-onnx", "--model", "nasn"], "--out", None, outputs=False)
    return cases


def _write_manifest(root: Path, cases: list[Case]) -> None:
    with open(root / "cases.json", "w") as f:
        json.dump([asdict(c) for c in cases], f, indent=1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python tests/make_bad_inputs.py OUTDIR", file=sys.stderr)
        return 2
    cases = make_corpus(argv[0])
    for c in cases:
        print(f"{c.name:40s} {'exit 0' if c.expect is None else repr(c.expect)}")
    print(f"{len(cases)} cases in {argv[0]} (cases.json)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
