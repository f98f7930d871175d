"""The realistic benchmark's multi-coil cases (backend.benchmark): 8 coils and the 2-coil variant
of ``bench/multicoil.py --coils 2``, checked against numpy's FFT and hand counts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from backend import benchmark as B


def _rss_numpy(kspace: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares of the coil images, with numpy's centred orthonormal inverse FFT."""
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return np.sqrt((np.abs(images) ** 2).sum(axis=-3))


@pytest.mark.parametrize("category, coils", [("multicoil", 8), ("multicoil_2", 2)])
def test_multicoil_cases_hold_their_coils_and_the_rss_reference(tiny_dataset, tmp_path, category, coils):
    [source] = sorted((tiny_dataset / "val").glob("*.h5"))[:1]
    [(cat, path)] = list(B.build_cases([source], tmp_path, (category,), max_slices=2))
    assert cat == category and path == tmp_path / category / source.name
    with h5py.File(source, "r") as f:
        image = np.asarray(f["reconstruction_esc"][:2])
    with h5py.File(path, "r") as f:
        kspace, rss = np.asarray(f["kspace"]), np.asarray(f["reconstruction_rss"])
        assert f.attrs["benchmark_category"] == category
    assert kspace.shape == (2, coils) + image.shape[1:] and rss.shape == image.shape
    np.testing.assert_allclose(rss, _rss_numpy(kspace), rtol=1e-4, atol=1e-4 * rss.max())
    # the coils see the object with smooth weights: the RSS image follows the scan (correlated;
    # two coils leave the rows between them dim: 0.71 measured on the 48x48 fixture),
    # and coil c's energy lies towards its documented place on the circle, angle 2 pi c / coils
    # (0 = +x, the columns; 90 degrees = +y, the rows), within the 0.2 rad jitter and the object's pull
    assert np.corrcoef(rss.ravel(), image.ravel())[0, 1] > {8: 0.9, 2: 0.6}[coils]
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    energy = (np.abs(images) ** 2).sum(axis=0)  # (coils, H, W)
    y, x = np.meshgrid(np.linspace(-1, 1, energy.shape[1]), np.linspace(-1, 1, energy.shape[2]), indexing="ij")
    total = energy.sum(0)
    centre = ((total * y).sum() / total.sum(), (total * x).sum() / total.sum())
    for c, e in enumerate(energy):
        angle = np.degrees(np.arctan2((e * y).sum() / e.sum() - centre[0], (e * x).sum() / e.sum() - centre[1]))
        assert abs((angle - 360 * c / coils + 180) % 360 - 180) < 30, (c, angle)


def test_the_two_coil_cases_are_drawn_apart_from_the_eight_coil_ones(tiny_dataset, tmp_path):
    [source] = sorted((tiny_dataset / "val").glob("*.h5"))[:1]
    paths = dict(B.build_cases([source], tmp_path, ("multicoil", "multicoil_2"), max_slices=1))
    with h5py.File(paths["multicoil"], "r") as a, h5py.File(paths["multicoil_2"], "r") as b:
        eight, two = np.asarray(a["kspace"]), np.asarray(b["kspace"])
    assert eight.shape[1] == 8 and two.shape[1] == 2
    assert not np.allclose(eight[:, :2], two)  # own random draws (maps, noise)
    with pytest.raises(ValueError, match="multicoil_2"):
        B._case("multicoil_3", np.zeros((1, 8, 8), np.float32), 0)
