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

    cases.extend(_weights_cases(root, good))
    cases.extend(_genotype_cases(root))
    cases.extend(_evaluate_cases(root))
    cases.extend(_data_folder_cases(root, good))
    _write_manifest(root, cases)
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
