"""Multi-coil building blocks (issue #21) on the real sample with simulated coils: the SENSE
adjoint passes the dot-product test, BART's ESPIRiT and the low-resolution maps recover the
simulated sensitivities up to one phase, the SENSE combination of fully sampled coil images
gives the image back, and TV with the maps (BART pics) reconstructs undersampled coil data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from backend.coils import (calibration_lines, coil_maps, lowres_maps, sense_adjoint, sense_combine, sense_forward, simulate_coils,
                           tv_multicoil)
from backend.fft import fft2c_np, ifft2c_np
from backend.masks import make_mask
from backend.metrics import psnr
from backend.tv import bart_available

needs_bart = pytest.mark.skipif(not bart_available(), reason="BART is not installed")


@pytest.fixture(scope="module")
def image(sample_file):
    with h5py.File(sample_file) as f:
        ref = f["reconstruction_esc"][3]
    return (ref / ref.max()).astype(np.float32)


def _true_maps(coils, shape, seed=0):
    return simulate_coils(np.ones(shape, np.float32), coils, seed=seed)


@pytest.mark.parametrize("mask_shape", [(24,), (32, 24)])
def test_sense_adjoint_passes_the_dot_product_test(mask_shape):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 32, 24)) + 1j * rng.normal(size=(4, 32, 24))
    mask = rng.uniform(size=mask_shape) < 0.4
    x = rng.normal(size=(32, 24)) + 1j * rng.normal(size=(32, 24))
    y = rng.normal(size=(4, 32, 24)) + 1j * rng.normal(size=(4, 32, 24))
    lhs = np.vdot(y, sense_forward(x, maps, mask))
    rhs = np.vdot(sense_adjoint(y, maps, mask), x)
    assert abs(lhs - rhs) < 1e-9 * abs(lhs)


@pytest.mark.parametrize("method", [pytest.param("espirit", marks=needs_bart), "lowres"])
def test_maps_recover_the_simulated_sensitivities(image, method):
    """On the object, |<S_est, S_true>| / (|S_est| |S_true|) per pixel (1 = the same up to a
    phase): high for both methods; ESPIRiT's maps are normalised (sum |S|^2 = 1 on the object)."""
    truth = simulate_coils(image, 8)
    maps = coil_maps(fft2c_np(truth), method=method)
    true = _true_maps(8, image.shape)
    on = image > 0.1
    corr = np.abs((np.conj(maps) * true).sum(0)) / (np.sqrt((np.abs(maps) ** 2).sum(0) * (np.abs(true) ** 2).sum(0)) + 1e-12)
    assert np.median(corr[on]) > 0.98 and np.percentile(corr[on], 5) > 0.9
    if method == "espirit":
        norm = (np.abs(maps) ** 2).sum(0)
        assert np.median(norm[on]) == pytest.approx(1, abs=0.02)


def test_calibration_of_a_2d_pattern_is_its_centre_square_by_hand_count():
    pattern = np.zeros((40, 30), bool)
    pattern[15:25, 10:20] = True  # the 10 x 10 centre square (rows 15-24 of 40, columns 10-19 of 30)
    pattern[::7, ::3] = True  # scattered outer points, two of them on the square's border
    pattern[14, 10:20] = pattern[25, 10:20] = False  # keep the rows next to it empty
    pattern[15:25, 9] = pattern[15:25, 20] = False
    assert calibration_lines(pattern) == 10
    # a hole at row 24, column 19: inside the centred squares of side 10 and 9 (rows 16-24,
    # columns 11-19), outside that of side 8 (rows 16-23, columns 11-18)
    pattern[24, 19] = False
    assert calibration_lines(pattern) == 8
    assert calibration_lines(np.zeros((8, 8), bool)) == 0


@pytest.mark.parametrize("kind", ["gaussian2d", "poisson"])
def test_calibration_of_the_2d_masks_is_at_least_their_centre_square(kind):
    from backend.masks_2d import make_sampling

    mask = make_sampling(kind, (96, 80), 4, seed=3)
    assert calibration_lines(mask.pattern) >= mask.num_low_frequencies > 0


@pytest.mark.parametrize("method", [pytest.param("espirit", marks=needs_bart), "lowres"])
def test_maps_from_a_2d_masks_centre_square_recover_the_sensitivities(image, method):
    """Maps estimated from a Poisson-disc-undersampled coil k-space (only its centre square is
    fully sampled; a column mask's centre columns would hold every row): the same agreement
    with the simulated sensitivities as from full data."""
    from backend.masks_2d import make_sampling

    truth = simulate_coils(image, 8)
    mask = make_sampling("poisson", image.shape, 4, seed=1)
    kspace = fft2c_np(truth) * mask.pattern[None]
    side = calibration_lines(mask.pattern)
    maps = coil_maps(kspace, method=method, calibration=side, square=True)
    true = _true_maps(8, image.shape)
    on = image > 0.1
    corr = np.abs((np.conj(maps) * true).sum(0)) / (np.sqrt((np.abs(maps) ** 2).sum(0) * (np.abs(true) ** 2).sum(0)) + 1e-12)
    assert np.median(corr[on]) > 0.98 and np.percentile(corr[on], 5) > 0.9
    if method == "lowres":  # the column window over all rows would mix the missing points in
        bad = coil_maps(kspace, method="lowres", calibration=side, square=False)
        bad_corr = np.abs((np.conj(bad) * true).sum(0)) / (
            np.sqrt((np.abs(bad) ** 2).sum(0) * (np.abs(true) ** 2).sum(0)) + 1e-12)
        assert np.median(bad_corr[on]) < np.median(corr[on])


def test_sense_combination_of_full_coil_data_is_the_image_up_to_phase(image):
    truth = simulate_coils(image, 8)
    maps = lowres_maps(fft2c_np(truth))
    combined = sense_combine(ifft2c_np(fft2c_np(truth)), maps)
    on = image > 0.1
    ratio = np.abs(combined[on]) / image[on]
    # the low-resolution maps carry the object's low frequencies: a smooth, not flat, ratio
    assert np.median(ratio) > 0.3 and np.percentile(ratio, 95) / np.percentile(ratio, 5) < 20


@needs_bart
@pytest.mark.parametrize("acceleration", [4, 8])
def test_tv_with_espirit_maps_beats_the_rss_emulated_single_coil_tv(image, acceleration):
    """8 simulated coils, a seeded random mask: TV with ESPIRiT maps calibrated on the mask's
    centre (BART pics, the paper's TV setting) beats the zero-filled RSS and the tool's
    single-coil path (TV of the RSS image's simulated single-coil k-space) against the fully
    sampled RSS (fastMRI's multi-coil reference), with no rescaling (ESPIRiT's maps are
    normalised, so |x| is the RSS)."""
    from backend.metrics import ssim
    from backend.transforms import magnitude_to_kspace
    from backend.tv import tv_reconstruct

    truth = simulate_coils(image, 8)
    kspace = fft2c_np(truth)
    rss = np.sqrt((np.abs(truth) ** 2).sum(0))
    mask = make_mask("random", image.shape[1], acceleration, seed=1).lines
    zf = np.sqrt((np.abs(ifft2c_np(kspace * mask[None, None, :])) ** 2).sum(0))
    maps = coil_maps(kspace * mask[None, None, :], method="espirit", calibration=calibration_lines(mask))
    multi = np.abs(tv_multicoil(kspace, mask, maps, 0.01, 200))
    single = np.abs(tv_reconstruct(magnitude_to_kspace(rss), mask, 0.01, 200, backend="bart"))
    r = float(rss.max())
    assert psnr(rss, multi, data_range=r) > psnr(rss, single, data_range=r) + 2 > psnr(rss, zf, data_range=r) + 2
    assert ssim(rss, multi, data_range=r) > ssim(rss, single, data_range=r)
