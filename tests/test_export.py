"""ONNX export: the matrix DC equals the FFT DC, and onnxruntime reproduces PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from backend.dc import DataConsistency
from backend.errors import InputError
from backend.fft import fft2c_np
from backend.models import build_model
from backend.models.export import MatrixDataConsistency, centred_dft_matrix, example_inputs, export_onnx
from backend.models.genotype import Genotype

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("n", [7, 16, 29])
def test_centred_dft_matrix_is_the_centred_unitary_fft(n):
    a = centred_dft_matrix(n)
    rng = np.random.default_rng(n)
    v = rng.normal(size=(n, 3)) + 1j * rng.normal(size=(n, 3))
    expected = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(v, axes=0), axis=0, norm="ortho"), axes=0)
    assert np.allclose(a @ v, expected, atol=1e-12)
    assert np.allclose(a.conj().T @ a, np.eye(n), atol=1e-12)


@pytest.mark.parametrize("lam", [None, 0.5])
@pytest.mark.parametrize("h,w", [(37, 29), (32, 32)])
def test_matrix_dc_equals_the_fft_dc(h, w, lam):
    x, k0, mask = example_inputs(h, w, seed=h)
    image = torch.flip(x, dims=(-1,))  # something that is not already consistent
    expected = DataConsistency(lam)(image, torch.complex(k0[:, 0], k0[:, 1]), mask)
    got = MatrixDataConsistency(h, w, lam)(image, k0, mask)
    assert (got - expected).abs().max().item() < 1e-5
    # and the 2-D transform inside agrees with numpy's centred FFT
    img = torch.complex(image[0, 0].double(), image[0, 1].double()).numpy()
    a_h, a_w = centred_dft_matrix(h), centred_dft_matrix(w)
    assert np.allclose(a_h @ img @ a_w.T, fft2c_np(img), atol=1e-9)


def test_nasn_export_runs_in_onnxruntime_like_pytorch(tmp_path):
    torch.manual_seed(0)
    genotype = Genotype("B", [[["conv_9x1_1x9", 1], ["sep_conv_3x3", 0]], [["dil_2_conv_3x3", 2], ["skip_connect", 1]]])
    model = build_model("nasn", genotype=genotype, channels=8, cells=2)
    report = export_onnx(model, tmp_path / "nasn.onnx", 30, 22)
    assert report["max_abs_diff"] < 1e-5
    assert (tmp_path / "nasn.onnx").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nasn.onnx"]


def test_failed_check_writes_nothing(tmp_path):
    torch.manual_seed(0)
    model = build_model("dccnn", blocks=1, channels=4)
    with pytest.raises(InputError, match="differs from PyTorch"):
        export_onnx(model, tmp_path / "m.onnx", 16, 16, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_of_the_shipped_dccnn(tmp_path):
    out, report = tmp_path / "dccnn.onnx", tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "export-onnx", "--model", "dccnn", "--size", "40", "36",
                           "--out", str(out), "--json", str(report)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert (data["height"], data["width"]) == (40, 36) and data["max_abs_diff"] < 1e-5
    assert data["weights"].endswith("dccnn.safetensors")
    assert out.exists()


def test_cli_export_rejects_three_sizes(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "export-onnx", "--model", "dccnn", "--size", "4", "5", "6",
                           "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert proc.returncode == 2 and "--size takes N or H W" in proc.stderr


def test_cli_export_bad_weights_are_one_line_errors(tmp_path):
    from backend.models import shipped_weights

    cases = {"missing": (tmp_path / "nope.safetensors", "nope.safetensors"),
             "wrong model": (shipped_weights("dccnn"), "weights are for model 'dccnn', not 'nasn'")}
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    cases["not safetensors"] = (junk, "junk.safetensors")
    for label, (weights, expected) in cases.items():
        out = tmp_path / "m.onnx"
        proc = subprocess.run([sys.executable, "-m", "backend.cli", "export-onnx", "--model", "nasn", "--weights", str(weights),
                               "--size", "16", "--out", str(out)], capture_output=True, text=True)
        assert proc.returncode == 2, (label, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, (label, proc.stderr)
        assert not out.exists()
