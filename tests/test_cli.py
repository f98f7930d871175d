import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from backend.cli import build_parser, main
from backend.io import open_volume
from backend.masks import make_mask
from backend.metrics import evaluate_volume


def test_reconstruct_zero_filled_writes_h5_and_json(sample_file, tmp_path, capsys):
    out, js = tmp_path / "zf.h5", tmp_path / "m.json"
    rc = main(["reconstruct", str(sample_file), "--model", "zero-filled", "--mask", "equispaced",
               "--acceleration", "4", "--seed", "3", "--out", str(out), "--json", str(js), "--quiet"])
    assert rc == 0
    metrics = json.loads(js.read_text())
    assert {"mse", "nmse", "psnr", "ssim"} <= set(metrics)
    with h5py.File(out) as f:
        recon = f["reconstruction"][()]
        assert recon.dtype == np.float32
    with open_volume(sample_file) as vol:
        ref = np.stack([s.reference for s in vol])
    assert recon.shape == ref.shape
    m = evaluate_volume(ref, recon)
    assert metrics["psnr"] == pytest.approx(m.psnr) and metrics["ssim"] == pytest.approx(m.ssim)
    # fastMRI's equispaced masks add the centre block on top of every 4th line: below 4x realised
    expected = make_mask("equispaced", 224, 4, seed=3)
    assert metrics["realised_acceleration"] == pytest.approx(expected.realised_acceleration, rel=1e-3)
    assert 3.0 < metrics["realised_acceleration"] < 4.0
    assert "PSNR" in capsys.readouterr().out


def test_mask_file_round_trip(sample_file, tmp_path):
    lines = np.zeros(224, dtype=bool)
    lines[100:124] = True
    lines[::4] = True
    np.save(tmp_path / "mask.npy", lines)
    js = tmp_path / "m.json"
    assert main(["reconstruct", str(sample_file), "--mask-file", str(tmp_path / "mask.npy"),
                 "--out", str(tmp_path / "o.h5"), "--json", str(js), "--quiet"]) == 0
    assert json.loads(js.read_text())["realised_acceleration"] == pytest.approx(224 / lines.sum(), rel=1e-3)


def test_bad_file_one_line_error_exit_2_no_output(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("image", data=np.zeros((2, 8, 8)))
    out = tmp_path / "out.h5"
    proc = subprocess.run([sys.executable, "-m", "backend", "reconstruct", str(bad), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.h5" in lines[0] and "kspace" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.h5*"))


def test_evaluate_dirs(sample_file, tmp_path, capsys):
    targets, preds = tmp_path / "t", tmp_path / "p"
    targets.mkdir()
    preds.mkdir()
    (targets / sample_file.name).write_bytes(sample_file.read_bytes())
    assert main(["reconstruct", str(sample_file), "--out", str(preds / sample_file.name), "--quiet",
                 "--json", str(tmp_path / "r.json")]) == 0
    js = tmp_path / "eval.json"
    assert main(["evaluate", "--targets", str(targets), "--predictions", str(preds), "--json", str(js), "--quiet"]) == 0
    report = json.loads(js.read_text())
    single = json.loads((tmp_path / "r.json").read_text())
    assert report["volumes"][0]["psnr"] == pytest.approx(single["psnr"])
    assert report["summary"]["psnr"]["mean"] == pytest.approx(single["psnr"])
    # a missing target is a clear error
    (preds / "other.h5").write_bytes((preds / sample_file.name).read_bytes())
    assert main(["evaluate", "--targets", str(targets), "--predictions", str(preds), "--quiet"]) == 2
    assert "other.h5" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["reconstruct"], ["evaluate"], ["data"], ["data", "prepare"], ["data", "sample"], ["demo"]])
def test_help_is_complete(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv + ["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "usage: nascsmri" in text
    if argv[:1] == ["reconstruct"]:
        for flag in ["--model", "--weights", "--mask", "--acceleration", "--center-fraction", "--seed", "--out", "--json"]:
            assert flag in text


def test_model_info_json(capsys):
    assert main(["model-info", "--model", "dccnn", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 170022 and info["gflops"] == pytest.approx(17.41, abs=0.01)


def test_reconstruct_with_network_weights_and_mismatch(sample_file, tmp_path, capsys):
    import torch

    from backend.models import build_model, save_weights

    torch.manual_seed(0)
    model = build_model("dccnn", blocks=1, channels=4)
    weights = save_weights(model, tmp_path / "dccnn.safetensors", {"note": "untrained"})
    js = tmp_path / "m.json"
    assert main(["reconstruct", str(sample_file), "--model", "dccnn", "--weights", str(weights),
                 "--out", str(tmp_path / "o.h5"), "--json", str(js), "--quiet"]) == 0
    assert np.isfinite(json.loads(js.read_text())["psnr"])
    # weights of another architecture: one-line error naming the mismatch, exit 2
    assert main(["reconstruct", str(sample_file), "--model", "nasn", "--weights", str(weights),
                 "--out", str(tmp_path / "o2.h5"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dccnn" in err[0] and "nasn" in err[0]
    assert not (tmp_path / "o2.h5").exists()


def test_reconstruct_with_a_gaussian_mask_reports_its_exact_acceleration(sample_file, tmp_path):
    js = tmp_path / "m.json"
    assert main(["reconstruct", str(sample_file), "--mask", "gaussian", "--acceleration", "4", "--seed", "2",
                 "--out", str(tmp_path / "o.h5"), "--json", str(js), "--quiet"]) == 0
    assert json.loads(js.read_text())["realised_acceleration"] == pytest.approx(224 / round(224 / 4), rel=1e-6)


def test_data_prepare_help_names_every_source(capsys):
    """The --sources help lists what backend.datasets.SOURCES holds (the two drifted apart once)."""
    from backend.cli import main
    from backend.datasets import SOURCES

    assert main(["data", "prepare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in SOURCES), text
