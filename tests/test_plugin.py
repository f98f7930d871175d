"""The napari plugin: manifest, packaging, reader and sample data with a real viewer under Xvfb."""

import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_nascsmri._reader import get_reader

ROOT = Path(__file__).resolve().parents[1]


def test_npe2_validate_with_imports():
    exe = Path(sys.executable).with_name("npe2")
    proc = subprocess.run([str(exe), "validate", "napari-nascsmri", "--imports"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_wheel_ships_the_manifest(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("napari_nascsmri-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        manifest = z.read("napari_nascsmri/napari.yaml").decode()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert "napari_nascsmri:napari.yaml" in entry_points and "nascsmri = backend.cli:main" in entry_points
    assert "backend/data/ch2_cor_sample.h5" in names


def test_reader_declines_foreign_files(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    for p in (other, junk, txt, tmp_path / "missing.nii.gz", [str(other), str(junk)]):
        assert get_reader(p if isinstance(p, list) else str(p)) is None


def test_reader_reads_sample(sample_file):
    reader = get_reader(str(sample_file))
    assert reader is not None
    [(data, meta, kind)] = reader(str(sample_file))
    assert kind == "image" and data.shape == (8, 224, 224)
    assert meta["metadata"]["nascsmri_source"] == str(sample_file)
    with h5py.File(sample_file) as f:
        np.testing.assert_allclose(data, f["reconstruction_esc"][()])


@pytest.mark.gui
def test_open_sample_in_real_viewer(make_napari_viewer, sample_file, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open(str(sample_file), plugin="napari-nascsmri")
    assert len(layers) == 1 and layers[0].data.shape == (8, 224, 224)
    viewer.open_sample("napari-nascsmri", "ch2_sample")
    assert len(viewer.layers) == 2
    out = tmp_path / "saved.h5"
    viewer.layers[0].save(str(out), plugin="napari-nascsmri")
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["reconstruction"][()], layers[0].data)
    shot = viewer.screenshot(canvas_only=False)
    assert shot.ndim == 3 and shot[..., :3].std() > 0
