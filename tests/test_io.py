import h5py
import numpy as np
import pytest

from backend.errors import InputError
from backend.fft import fft2c_np, ifft2c_np
from backend.io import open_volume
from backend.transforms import center_crop


def test_single_coil_paper_pipeline(fastmri_files):
    f = fastmri_files
    with open_volume(f["single"]) as vol:
        assert vol.info.kind == "singlecoil" and len(vol) == 3
        assert vol.info.output_shape == (f["crop"], f["crop"])
        s = vol[1]
    # IFFT -> centre crop of the complex image -> FFT, computed independently with numpy
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(f["kspace"][1]), norm="ortho"))
    top, left = (40 - 16) // 2, (28 - 16) // 2
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img[top : top + 16, left : left + 16]), norm="ortho"))
    np.testing.assert_allclose(s.kspace, expected, atol=1e-4)
    np.testing.assert_allclose(s.reference, f["esc"][1])
    # the reference equals the magnitude of the cropped image (like fastMRI's esc)
    np.testing.assert_allclose(np.abs(ifft2c_np(s.kspace)), s.reference, atol=1e-4)
    assert s.file_mask is None


def test_multicoil_rss(fastmri_files):
    f = fastmri_files
    with open_volume(f["multi"]) as vol:
        assert vol.info.kind == "multicoil"
        assert any("multi-coil file (" in n and "--coils rss" in n for n in vol.info.notices)  # said on open
        s = vol[0]
    rss = center_crop(f["rss"][0], (16, 16))
    np.testing.assert_allclose(np.abs(ifft2c_np(s.kspace)), rss, atol=1e-4)


def test_test_file_uses_its_own_mask(fastmri_files):
    f = fastmri_files
    with open_volume(f["test"]) as vol:
        assert vol.info.kind == "test" and not vol.info.has_reference
        assert vol.info.grid == (40, 28)
        s = vol[0]
    assert np.array_equal(s.file_mask, f["mask"])
    assert s.reference is None


def test_magnitude_volume_npy(tmp_path):
    data = np.random.default_rng(0).uniform(0, 1, (2, 20, 12)).astype(np.float32)
    p = tmp_path / "vol.npy"
    np.save(p, data)
    with open_volume(p) as vol:
        assert vol.info.grid == (20, 20)
        s = vol[0]
    np.testing.assert_allclose(s.kspace, fft2c_np(s.reference.astype(np.complex64)), atol=1e-5)
    np.testing.assert_allclose(s.reference[:, 4:16], data[0])


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


@pytest.mark.parametrize(
    "name,maker,fragment",
    [
        ("no_kspace.h5", lambda p: _write(p, image=np.zeros((2, 8, 8))), "no 'kspace'"),
        ("real.h5", lambda p: _write(p, kspace=np.zeros((2, 16, 16), np.float32)), "must be complex"),
        ("rank.h5", lambda p: _write(p, kspace=np.zeros((16,), np.complex64)), "(slices, H, W)"),
        ("empty_slices.h5", lambda p: _write(p, kspace=np.zeros((0, 16, 16), np.complex64)), "zero slices"),
        ("tiny.h5", lambda p: _write(p, kspace=np.zeros((1, 1, 1), np.complex64)), "too small"),
    ],
)
def test_bad_h5_files_name_the_problem(tmp_path, name, maker, fragment):
    path = maker(tmp_path / name)
    with pytest.raises(InputError) as err:
        open_volume(path)
    assert name in str(err.value) and fragment in str(err.value)


def test_nan_slice_and_crop_too_large(tmp_path):
    k = np.ones((2, 16, 16), np.complex64)
    k[1, 3, 3] = np.nan
    p = _write(tmp_path / "nan.h5", kspace=k)
    with open_volume(p) as vol:
        vol[0]
        with pytest.raises(InputError, match="NaN"):
            vol[1]
    with pytest.raises(InputError, match="smaller than the crop"):
        open_volume(p, crop=32)


def test_not_hdf5_empty_missing_directory(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    truncated = tmp_path / "trunc.h5"
    _write(tmp_path / "full.h5", kspace=np.ones((2, 16, 16), np.complex64))
    truncated.write_bytes((tmp_path / "full.h5").read_bytes()[:1000])
    for path, fragment in [(junk, "unrecognised"), (empty, "empty"), (tmp_path / "nope.h5", "no such file"),
                           (tmp_path, "directory"), (truncated, "not a readable HDF5")]:
        with pytest.raises(InputError, match=fragment):
            vol = open_volume(path)
            vol[0]
