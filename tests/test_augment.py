"""The training augmentations and the SSIM loss (issue #15), on real slices of the prepared data.

References: hand counts (bounding boxes, zero backgrounds), numpy's FFT (noise power in
k-space), scikit-image's ``structural_similarity`` (the SSIM loss), and the first round's
pipeline for ``augment=False`` (same draws, same samples).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from backend.config import TrainConfig
from backend.datasets import dataset_files
from backend.fft import fft2c_np
from backend.training import augment as A
from backend.training.data import EpochBatches, SliceIndex, make_sample
from backend.training.loop import ssim_loss


@pytest.fixture(scope="module")
def slices(sample_file):
    """Four real 224x224 slices of the shipped sample (a head with background around it)."""
    import h5py

    with h5py.File(sample_file) as f:
        return [f["reconstruction_esc"][i].astype(np.complex64) for i in range(4)]


def test_orientations_are_the_eight_symmetries(slices):
    image = np.abs(slices[0])
    seen = set()
    for seed in range(64):
        out = A.orient(image, np.random.default_rng(seed))
        seen.add(out.tobytes())
        # a symmetry moves pixels, it does not change them
        assert np.array_equal(np.sort(out, axis=None), np.sort(image, axis=None))
    assert len(seen) == 8


def test_field_of_view_placement_fills_the_asked_fraction(slices):
    image = slices[0]
    for fill in (0.3, 0.6, 1.0):
        out = A.place(image, (96, 80), np.random.default_rng(1), fill)
        r0, r1, c0, c1 = A._bbox(np.abs(out))
        # the object's tighter side spans the fill fraction of the grid (up to interpolation edges)
        frac = max((r1 - r0) / 96, (c1 - c0) / 80)
        assert abs(frac - fill) < 0.08, (fill, frac)
        assert out.shape == (96, 80)
        if fill < 0.9:  # room around it: the background is exactly zero, as zero padding makes it
            assert np.abs(out[:, :1]).max() == 0 or np.abs(out[:, -1:]).max() == 0


def test_phase_is_smooth_plus_linear_and_keeps_the_magnitude(slices):
    image = np.abs(slices[1]).astype(np.complex64)
    phase = A.linear_phase((64, 64), np.random.default_rng(0), cycles=2.0)
    # a linear phase shifts k-space: its gradient is constant and at most 2 cycles per grid
    assert np.allclose(np.diff(phase, 2, axis=0), 0, atol=1e-5) and np.allclose(np.diff(phase, 2, axis=1), 0, atol=1e-5)
    assert abs(phase[-1, 0] - phase[0, 0]) <= 2 * 2 * np.pi
    aug = A.Augmentation.off(phase_prob=1.0)
    out = A.augment(image, (64, 64), np.random.default_rng(3), aug)
    window = A.random_window(image, (64, 64), np.random.default_rng(3))
    np.testing.assert_allclose(np.abs(out), np.abs(window), rtol=1e-5, atol=1e-5)


def test_kspace_noise_has_the_drawn_snr(slices):
    image = slices[2].astype(np.complex64)
    rng = np.random.default_rng(5)
    noisy = A.add_kspace_noise(image, rng, (20.0, 20.0))
    noise = fft2c_np(noisy) - fft2c_np(image)
    snr = 20 * np.log10(np.sqrt(np.mean(np.abs(image) ** 2)) / np.sqrt(np.mean(np.abs(noise) ** 2)))
    assert abs(snr - 20.0) < 0.2
    # white: the noise power is flat over k-space (centre vs periphery within 10%)
    H = noise.shape[0]
    centre, edge = np.abs(noise[H // 4: 3 * H // 4]) ** 2, np.abs(noise[: H // 4]) ** 2
    assert abs(centre.mean() / edge.mean() - 1) < 0.1


def test_contrast_curve_keeps_the_background_dark(slices):
    image = slices[0]
    background = np.abs(image) < 1e-3 * np.abs(image).max()
    for seed in range(5):
        out = A.remap_intensity(image, np.random.default_rng(seed), (0.7, 1.4), contrast_prob=1.0)
        assert np.abs(out[background]).max() <= 1e-3 * np.abs(image).max() * 2
        assert np.isfinite(out).all()


def test_raw_path_gives_phase_noise_and_the_grid(slices):
    aug = A.Augmentation(raw_prob=1.0, fov_prob=0.0, contrast_prob=0.0)
    out = A.augment(slices[0], (80, 64), np.random.default_rng(2), aug)
    assert out.shape == (80, 64)
    background = np.abs(out) < 0.05 * np.abs(out).max()
    assert np.abs(out[background]).max() > 0  # noise everywhere, as in a raw scan
    assert np.ptp(np.angle(out[~background])) > 1.0  # and a phase


def test_samples_depend_only_on_the_seed_and_the_first_round_pipeline_is_kept(slices):
    image = slices[3]
    draws = [make_sample(image, np.random.default_rng([0, 1, 2]), (64, 96), (4, 8), 0.5,
                         augmentation=A.Augmentation(), mask_kinds=("random", "equispaced")) for _ in range(2)]
    for a, b in zip(*draws):
        assert np.array_equal(a, b)
    assert draws[0][0].shape == (64, 96) and draws[0][2].shape == (96,)
    # augment=False: exactly the first round's samples (random window, smooth phase)
    old = make_sample(image, np.random.default_rng(7), 32, (4, 8), 0.5)
    rng = np.random.default_rng(7)
    window = A.random_window(image, (32, 32), rng)
    if rng.random() < 0.5:
        window = window * np.exp(1j * A.smooth_phase(window.shape, rng))
    np.testing.assert_array_equal(old[0], window.astype(np.complex64))
    assert TrainConfig(augment=False).augmentation() is None


@pytest.mark.slow
def test_epoch_batches_end_to_end_on_real_slices(tiny_dataset):
    """The whole pipeline on the real training slices: rectangular grids per batch, finite,
    normalised inputs, targets whose k-space equals the measured lines on the mask."""
    index = SliceIndex(dataset_files(tiny_dataset, "train"))
    config = TrainConfig()
    batches = list(EpochBatches(index, seed=0, epoch=0, batch_size=2, crop=48, accelerations=(4, 8),
                                phase_prob=config.phase_prob, steps=12, augmentation=config.augmentation(),
                                aspects=config.aspects, mask_kinds=config.mask_kinds))
    shapes = {tuple(b.x.shape[-2:]) for b in batches}
    assert len(shapes) > 1 and all(h % 2 == 0 and w % 2 == 0 for h, w in shapes)
    for b in batches:
        assert torch.isfinite(b.x).all() and torch.isfinite(b.target).all()
        peak = torch.sqrt(b.x[:, 0] ** 2 + b.x[:, 1] ** 2).flatten(1).amax(1)
        torch.testing.assert_close(peak, torch.full_like(peak, 6.0))
        target = torch.complex(b.target[:, 0], b.target[:, 1]).numpy()
        k = fft2c_np(target)
        sampled = b.mask.numpy().astype(bool)
        for i in range(len(k)):
            np.testing.assert_allclose(k[i][:, sampled[i]], b.k0[i].numpy()[:, sampled[i]], rtol=1e-4, atol=1e-4)
    index.close()


def test_ssim_loss_equals_scikit_image(slices):
    """1 - loss = scikit-image's SSIM (7x7 uniform window, sample covariance, data range = the
    target's maximum) of the magnitudes, on real slices and a degraded copy."""
    ref = np.abs(slices[0]).astype(np.float64)
    rng = np.random.default_rng(0)
    degraded = np.abs(ref + 0.05 * ref.max() * rng.standard_normal(ref.shape))
    target = torch.from_numpy(np.stack([ref, np.zeros_like(ref)]))[None]
    out = torch.from_numpy(np.stack([degraded, np.zeros_like(ref)]))[None]
    expected = structural_similarity(ref, degraded, win_size=7, data_range=ref.max(), use_sample_covariance=True,
                                     gaussian_weights=False)
    assert abs((1 - ssim_loss(out, target).item()) - expected) < 1e-4
    assert ssim_loss(target, target).item() < 1e-6
    # differentiable, and a step down its gradient raises SSIM
    out.requires_grad_()
    loss = ssim_loss(out, target)
    loss.backward()
    with torch.no_grad():
        stepped = out - 20.0 * out.grad
    assert ssim_loss(stepped, target).item() < loss.item()
