"""2-D sampling patterns (issue #21): ``gaussian2d`` and ``poisson`` (variable-density Poisson
disc) over the whole k-space grid, as the phase-encode plane of a 3-D acquisition is sampled.

References: hand counts (realised acceleration, the centre square), scipy's k-d tree for the
nearest-neighbour spacing a Poisson disc must have, numpy's FFT for the zero-filled image and the
data-consistency formula, and the column-mask code paths the 2-D ones must not change."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from backend.masks_2d import MASK_2D_FUNCS, make_sampling


@pytest.mark.parametrize("kind", sorted(MASK_2D_FUNCS))
@pytest.mark.parametrize("shape, acc", [((128, 160), 4), ((96, 96), 8), ((64, 200), 6)])
def test_2d_masks_hit_the_acceleration_and_sample_the_centre(kind, shape, acc):
    mask = make_sampling(kind, (shape[0], shape[1]), acc, seed=3)
    H, W = shape
    assert mask.pattern.shape == shape and mask.pattern.dtype == bool
    assert mask.pattern.sum() == round(H * W / acc)  # exact up to rounding
    assert mask.realised_acceleration == pytest.approx(H * W / round(H * W / acc))
    side = round(min(H, W) * 0.32 / acc)
    assert mask.num_low_frequencies == side
    top, left = (H - side + 1) // 2, (W - side + 1) // 2
    assert mask.pattern[top:top + side, left:left + side].all()
    np.testing.assert_array_equal(mask.lines, mask.pattern.any(axis=0))
    again = make_sampling(kind, (H, W), acc, seed=3)
    np.testing.assert_array_equal(again.pattern, mask.pattern)  # seeded
    other = make_sampling(kind, (H, W), acc, seed=4)
    assert (other.pattern != mask.pattern).sum() > 0.05 * mask.pattern.sum()
    # variable density: the ring near the centre is sampled more densely than the outer ring
    y = (np.arange(H) - H // 2) / (H / 2)
    x = (np.arange(W) - W // 2) / (W / 2)
    r = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    assert mask.pattern[(r > 0.15) & (r < 0.4)].mean() > 2 * mask.pattern[(r > 0.7) & (r < 1.0)].mean()


@pytest.mark.parametrize("acc", [4, 8])
def test_poisson_disc_points_keep_their_distance(acc):
    """A Poisson disc spreads its points: compared with the same points shuffled within rings
    around the centre (the same radial density, independent positions), far fewer have a
    sampled 8-neighbour and the mean nearest-neighbour distance is larger."""
    def spacing(pattern):
        points = np.argwhere(pattern)
        distance = cKDTree(points).query(points, k=2)[0][:, 1]
        return (distance < 1.5).mean(), distance.mean()

    pattern = make_sampling("poisson", (128, 160), acc, seed=5).pattern
    H, W = pattern.shape
    y = (np.arange(H) - H // 2) / (H / 2)
    x = (np.arange(W) - W // 2) / (W / 2)
    ring = np.floor(np.sqrt(y[:, None] ** 2 + x[None, :] ** 2) / 0.05).astype(int).ravel()
    rng = np.random.default_rng(0)
    shuffled = pattern.ravel().copy()
    for band in np.unique(ring):
        where = np.flatnonzero(ring == band)
        shuffled[where] = rng.permutation(shuffled[where])
    (close, mean), (close_ref, mean_ref) = spacing(pattern), spacing(shuffled.reshape(H, W))
    assert close < 0.65 * close_ref and mean > 1.25 * mean_ref


def test_2d_masks_refuse_bad_arguments():
    with pytest.raises(ValueError, match="unknown mask type 'spiral'"):
        make_sampling("spiral", (64, 64), 4)
    with pytest.raises(ValueError, match="centre square of 0.6 of each side"):
        make_sampling("gaussian2d", (64, 64), 4, center_fraction=0.6)
    # a square of 0.4 of each side covers 16% of the grid: allowed at 4x (a column block of
    # 0.4 of the width would not be)
    mask = make_sampling("poisson", (64, 64), 4, center_fraction=0.4)
    assert mask.num_low_frequencies == 26 and mask.pattern[19:45, 19:45].all() and mask.pattern.sum() == 1024


def test_data_consistency_with_a_2d_pattern_equals_numpy():
    from backend.dc import data_consistency
    from backend.fft import fft2c_np, ifft2c_np

    rng = np.random.default_rng(0)
    image = (rng.normal(size=(2, 32, 40)) + 1j * rng.normal(size=(2, 32, 40))).astype(np.complex64)
    truth = (rng.normal(size=(2, 32, 40)) + 1j * rng.normal(size=(2, 32, 40))).astype(np.complex64)
    pattern = make_sampling("poisson", (32, 40), 4, seed=1).pattern.astype(np.float32)
    k0 = fft2c_np(truth) * pattern
    for lam in (None, 0.5):
        out = data_consistency(torch.from_numpy(image), torch.from_numpy(k0), torch.from_numpy(pattern)[None], lam)
        k = fft2c_np(image)
        inside = k0 if lam is None else (k + lam * k0) / (1 + lam)
        expected = ifft2c_np((1 - pattern) * k + pattern * inside)
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_reconstruct_with_a_poisson_mask(sample_file, tmp_path):
    """``reconstruct --mask poisson``: the zero-filled image is numpy's inverse FFT of the
    pattern-masked k-space, the pattern is written beside the reconstruction, and a network
    (shipped NasN) and TV run on it with data consistency on the pattern."""
    from backend.cli import main
    from backend.io import open_volume

    out, metrics = tmp_path / "zf.h5", tmp_path / "zf.json"
    argv = ["reconstruct", str(sample_file), "--mask", "poisson", "--acceleration", "4", "--seed", "7", "--quiet"]
    assert main([*argv, "--model", "zero-filled", "--out", str(out), "--json", str(metrics)]) == 0
    with h5py.File(out) as f, open_volume(sample_file) as volume:
        pattern = f["mask_pattern"][()].astype(bool)
        H, W = volume.info.grid
        assert pattern.shape == (H, W)
        np.testing.assert_array_equal(pattern, make_sampling("poisson", (H, W), 4, seed=7).pattern)
        assert f.attrs["realised_acceleration"] == pytest.approx(H * W / pattern.sum())
        k = volume[2].kspace
        image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k * pattern), norm="ortho"))
        h, w = f["reconstruction"].shape[1:]
        top, left = (H - h) // 2, (W - w) // 2
        np.testing.assert_allclose(f["reconstruction"][2], np.abs(image)[top:top + h, left:left + w],
                                   atol=1e-5 * np.abs(image).max())
    zero_filled = json.loads(metrics.read_text())["psnr"]
    for model in ("nasn", "tv"):
        path = tmp_path / f"{model}.json"
        assert main([*argv, "--model", model, "--out", str(tmp_path / f"{model}.h5"), "--json", str(path)]) == 0
        assert json.loads(path.read_text())["psnr"] > zero_filled + 1


def test_training_samples_with_2d_masks(sample_file):
    """With a 2-D kind among ``mask_kinds`` every sample's mask is an (H, W) pattern, batches
    collate, and a model's training forward runs on them, single-coil and through simulated
    coils (the SENSE data consistency through the pattern)."""
    from backend.config import TrainConfig
    from backend.models import build_model
    from backend.training.data import collate, make_sample

    image = np.abs(h5py.File(sample_file)["reconstruction_esc"][1]).astype(np.complex64)
    rng = np.random.default_rng(0)
    samples = [make_sample(image, rng, 64, [4, 8], 0.5, mask_kinds=["random", "poisson"]) for _ in range(4)]
    assert all(s[2].shape == (64, 64) for s in samples)
    batch = collate(samples)
    assert batch.mask.shape == (4, 64, 64)
    np.testing.assert_allclose(batch.k0.numpy(), (batch.k0 * batch.mask).numpy())  # nothing outside the mask
    model = build_model("dccnn", blocks=1, channels=4, cascades=1)
    out = model(batch.x, batch.k0, batch.mask)
    assert out.shape == batch.x.shape and torch.isfinite(out).all()
    from backend.models.multicoil import run_multicoil
    from backend.training.data import coil_sample

    assert TrainConfig(coils=4, mask_kinds=["poisson"]).mask_kinds == ["poisson"]
    coil_batch = collate([coil_sample(s[0], s[2], rng, 4, (30, 45)) for s in samples])
    assert coil_batch.mask.shape == (4, 64, 64) and coil_batch.maps.shape == (4, 4, 64, 64)
    # the measured coil k-space holds nothing outside each sample's pattern
    np.testing.assert_allclose(coil_batch.k0.numpy(), (coil_batch.k0 * coil_batch.mask[:, None]).numpy())
    out = run_multicoil(model, coil_batch.x, coil_batch.k0, coil_batch.mask, coil_batch.maps)
    assert out.shape == coil_batch.x.shape and torch.isfinite(out).all()


def test_multicoil_data_with_a_2d_mask_is_reconstructed_from_its_coils(tmp_path, sample_file):
    """A 4-coil twix file under a 2-D mask: by default the coil path (maps from the pattern's
    centre square, said in the notices); ``--coils rss`` the root-sum-of-squares path."""
    pytest.importorskip("twixtools")
    from backend.cli import main
    from backend.coils import simulate_coils
    from backend.volume import RSS_NOTICE
    from twix_files import write_twix

    with h5py.File(sample_file) as f:
        image = (f["reconstruction_esc"][3] / f["reconstruction_esc"][3].max()).astype(np.float32)
    path = tmp_path / "meas.dat"
    write_twix(path, simulate_coils(image, 4, seed=0)[None])
    reports = {}
    for coils in ("auto", "rss"):
        metrics = tmp_path / f"{coils}.json"
        assert main(["reconstruct", str(path), "--mask", "gaussian2d", "--model", "zero-filled", "--coils", coils,
                     "--out", str(tmp_path / f"{coils}.h5"), "--json", str(metrics), "--quiet"]) == 0
        reports[coils] = json.loads(metrics.read_text())
        with h5py.File(tmp_path / f"{coils}.h5") as f:
            assert f.attrs["coils"] == ("multi" if coils == "auto" else "rss")
            assert f["mask_pattern"].shape == image.shape
    assert any("calibration square" in n for n in reports["auto"]["notices"])
    assert RSS_NOTICE in reports["rss"]["notices"] and 10 < reports["rss"]["psnr"] < 60


def test_2d_patterns_round_trip_through_mask_files(tmp_path):
    """A pattern written as .npy or JSON reads back exactly; a column mask stays a column mask;
    a pattern where only a column mask fits, or of another grid, is a one-line error."""
    from backend.errors import InputError
    from backend.mask_files import load_mask_file, write_mask_file

    pattern = make_sampling("poisson", (40, 32), 4, seed=5).pattern
    for name in ("p.npy", "p.json"):
        write_mask_file(tmp_path / name, pattern)
        back = load_mask_file(tmp_path / name, 32, (40, 32))
        assert back.dtype == bool and back.shape == (40, 32) and np.array_equal(back, pattern)
    assert json.loads((tmp_path / "p.json").read_text())["pattern"][20][16] == 1  # the centre square
    write_mask_file(tmp_path / "l.json", pattern.any(0))
    assert load_mask_file(tmp_path / "l.json", 32, (40, 32)).shape == (32,)
    with pytest.raises(InputError, match="a column mask is needed"):
        load_mask_file(tmp_path / "p.npy", 32)
    with pytest.raises(InputError, match="is a 40x32 pattern, the data's k-space grid is 40x30 "):
        load_mask_file(tmp_path / "p.npy", 30, (40, 30))


def test_reconstruct_from_a_pattern_file_equals_the_drawn_pattern(tmp_path, sample_file):
    from backend.cli import main
    from backend.mask_files import write_mask_file

    with h5py.File(sample_file) as f:
        grid = f["kspace"].shape[1:]
    pattern = make_sampling("gaussian2d", grid, 8, seed=3).pattern
    write_mask_file(tmp_path / "pattern.npy", pattern)
    outs = {}
    for name, flags in (("drawn", ["--mask", "gaussian2d", "--acceleration", "8", "--seed", "3"]),
                        ("file", ["--mask-file", str(tmp_path / "pattern.npy")])):
        outs[name] = tmp_path / f"{name}.h5"
        assert main(["reconstruct", str(sample_file), "--model", "dccnn", *flags, "--out", str(outs[name]),
                     "--quiet"]) == 0
    with h5py.File(outs["drawn"]) as a, h5py.File(outs["file"]) as b:
        np.testing.assert_array_equal(a["reconstruction"][()], b["reconstruction"][()])
        np.testing.assert_array_equal(b["mask_pattern"][()].astype(bool), pattern)
        assert b.attrs["realised_acceleration"] == pytest.approx(8.0, rel=0.01)
