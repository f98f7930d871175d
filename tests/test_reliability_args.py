"""Property test (hypothesis) over the argument space of ``reconstruct`` and ``train`` (issue #18).

Whatever the flags and values (valid, out of range, NaN, words, huge integers, devices that do
not exist, outputs that are inputs or devices), the command either succeeds with finite output
or answers with exactly one line ``nascsmri: error: ...`` and status 2; it never ends with an
internal error (status 1) or a traceback, never leaves a file behind on refusal and never
changes its input. Runs in-process through ``backend.cli.main`` (real files, no mocks).
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.cli import main

H = W = 16
BAD_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e400", "abc", "", "1.5", str(2**64), "-0", "0x10"]


def _kspace(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((2, H, W), np.complex64)
    img[:, 4:12, 4:12] = 1
    img += 0.1 * rng.standard_normal((2, H, W))
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)).astype(np.complex64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch

    from backend.models import build_model, save_weights

    root = tmp_path_factory.mktemp("reliability_args")
    good = root / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("kspace", data=_kspace())
        f.create_dataset("reconstruction_esc", data=np.abs(np.fft.ifft2(_kspace())).astype(np.float32)[:, 4:12, 4:12])
    mask = root / "mask.npy"
    np.save(mask, (np.arange(W) % 2 == 0).astype(np.uint8))
    bad_mask = root / "bad_mask.json"
    bad_mask.write_text('{"lines": ["1", "0"]}')
    torch.manual_seed(0)
    weights = save_weights(build_model("nasn", channels=4, cells=1, cascades=1), root / "nasn.safetensors")
    data = root / "data"
    (data / "train").mkdir(parents=True)  # no training file: every train stops at the data check
    (data / "val").mkdir()
    return {"root": root, "good": good, "mask": mask, "bad_mask": bad_mask, "weights": weights, "data": data}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lines(stderr: str) -> list[str]:
    return [seg for line in stderr.split("\n") if (seg := line.split("\r")[-1]).strip()]


def _check(argv: list[str], out_dir: Path, inputs: list[Path], capsys) -> tuple[int, str]:
    before = {p: _digest(p) for p in inputs}
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(argv)
    err = capsys.readouterr().err
    assert rc in (0, 2), (rc, argv, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    for path, digest in before.items():
        assert _digest(path) == digest, f"{path} changed: {argv}"
    if rc == 2:
        lines = _lines(err)
        assert len(lines) == 1 and lines[0].startswith("nascsmri: error: "), (argv, lines)
        assert not any(out_dir.iterdir()), (argv, sorted(p.name for p in out_dir.iterdir()))
    return rc, err


def _value(valid: list[str]):
    return st.sampled_from(valid + BAD_NUMBERS)


RECON_FLAGS = {
    "--model": st.sampled_from(["zero-filled", "tv", "nasn", "unet", "nosuch", ""]),
    "--mask": st.sampled_from(["random", "equispaced", "radial"]),
    "--acceleration": _value(["1", "4", "8", "16", "1000", "1e6", "1e19"]),
    "--center-fraction": _value(["0", "0.08", "0.5", "1", "1.5"]),
    "--seed": _value(["0", "7", str(2**32 - 1), str(2**32)]),
    "--crop": _value(["8", "12", "16", "17", "4096", "7"]),
    "--tv-weight": _value(["0", "0.01", "1", "1e6", "1e7"]),
    "--tv-iterations": _value(["1", "3", "100001"]),
    "--tv-backend": st.sampled_from(["torch", "bart", "auto"]),
    "--device": st.sampled_from(["cpu", "auto", "tpu", "cuda:999", "CPU", ""]),
    "--execution": st.sampled_from(["fast", "reference", "auto", "slow"]),
    "--batch-size": _value(["1", "2", "1024", "1025"]),
    "--mask-file": st.sampled_from(["mask", "bad_mask", "input", "missing"]),
    "--weights": st.sampled_from(["weights", "input", "missing"]),
}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(flags=st.dictionaries(st.sampled_from(sorted(RECON_FLAGS)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: RECON_FLAGS[k] for k in keys})),
    out=st.sampled_from(["fresh", "input", "json_is_out", "dev_null", "mask"]))
def test_reconstruct_arguments_never_crash(files, tmp_path_factory, capsys, flags, out):
    out_dir = tmp_path_factory.mktemp("recon_out")
    names = {"mask": files["mask"], "bad_mask": files["bad_mask"], "input": files["good"],
             "missing": files["root"] / "missing.npy", "weights": files["weights"]}
    argv = ["reconstruct", str(files["good"]), "--quiet"]
    for flag, value in flags.items():
        argv += [flag, str(names.get(value, value))]
    if out == "mask":  # the output is the mask file the command reads
        argv += ["--mask-file", str(files["mask"])]
    outputs = {"fresh": (out_dir / "out.h5", out_dir / "out.json"), "input": (files["good"], None),
               "json_is_out": (out_dir / "o.h5", out_dir / "o.h5"), "dev_null": (Path("/dev/null"), None),
               "mask": (files["mask"], None)}[out]
    argv += ["--out", str(outputs[0])] + (["--json", str(outputs[1])] if outputs[1] else [])
    rc, err = _check(argv, out_dir, [files["good"], files["mask"], files["weights"]], capsys)
    if rc == 0:
        assert out == "fresh", (argv, err)
        with h5py.File(outputs[0]) as f:
            assert np.all(np.isfinite(f["reconstruction"][()]))
    shutil.rmtree(out_dir, ignore_errors=True)


TRAIN_FLAGS = {
    "--model": st.sampled_from(["nasn", "dccnn", "modl", "rdn", "unet", "nosuch"]),
    "--genotype": st.sampled_from(["missing", "bad_mask", "input"]),
    "--blocks": _value(["1", "3", "64", "65", "1000000"]),
    "--preset": st.sampled_from(["cpu", "paper", "ship", "gpu"]),
    "--loss": st.sampled_from(["l1", "ssim", "l1+ssim", "l2"]),
    "--epochs": _value(["1", "100000", "100001"]),
    "--steps-per-epoch": _value(["1", "10000000", "10000001"]),
    "--crop": _value(["8", "32", "4096", "4097"]),
    "--seed": _value(["0", str(2**32 - 1), str(2**32)]),
    "--device": st.sampled_from(["cpu", "auto", "tpu", "cuda:999", "cuda:x"]),
}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(flags=st.dictionaries(st.sampled_from(sorted(TRAIN_FLAGS)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: TRAIN_FLAGS[k] for k in keys})),
    resume=st.booleans(), no_augment=st.booleans())
def test_train_arguments_never_crash(files, tmp_path_factory, capsys, flags, resume, no_augment):
    out_dir = tmp_path_factory.mktemp("train_out")
    names = {"missing": files["root"] / "missing.json", "bad_mask": files["bad_mask"], "input": files["good"]}
    flags = {"--model": "dccnn", **flags}
    argv = ["train", "--data", str(files["data"]), "--quiet", "--out", str(out_dir / "run")]
    for flag, value in flags.items():
        argv += [flag, str(names.get(value, value))]
    argv += ["--resume"] * resume + ["--no-augment"] * no_augment
    rc, err = _check(argv, out_dir, [files["good"], files["bad_mask"]], capsys)
    assert rc == 2, (argv, err)  # the data folder holds no training file
    shutil.rmtree(out_dir, ignore_errors=True)
