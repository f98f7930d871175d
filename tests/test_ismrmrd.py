"""ISMRMRD raw data (issue #21): files written with the ``ismrmrd`` package (the format's own
Python implementation) from the real sample scan -- coils simulated by
:func:`backend.coils.simulate_coils`, 2x readout oversampling, a noise scan, shuffled and repeated lines -- read back by
:mod:`backend.ismrmrd_raw`. Reference: the root-sum-of-squares of the simulated coil images,
computed here with numpy."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from backend.coils import simulate_coils
from backend.errors import InputError
from backend.io import open_volume
from raw_checks import reconstructs_and_opens

ismrmrd = pytest.importorskip("ismrmrd")

NOISE, CALIBRATION = 19, 20


def header(readout: int, lines: int, recon: tuple[int, int], slices: int, trajectory="CARTESIAN", z=1) -> str:
    x = ismrmrd.xsd
    space = lambda mx, my: x.encodingSpaceType(  # noqa: E731
        matrixSize=x.matrixSizeType(x=mx, y=my, z=z), fieldOfView_mm=x.fieldOfViewMm(x=mx, y=my, z=5))
    encoding = x.encodingType(
        encodedSpace=space(readout, lines), reconSpace=space(*recon),
        encodingLimits=x.encodingLimitsType(
            kspace_encoding_step_1=x.limitType(minimum=0, maximum=lines - 1, center=lines // 2),
            slice=x.limitType(minimum=0, maximum=slices - 1, center=0)),
        trajectory=getattr(x.trajectoryType, trajectory))
    conditions = x.experimentalConditionsType(H1resonanceFrequency_Hz=63_500_000)
    return x.ToXML(x.ismrmrdHeader(experimentalConditions=conditions, encoding=[encoding]))


def write_raw(path, images: np.ndarray, coils=4, oversampling=2, shuffle=True, repeat_line=None,
              skip_line=None, trajectory="CARTESIAN", z=1, noise=True):
    """Write ``images`` (slices, h, w) as ISMRMRD raw data; returns the coil images (slices,
    coils, h, w) the file encodes."""
    slices, h, w = images.shape
    readout = h * oversampling
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(header(readout, w, (h, w), slices, trajectory, z))
    rng = np.random.default_rng(1)
    if noise:
        acq = ismrmrd.Acquisition.from_array(
            (rng.normal(size=(coils, readout)) + 1j * rng.normal(size=(coils, readout))).astype(np.complex64))
        acq.set_flag(NOISE)
        dset.append_acquisition(acq)
    truth = []
    records = []
    for s in range(slices):
        coil = simulate_coils(images[s], coils, seed=s)
        truth.append(coil)
        padded = np.zeros((coils, readout, w), np.complex64)
        top = (readout - h) // 2
        padded[:, top:top + h] = coil  # the object fills the middle of an oversampled readout FOV
        kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(padded, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        for line in range(w):
            if line == skip_line:
                continue
            records.append((s, line, kspace[:, :, line]))
            if line == repeat_line:  # a second average of the same line
                records.append((s, line, kspace[:, :, line]))
    order = rng.permutation(len(records)) if shuffle else range(len(records))
    for k in order:
        s, line, data = records[k]
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data))
        acq.idx.kspace_encode_step_1 = line
        acq.idx.slice = s
        acq.center_sample = readout // 2
        dset.append_acquisition(acq)
    dset.close()
    return np.stack(truth)


@pytest.fixture(scope="module")
def images(sample_file):
    with h5py.File(sample_file) as f:
        ref = f["reconstruction_esc"][:3]
    return (ref / ref.max()).astype(np.float32)[:, :, 16:-40]  # 224 x 168: not square


def test_raw_file_reads_as_the_rss_of_its_coils(tmp_path, images):
    path = tmp_path / "raw.h5"
    truth = write_raw(path, images, repeat_line=7)
    rss = np.sqrt((np.abs(truth) ** 2).sum(axis=1))
    with open_volume(path) as volume:
        assert volume.info.kind == "multicoil" and volume.info.num_slices == 3
        assert volume.info.output_shape == images.shape[1:]
        assert any("ISMRMRD raw data (4 coils, readout oversampling 2x removed)" in n for n in volume.info.notices)
        for s, sl in enumerate(volume):
            np.testing.assert_allclose(sl.reference, rss[s], atol=2e-5 * rss.max())
            # the reconstruction's k-space is the RSS image's (zero phase, single coil)
            image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(sl.kspace), norm="ortho"))
            np.testing.assert_allclose(np.abs(image), rss[s], atol=2e-5 * rss.max())
        coil = volume.coil_kspace(1)
        assert coil.shape == (4, 224, 168)
        image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(coil, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        np.testing.assert_allclose(image, truth[1], atol=2e-5 * np.abs(truth).max())


def test_reconstruct_and_napari_read_an_ismrmrd_file(tmp_path, images):
    path = tmp_path / "raw.h5"
    write_raw(path, images[:2], coils=2, shuffle=False)
    meta = reconstructs_and_opens(path, tmp_path, (2, 224, 168), "raw.h5: ISMRMRD raw data (2 coils")
    assert "ISMRMRD" in " ".join(meta["metadata"]["notices"])


@pytest.mark.parametrize("change, problem", [
    (dict(trajectory="RADIAL"), "only Cartesian data is read"),
    (dict(z=4), "3-D ISMRMRD acquisition"),
    (dict(skip_line=20), "lacks 1 of its 168 phase-encode lines"),
])
def test_unsupported_raw_files_are_one_line_errors(tmp_path, images, change, problem):
    path = tmp_path / "raw.h5"
    write_raw(path, images[:1], coils=2, **change)
    with pytest.raises(InputError, match=problem) as err:
        open_volume(path)
    assert str(path) in str(err.value)


def test_damaged_raw_files_are_one_line_errors(tmp_path, images, capsys):
    from backend.cli import main

    good = tmp_path / "good.h5"
    write_raw(good, images[:1], coils=2)
    cases = {}
    with h5py.File(good) as f:
        acquisitions = f["dataset/data"][()]
    path = cases["bad_xml.h5"] = tmp_path / "bad_xml.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset/xml", data=np.array([b"<ismrmrdHeader><encoding"], dtype=object),
                         dtype=h5py.special_dtype(vlen=bytes))
        f.create_dataset("dataset/data", data=acquisitions)
    path = cases["only_noise.h5"] = tmp_path / "only_noise.h5"
    with h5py.File(good) as src, h5py.File(path, "w") as f:
        f.create_dataset("dataset/xml", data=src["dataset/xml"][()], dtype=h5py.special_dtype(vlen=bytes))
        f.create_dataset("dataset/data", data=acquisitions[:1])  # the noise scan alone
    path = cases["not_a_table.h5"] = tmp_path / "not_a_table.h5"
    with h5py.File(good) as src, h5py.File(path, "w") as f:
        f.create_dataset("dataset/xml", data=src["dataset/xml"][()], dtype=h5py.special_dtype(vlen=bytes))
        f.create_dataset("dataset/data", data=np.zeros(10))
    expected = {"bad_xml.h5": "not valid XML", "only_noise.h5": "no image acquisition",
                "not_a_table.h5": "not a table of acquisitions"}
    for name, path in cases.items():
        out = tmp_path / f"out_{name}"
        assert main(["reconstruct", str(path), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and expected[name] in err[0], err
        assert not out.exists()
