import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from backend import metrics
from backend.metrics import evaluate_volume, mse, nmse, psnr, slice_ssims, ssim, summarise


def _pair(seed=0, shape=(3, 40, 36)):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 1, shape).cumsum(axis=1)  # some structure
    pred = gt + rng.normal(0, 0.3, shape)
    return gt, pred


def test_ssim_matches_scikit_image_per_slice_with_volume_max():
    gt, pred = _pair()
    expected = np.mean([structural_similarity(g, p, data_range=gt.max()) for g, p in zip(gt, pred)])
    assert ssim(gt, pred) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_slice_ssims_are_scikit_image_per_slice_in_order(monkeypatch, workers):
    """Whatever the thread pool's size, each slice's value is scikit-image's for that slice,
    bit for bit, in slice order (the slices differ, so a reordering fails)."""
    gt, pred = _pair(2, shape=(7, 30, 33))
    pred[3] += 2.0  # one clearly worse slice
    monkeypatch.setattr(metrics, "_workers", lambda: workers)
    got = slice_ssims(gt, pred, gt.max())
    expected = [float(structural_similarity(g, p, data_range=gt.max(), full=True)[1][3:-3, 3:-3].mean())
                for g, p in zip(gt, pred)]
    assert got == expected
    assert got[3] == min(got)


def test_slice_ssims_of_one_2d_slice():
    gt, pred = _pair(3, shape=(1, 30, 33))
    assert slice_ssims(gt[0], pred[0], gt.max()) == [ssim(gt, pred)]


def test_ssim_threads_follow_the_cpus_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(metrics.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert metrics._workers() == metrics.MAX_SSIM_THREADS
    monkeypatch.setattr(metrics.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert metrics._workers() == 2


def test_psnr_matches_scikit_image_with_volume_max():
    gt, pred = _pair(1)
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rel=1e-9)


def test_mse_nmse_by_hand():
    gt = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    pred = np.array([[[1.0, 1.0], [3.0, 6.0]]])
    assert mse(gt, pred) == pytest.approx((1 + 4) / 4)
    assert nmse(gt, pred) == pytest.approx(5 / 30)


def test_identical_volumes_and_summary():
    gt, _ = _pair(2)
    m = evaluate_volume(gt, gt)
    assert m.mse == 0 and m.nmse == 0 and m.psnr == float("inf") and m.ssim == pytest.approx(1.0)
    s = summarise([evaluate_volume(*_pair(i)) for i in range(3)])
    assert set(s) == {"mse", "nmse", "psnr", "ssim"}
    assert s["psnr"][1] >= 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        mse(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))


def test_ssim_of_constant_images_by_hand():
    """Constant slices have zero variances: SSIM reduces to the luminance term
    (2 a b + C1) / (a^2 + b^2 + C1), C1 = (0.01 x data range)^2."""
    from backend.metrics import ssim

    a, b, data_range = 3.0, 2.0, 4.0
    gt, pred = np.full((1, 16, 16), a), np.full((1, 16, 16), b)
    c1 = (0.01 * data_range) ** 2
    assert ssim(gt, pred, data_range=data_range) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)
