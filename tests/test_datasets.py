import json

import h5py
import numpy as np
import pytest

from backend.config import PrepareConfig
from backend.datasets import SOURCES, coronal_slices, foreground_fraction
from backend.fft import ifft2c_np
from backend.io import open_volume
from backend.progress import run
from backend.sample import make_sample


def test_prepare_real_itk_volume(tmp_path):
    from backend.datasets import prepare_dataset

    manifest = run(prepare_dataset(tmp_path, PrepareConfig(slab=16), ["itk_t1"]))
    files = sorted((tmp_path / "test").glob("*.h5"))
    assert files and all(e["split"] == "test" for e in manifest["files"])
    assert json.loads((tmp_path / "dataset.json").read_text())["sources"]["itk_t1"]["licence"].startswith("Apache")
    with open_volume(files[0]) as vol:
        assert vol.info.kind == "singlecoil" and vol.info.output_shape == (224, 224)
        s = vol[0]
    # zero phase: the k-space is the FFT of the magnitude reference
    np.testing.assert_allclose(np.abs(ifft2c_np(s.kspace)), s.reference, atol=1e-3 * s.reference.max())
    with h5py.File(files[0]) as f:
        assert {"kspace", "reconstruction_esc", "ismrmrd_header"} <= set(f)
        assert {"acquisition", "max", "norm", "patient_id", "licence"} <= set(f.attrs)


def test_foreground_rule_keeps_itk_coronal_slices():
    vol, spacing = coronal_slices(SOURCES["itk_t1"].load())
    assert spacing == (2.0, 2.0) and vol.shape[1:] == (128, 128)
    kept = foreground_fraction(vol, 0.1) >= 0.15
    assert 30 < kept.sum() < vol.shape[0]


def test_shipped_sample_is_made_by_the_committed_script(sample_file, tmp_path):
    rebuilt = make_sample(tmp_path / "sample.h5")
    with h5py.File(sample_file) as a, h5py.File(rebuilt) as b:
        np.testing.assert_array_equal(a["reconstruction_esc"][()], b["reconstruction_esc"][()])
        np.testing.assert_allclose(a["kspace"][()], b["kspace"][()], atol=1e-3)
        assert a.attrs["split"] == "sample"
    assert sample_file.stat().st_size < 10 * 2**20


def test_orientations_follow_the_radiological_convention():
    """On a labelled RAS volume (value = 100 x + 10 y + z), each orientation's slice k is the
    plane of index k, rows and columns running as the docstring says."""
    import nibabel as nib

    x, y, z = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    image = nib.Nifti1Image((100 * x + 10 * y + z).astype(np.float32), np.diag([1.0, 2.0, 3.0, 1.0]))
    cor, sp = coronal_slices(image, "coronal")
    assert cor.shape == (5, 6, 4) and sp == (3.0, 1.0)
    assert cor[2, 0, 0] == 100 * 3 + 10 * 2 + 5  # row 0 superior (z max), col 0 the patient's right (x max)
    axi, sp = coronal_slices(image, "axial")
    assert axi.shape == (6, 5, 4) and sp == (2.0, 1.0)
    assert axi[1, 0, 0] == 100 * 3 + 10 * 4 + 1  # row 0 anterior (y max), col 0 right
    sag, sp = coronal_slices(image, "sagittal")
    assert sag.shape == (4, 6, 5) and sp == (3.0, 2.0)
    assert sag[0, 0, 0] == 10 * 4 + 5  # row 0 superior, col 0 anterior


@pytest.mark.parametrize("name,shape", [("dwi_b5", (152, 150, 81)), ("dwi_b1500", (152, 150, 81)),
                                        ("shoulder", (1024, 1, 1024)), ("abdomen", (484, 1, 484))])
def test_scans_from_pypi_packages_load(name, shape):
    image = SOURCES[name].load()
    assert image.shape == shape
    data = np.asarray(image.dataobj, dtype=np.float32)
    assert np.isfinite(data).all() and data.max() > 0 and (data > 0.1 * data.max()).mean() > 0.05
