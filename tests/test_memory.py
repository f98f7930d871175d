"""Memory and output-path behaviour of a reconstruction.

* A 100-slice volume is reconstructed slice by slice: the peak of traced memory (numpy
  allocations are traced by tracemalloc) stays well below the size of the whole complex k-space.
* An output path that cannot be written (its folder is missing, is a regular file, or the path
  is a folder) is an ``InputError`` before any work starts: exit 2, one line, nothing written.
  (Tests run as root, for whom permission bits do not stop a write, hence these paths.)
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import h5py
import numpy as np
import pytest

from backend import config as cfg
from backend.cli import main
from backend.recon import reconstruct_volume
from backend.progress import run

SLICES, GRID, REF = 100, 128, 32


@pytest.fixture(scope="module")
def volume_100(tmp_path_factory):
    """A 100 x 128 x 128 single-coil fastMRI file with a 32 x 32 reference (13 MB of k-space)."""
    path = tmp_path_factory.mktemp("memory") / "vol100.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ks = f.create_dataset("kspace", shape=(SLICES, GRID, GRID), dtype=np.complex64)
        for i in range(SLICES):  # written slice by slice too
            ks[i] = (rng.standard_normal((GRID, GRID)) + 1j * rng.standard_normal((GRID, GRID))).astype(np.complex64)
        f.create_dataset("reconstruction_esc", data=rng.uniform(0.1, 1, (SLICES, REF, REF)).astype(np.float32))
    return path


def _peak(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        value = fn()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reconstruction_does_not_hold_the_whole_kspace(volume_100):
    full = SLICES * GRID * GRID * np.dtype(np.complex64).itemsize
    # the measurement sees numpy/h5py allocations: reading the whole k-space shows up in full
    with h5py.File(volume_100) as f:
        _, whole = _peak(lambda: f["kspace"][()])
    assert whole >= full

    config = cfg.ReconConfig(model="zero-filled", mask="equispaced", acceleration=4, seed=0)
    result, peak = _peak(lambda: run(reconstruct_volume(volume_100, config)))
    assert result.reconstruction.shape == (SLICES, REF, REF)
    assert result.metrics is not None and np.isfinite(result.metrics.psnr)
    assert peak < full / 2, f"peak {peak / 1e6:.1f} MB for {full / 1e6:.1f} MB of k-space"


# -- outputs that cannot be written ----------------------------------------------------------
@pytest.fixture
def good_input(tmp_path):
    from make_bad_inputs import _good_h5

    return _good_h5(tmp_path / "good.h5")


def _bad_outputs(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.h5").mkdir()
    ok = str(tmp_path / "ok.h5")
    return {
        "parent_is_a_file": (["--out", str(tmp_path / "afile" / "out.h5")], "afile: is not a folder"),
        "missing_folder": (["--out", str(tmp_path / "nope" / "out.h5")], "nope: output folder does not exist"),
        "out_is_a_folder": (["--out", str(tmp_path / "adir.h5")], "adir.h5: is a folder"),
        "json_in_missing_folder": (["--out", ok, "--json", str(tmp_path / "nope" / "m.json")],
                                   "nope: output folder does not exist"),
        "json_under_a_file": (["--out", ok, "--json", str(tmp_path / "afile" / "m.json")], "afile: is not a folder"),
    }


@pytest.mark.parametrize("which", ["parent_is_a_file", "missing_folder", "out_is_a_folder",
                                   "json_in_missing_folder", "json_under_a_file"])
def test_unwritable_output_fails_before_work(good_input, tmp_path, monkeypatch, capsys, which):
    import backend.recon

    def no_work(*args, **kwargs):
        raise AssertionError("the reconstruction started before the output path was checked")

    monkeypatch.setattr(backend.recon, "reconstruct_volume", no_work)
    args, fragment = _bad_outputs(tmp_path)[which]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(["reconstruct", str(good_input), *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nascsmri: error: ") and fragment in err[0], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written, no temp file


def test_evaluate_json_checked_before_work(tmp_path, monkeypatch, capsys):
    import backend.evaluate

    monkeypatch.setattr(backend.evaluate, "evaluate_dirs", lambda *a: pytest.fail("evaluation started"))
    assert main(["evaluate", "--targets", str(tmp_path), "--predictions", str(tmp_path),
                 "--json", str(tmp_path / "nope" / "e.json"), "--quiet"]) == 2
    assert "output folder does not exist" in capsys.readouterr().err


def test_unwritable_output_cli_exit_2(good_input, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "out.h5"
    proc = subprocess.run([sys.executable, "-m", "backend", "reconstruct", str(good_input), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "afile: is not a folder" in lines[0] and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "good.h5"]
