"""Siemens twix raw data (issue #21): VE files written with ``twixtools.write_twix`` and VB files
written from twixtools' VB line header (``tests/twix_files.py``), from the real sample scan -- coils simulated by :func:`backend.coils.simulate_coils`, 2x readout
oversampling, an adjustment measurement before the imaging one, a noise line, shuffled lines and
two averages of one line -- read back by :mod:`backend.twix`. Reference: the root-sum-of-squares
of the simulated coil images, computed here with numpy, and what twixtools' own reader
(``read_twix`` + ``map_twix``) makes of the same file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from backend.coils import simulate_coils
from backend.errors import InputError
from backend.io import open_volume

twixtools = pytest.importorskip("twixtools")
from raw_checks import reconstructs_and_opens  # noqa: E402
from twix_files import write_twix  # noqa: E402


@pytest.fixture(scope="module")
def coil_images(sample_file):
    with h5py.File(sample_file) as f:
        ref = f["reconstruction_esc"][:3]
    images = (ref / ref.max()).astype(np.float32)[:, :, 16:-40]  # 224 x 168: not square
    return np.stack([simulate_coils(im, 4, seed=s) for s, im in enumerate(images)])


def _images(kspace: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@pytest.mark.parametrize("vb", [False, True], ids=["VE", "VB"])
def test_twix_file_reads_as_the_rss_of_its_coils(tmp_path, coil_images, vb):
    path = tmp_path / "meas_MID00042_FID01234_t1.dat"
    write_twix(path, coil_images, repeat_line=7, vb=vb)
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(axis=1))
    with open_volume(path) as volume:
        assert volume.info.kind == "multicoil" and volume.info.num_slices == 3
        assert volume.info.output_shape == (224, 168)
        software = "VB" if vb else "VD/VE"
        assert any(f"Siemens twix raw data ({software}, 4 coils, readout oversampling 2x removed)" in n
                   for n in volume.info.notices)
        for s, sl in enumerate(volume):
            np.testing.assert_allclose(sl.reference, rss[s], atol=2e-5 * rss.max())
        coil, ref = volume.coil_slice(2)
        np.testing.assert_allclose(_images(coil), coil_images[2], atol=2e-5 * np.abs(coil_images).max())
        np.testing.assert_allclose(ref, rss[2], atol=2e-5 * rss.max())


@pytest.mark.parametrize("vb", [False, True], ids=["VE", "VB"])
def test_twix_lines_agree_with_twixtools_own_reader(tmp_path, coil_images, vb):
    """twixtools' ``map_twix`` sorts the same file into (slice, line, coil, column): the oversampled
    k-space of slice 1 must be what the reader assembles before removing the oversampling."""
    path = tmp_path / "meas.dat"
    write_twix(path, coil_images[:2], shuffle=True, noise=True, vb=vb)
    scans = twixtools.read_twix(str(path), parse_pmu=False, parse_geometry=False, verbose=False)
    mapped = twixtools.map_twix(scans, verbose=False)[-1]["image"]
    mapped.flags["remove_os"] = False
    mapped.flags["average"]["Ave"] = True
    theirs = np.asarray(mapped[:]).squeeze()  # (slices, lines, coils, columns)
    from backend.twix import TwixVolume

    with TwixVolume(path) as volume:
        volume.info.output_shape = (448, 168)  # keep the oversampled readout for the comparison
        ours = volume.coil_kspace(1)  # (coils, readout, lines)
    np.testing.assert_allclose(ours, theirs[1].transpose(1, 2, 0), atol=1e-6 * np.abs(ours).max())


@pytest.mark.parametrize("vb", [False, True], ids=["VE", "VB"])
def test_reconstruct_and_napari_read_a_twix_file(tmp_path, coil_images, vb):
    path = tmp_path / "meas.dat"
    write_twix(path, coil_images[:2, :2], shuffle=False, vb=vb)
    reconstructs_and_opens(path, tmp_path, (2, 224, 168),
                           f"meas.dat: Siemens twix raw data ({'VB' if vb else 'VD/VE'}, 2 coils")


@pytest.mark.parametrize("change, problem", [
    (dict(partitions=2), "3-D twix acquisition"),
    (dict(skip_line=20), "lacks 1 of its 168 phase-encode lines"),
    (dict(flags_of=lambda line: ["REFLECT"] if line % 2 else []), "reflected readouts"),
    (dict(yaps=False), "no MeasYaps protocol"),
])
@pytest.mark.parametrize("vb", [False, True], ids=["VE", "VB"])
def test_unsupported_twix_files_are_one_line_errors(tmp_path, coil_images, change, problem, vb):
    path = tmp_path / "meas.dat"
    write_twix(path, coil_images[:1, :2], vb=vb, **change)
    with pytest.raises(InputError, match=problem) as err:
        open_volume(path)
    assert str(path) in str(err.value)


def test_damaged_twix_files_are_one_line_errors(tmp_path, coil_images, capsys):
    from backend.cli import main

    good = tmp_path / "good.dat"
    write_twix(good, coil_images[:1, :2], adjustment=False)
    data = good.read_bytes()
    write_twix(tmp_path / "good_vb.dat", coil_images[:1, :2], vb=True)
    vb = (tmp_path / "good_vb.dat").read_bytes()
    header = int.from_bytes(vb[:4], "little")
    cases = {"truncated.dat": data[: len(data) // 2], "text.dat": b"not a twix file at all\n" * 40,
             "vd_as_vb.dat": (50000).to_bytes(4, "little") + data[4:],
             "vb_truncated.dat": vb[: header + 1000], "vb_header_past_end.dat": vb[: header - 100],
             "vb_line_garbage.dat": vb[:header] + b"\xff" * 4000}  # every flag set, ACQEND too
    expected = {"truncated.dat": "outside the file", "text.dat": "not a Siemens twix file",
                "vd_as_vb.dat": "twix", "vb_truncated.dat": "runs past the end of its measurement",
                "vb_header_past_end.dat": "not a Siemens twix file", "vb_line_garbage.dat": "no image line"}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        out = tmp_path / f"out_{name}.h5"
        assert main(["reconstruct", str(path), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and expected[name] in err[0], err
        assert not out.exists()
