"""DICOM magnitude reading (issue #21): files written by pydicom from the real sample, and real
DICOM files that ship in PyPI packages (pydicom-data's shoulder, heudiconv's Siemens mosaic).
Reference: the arrays written, and nibabel's own DICOM wrapper for the mosaic."""

from __future__ import annotations

import importlib.util
import os

import h5py
import numpy as np
import pytest

from backend.dicom import is_dicom, load_dicom
from backend.errors import InputError

pydicom = pytest.importorskip("pydicom")


def _write(path, pixels: np.ndarray, z: float, series="1.2.3", slope=1.0, intercept=0.0, frames=False):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.SOPClassUID, ds.SOPInstanceUID = "MR", MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, z]
    ds.InstanceNumber = int(z)
    ds.PixelSpacing = [0.9, 0.8]
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    arr = np.asarray(pixels, dtype=np.uint16)
    if frames:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = arr.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


@pytest.fixture(scope="module")
def sample_images(sample_file):
    with h5py.File(sample_file) as f:
        images = f["reconstruction_esc"][:4]
    return np.round(images / images.max() * 4000).astype(np.uint16)


def test_a_shuffled_series_folder_is_sorted_along_the_slice_normal(tmp_path, sample_images):
    order = [2, 0, 3, 1]
    for name, k in zip("dcba", order):  # file names in another order than the positions
        _write(tmp_path / f"{name}.dcm", sample_images[k], z=float(k) * 3)
    data, spacing = load_dicom(tmp_path)
    np.testing.assert_array_equal(data, sample_images.astype(np.float32))
    assert spacing == pytest.approx((0.9, 0.8)) and is_dicom(tmp_path)


def test_single_and_multiframe_files_with_rescale(tmp_path, sample_images):
    _write(tmp_path / "one.dcm", sample_images[0], 0, slope=0.5, intercept=10)
    data, _ = load_dicom(tmp_path / "one.dcm")
    np.testing.assert_allclose(data[0], sample_images[0] * 0.5 + 10)
    _write(tmp_path / "multi.dcm", sample_images, 0, frames=True)
    data, _ = load_dicom(tmp_path / "multi.dcm")
    np.testing.assert_array_equal(data, sample_images.astype(np.float32))


def test_real_dicom_files_from_packages():
    spec = importlib.util.find_spec("data_store")
    if spec is None:
        pytest.skip("pydicom-data is not installed")
    shoulder = os.path.join(spec.submodule_search_locations[0], "data", "MR2_UNCR.dcm")
    data, spacing = load_dicom(shoulder)
    assert data.shape == (1, 1024, 1024) and spacing == pytest.approx((0.195313, 0.195313))
    assert (data > 0.1 * data.max()).mean() > 0.05
    spec = importlib.util.find_spec("heudiconv")
    if spec is None:
        pytest.skip("heudiconv is not installed")
    mosaic = os.path.join(spec.submodule_search_locations[0], "tests", "data", "axasc35.dcm")
    data, _ = load_dicom(mosaic)
    from nibabel.nicom import dicomwrappers

    ref = np.asarray(dicomwrappers.wrapper_from_file(mosaic).get_data(), dtype=np.float32)
    assert data.shape == (35, 64, 64)
    np.testing.assert_array_equal(data, np.moveaxis(ref, -1, 0))


def test_bad_dicom_inputs_get_one_line_errors(tmp_path, sample_images):
    (tmp_path / "text.dcm").write_text("not dicom at all")
    with pytest.raises(InputError, match="not a DICOM file|not a readable DICOM"):
        load_dicom(tmp_path / "text.dcm")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write(mixed / "a.dcm", sample_images[0], 0)
    _write(mixed / "b.dcm", sample_images[1][:100], 1)
    with pytest.raises(InputError, match="different sizes"):
        load_dicom(mixed)
    two = tmp_path / "two"
    two.mkdir()
    _write(two / "a.dcm", sample_images[0], 0, series="1.1")
    _write(two / "b.dcm", sample_images[1], 1, series="1.2")
    with pytest.raises(InputError, match="2 DICOM series"):
        load_dicom(two)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no DICOM images"):
        load_dicom(empty)


def test_reconstruct_reads_a_dicom_series_folder(tmp_path, sample_images):
    """The CLI path: a folder of DICOM slices opens as a magnitude volume with the notice, and
    reconstructs like the same images given as .npy."""
    from backend.config import ReconConfig
    from backend.io import open_volume
    from backend.recon import reconstruct_volume
    from backend.progress import run

    series = tmp_path / "series"
    series.mkdir()
    for k in range(3):
        _write(series / f"{k}.dcm", sample_images[k], z=float(k))
    np.save(tmp_path / "same.npy", sample_images[:3].astype(np.float32))
    volume = open_volume(series)
    assert volume.info.num_slices == 3 and any("simulated from the magnitude" in n for n in volume.info.notices)
    config = ReconConfig(model="zero-filled", seed=1)
    a = run(reconstruct_volume(series, config))
    b = run(reconstruct_volume(tmp_path / "same.npy", config))
    np.testing.assert_array_equal(a.reconstruction, b.reconstruction)


def test_napari_opens_a_dicom_folder_and_an_extensionless_file(make_napari_viewer, tmp_path, sample_images):
    """The plugin's reader takes a series folder and a DICOM file without extension (the magic
    at byte 128); it declines a folder of other files. Reference: the pixel arrays written."""
    from napari_nascsmri._reader import get_reader

    series = tmp_path / "series"
    series.mkdir()
    for k in range(3):
        _write(series / f"{k}.dcm", sample_images[k], z=float(k))
    single = tmp_path / "IM0001"
    _write(single, sample_images[0], z=0.0)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("not an image")
    assert get_reader(str(other)) is None and get_reader(str(tmp_path / "notes" / "a.txt")) is None
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(series), plugin="napari-nascsmri")
    np.testing.assert_array_equal(layer.data, sample_images[:3].astype(np.float32))
    assert any("simulated from the magnitude" in n for n in layer.metadata["notices"])
    [one] = viewer.open(str(single), plugin="napari-nascsmri")
    np.testing.assert_array_equal(np.asarray(one.data)[0], sample_images[0].astype(np.float32))
