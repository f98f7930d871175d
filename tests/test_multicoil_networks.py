"""Networks on multi-coil k-space (issue #21): MoDL's CG SENSE data consistency, the cascades run
with coil maps, and ``nascsmri reconstruct`` of a multi-coil file from its coils.

References: numpy's FFT-based SENSE operators of :mod:`backend.coils` (``sense_forward`` /
``sense_adjoint``), the closed form of single-coil DC with a finite weight (Eq. 7), the cascade's
own single-coil forward pass, and the root-sum-of-squares path on the same file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from backend.coils import sense_adjoint, sense_forward, simulated_sensitivities
from backend.config import ReconConfig
from backend.dc import coil_combine, data_consistency, sense_cg_consistency, sense_normal
from backend.fft import fft2c_np, ifft2c_np
from backend.models import build_model
from backend.models.multicoil import run_multicoil
from backend.progress import run
from backend.recon import reconstruct_volume
from backend.tv import bart_available
from backend.volume import COIL_NOTICE, RSS_NOTICE

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _random(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64))


def test_normal_operator_is_numpys_adjoint_of_forward():
    maps, x = _random((1, 4, 24, 20), 0), _random((1, 24, 20), 1)
    mask = (torch.arange(20) % 3 == 0).double()
    ours = sense_normal(x, mask, maps)[0].numpy()
    theirs = sense_adjoint(sense_forward(x[0].numpy(), maps[0].numpy(), mask.numpy()), maps[0].numpy(), mask.numpy())
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


def test_one_coil_cg_is_single_coil_dc_with_lambda_one_over_mu():
    z, truth = _random((2, 16, 12), 2), _random((2, 16, 12), 3)
    mask = (torch.arange(12) % 2 == 0).double()
    k0 = torch.fft.fftshift(torch.fft.fft2(truth, norm="ortho"), dim=(-2, -1)) * mask
    ones = torch.ones(2, 1, 16, 12, dtype=torch.complex128)
    for mu in (0.25, 1e-3):
        ours = sense_cg_consistency(z, k0[:, None], mask, ones, mu=mu, iterations=5)
        torch.testing.assert_close(ours, data_consistency(z, k0, mask, lam=1 / mu), rtol=1e-9, atol=1e-9)


def test_cg_solves_the_normal_equations_with_eight_coils():
    rng = np.random.default_rng(4)
    maps = torch.as_tensor(simulated_sensitivities((32, 32), 8, rng), dtype=torch.complex128)[None]
    maps = maps / (maps.abs() ** 2).sum(1, keepdim=True).sqrt()  # ESPIRiT-like: sum |S|^2 = 1
    z, truth = _random((1, 32, 32), 5), _random((1, 32, 32), 6)
    mask = torch.as_tensor(rng.uniform(size=32) < 0.3, dtype=torch.float64)
    k0 = torch.as_tensor(sense_forward(truth[0].numpy(), maps[0].numpy(), mask.numpy()))[None]
    mu = 0.05
    x = sense_cg_consistency(z, k0, mask, maps, mu=mu, iterations=60)
    d = x - z
    rhs = torch.as_tensor(sense_adjoint(k0[0].numpy() - sense_forward(z[0].numpy(), maps[0].numpy(), mask.numpy()),
                                        maps[0].numpy(), mask.numpy()))[None]
    residual = sense_normal(d, mask, maps) + mu * d - rhs
    assert residual.abs().max() < 1e-8 * rhs.abs().max()


def test_cascade_with_one_unit_coil_is_its_single_coil_forward():
    torch.manual_seed(0)
    model = build_model("dccnn", channels=8, cascades=2).double().eval()
    model.dc.lam = 4.0  # a finite DC weight: the SENSE solve uses mu = 1 / 4
    truth = _random((1, 20, 16), 7)
    mask = (torch.arange(16) % 3 != 1).double()
    k0 = torch.fft.fftshift(torch.fft.fft2(truth, norm="ortho"), dim=(-2, -1)) * mask
    zf = torch.fft.ifft2(torch.fft.ifftshift(k0, dim=(-2, -1)), norm="ortho")
    x = torch.stack([zf.real, zf.imag], 1)
    with torch.no_grad():
        single = model(x, k0, mask)
        multi = run_multicoil(model, x, k0[:, None], mask, torch.ones(1, 1, 20, 16, dtype=torch.complex128))
    # both DC layers work in complex64 (channels_to_complex): float32 rounding apart
    torch.testing.assert_close(multi, single, rtol=1e-4, atol=1e-6)


def test_coil_combine_of_full_data_is_the_image():
    rng = np.random.default_rng(8)
    maps = simulated_sensitivities((24, 24), 6, rng)
    image = (rng.normal(size=(24, 24)) + 1j * rng.normal(size=(24, 24))).astype(np.complex64)
    combined = coil_combine(torch.as_tensor(maps * image)[None], torch.as_tensor(maps)[None])[0].numpy()
    np.testing.assert_allclose(combined, image, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def multicoil_file(sample_file, tmp_path_factory):
    """A fastMRI multi-coil file from four real slices of the sample: 8 simulated coils with a
    phase, RSS reference, complex noise at 35 dB."""
    with h5py.File(sample_file) as f:
        images = f["reconstruction_esc"][2:6].astype(np.float32)
    rng = np.random.default_rng(9)
    maps = simulated_sensitivities(images.shape[1:], 8, rng)
    coil_images = maps[None] * images[:, None]
    k = fft2c_np(coil_images)
    rms = np.sqrt(np.mean(np.abs(k) ** 2))
    k = (k + rms * 10 ** (-35 / 20) * (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)) / np.sqrt(2))
    path = tmp_path_factory.mktemp("mc") / "multicoil_brain.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = k.astype(np.complex64)
        f["reconstruction_rss"] = np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(1)).astype(np.float32)
    return path


@pytest.mark.parametrize("mask,acceleration", [("random", 4), ("random", 8), ("poisson", 4)])
def test_nasn_from_the_coils_beats_the_rss_path_and_zero_filling(multicoil_file, mask, acceleration):
    """Column masks and a 2-D Poisson-disc pattern (maps from its centre square, SENSE DC
    through the pattern)."""
    scores = {}
    for model, coils in [("zero-filled", "multi"), ("nasn", "rss"), ("nasn", "multi")]:
        config = ReconConfig(model=model, mask=mask, acceleration=acceleration, coils=coils)
        result = run(reconstruct_volume(multicoil_file, config))
        scores[model, coils] = (result.metrics.psnr, result.metrics.ssim)
        if coils == "multi":
            assert "SENSE data consistency" in result.notices[-1] and RSS_NOTICE not in result.notices
        else:
            assert result.notices[-1] == RSS_NOTICE and not any(COIL_NOTICE in n for n in result.notices)
    assert scores["nasn", "multi"][0] > scores["nasn", "rss"][0] + 1.0
    assert scores["nasn", "multi"][0] > scores["zero-filled", "multi"][0] + 3.0
    assert scores["nasn", "multi"][1] > scores["zero-filled", "multi"][1]


def test_cli_reconstructs_a_multicoil_file_from_its_coils_by_default(multicoil_file, tmp_path):
    out = tmp_path / "out.h5"
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "reconstruct", str(multicoil_file), "--model", "dccnn",
                           "--out", str(out), "--json", str(tmp_path / "m.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "SENSE data consistency" in proc.stderr + proc.stdout
    maps = "ESPIRiT" if bart_available() else "low-resolution"
    assert maps in proc.stderr + proc.stdout
    with h5py.File(out) as f:
        assert f["reconstruction"].shape == (4, 224, 224) and f.attrs["coils"] == "multi"
    metrics = json.loads((tmp_path / "m.json").read_text())
    rss = subprocess.run([sys.executable, "-m", "backend.cli", "reconstruct", str(multicoil_file), "--model", "dccnn",
                          "--coils", "rss", "--out", str(tmp_path / "rss.h5"), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert rss.returncode == 0, rss.stderr[-1500:]
    assert json.loads((tmp_path / "r.json").read_text())["psnr"] < metrics["psnr"]


def test_coil_batches_are_deterministic_and_consistent(tiny_dataset):
    """Multi-coil training batches: the same draws give the same batch; the input is the
    coil-combined zero-filled image of the masked coil k-space (the inference path's
    ``multicoil_network_inputs``), the target the combined full image, both on one scale."""
    from backend.datasets import dataset_files
    from backend.training.data import EpochBatches, SliceIndex

    index = SliceIndex(dataset_files(tiny_dataset, "train"))
    make = lambda: EpochBatches(index, seed=3, epoch=1, batch_size=2, crop=32, accelerations=(4, 8),  # noqa: E731
                                phase_prob=0.5, steps=2, coils=6)
    a, b = list(make()), list(make())
    for x, y in zip(a, b):
        for t in ("x", "k0", "mask", "target", "maps"):
            assert torch.equal(getattr(x, t), getattr(y, t))
    batch = a[0]
    assert batch.k0.shape == (2, 6, 32, 32) and batch.maps.shape == (2, 6, 32, 32)
    measured = batch.k0 * batch.mask[:, None, None, :]
    torch.testing.assert_close(measured, batch.k0)  # zero off the mask
    zf = coil_combine(torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(batch.k0, dim=(-2, -1)), norm="ortho"),
                                         dim=(-2, -1)), batch.maps)
    torch.testing.assert_close(torch.complex(batch.x[:, 0], batch.x[:, 1]), zf, rtol=1e-4, atol=1e-5)
    assert abs(float(zf.abs().amax()) - 6.0) < 1e-3  # the 6 / max normalisation
    assert float(batch.target.abs().amax()) > 0


def test_multicoil_training_learns_and_validates_from_the_coils(tiny_dataset, tmp_path):
    from backend.config import TrainConfig
    from backend.training.train import train

    out = tmp_path / "mc"
    config = TrainConfig(model="dccnn", blocks=1, channels=4, data=str(tiny_dataset), epochs=2, steps_per_epoch=3,
                         crop=32, val_volumes=1, device="cpu", coils=4)
    summary = run(train(config, str(out)))
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and np.isfinite(history[-1]["train_loss"]) and history[-1]["psnr"] > 10
    cases = sorted((out / "val_coils" / "multicoil").glob("*.h5"))
    assert cases and h5py.File(cases[0])["kspace"].ndim == 4  # validated on coil data
    assert summary["best"]["psnr"] == max(h["psnr"] for h in history)


def test_multicoil_search_runs_the_supernet_with_the_sense_dc(tiny_dataset, tmp_path):
    """``nascsmri search --coils 4``: the supernet sees coil batches (its SENSE forward equals a
    cascade's with one unit coil, checked above for the models) and derives a cell."""
    from backend.config import SearchConfig
    from backend.search.search import search
    from backend.search.supernet import SuperNet

    torch.manual_seed(0)
    net = SuperNet("A", 2, 4, 1, 2).double()
    x, k0 = _random((1, 2, 16, 16), 10).real, _random((1, 16, 16), 11)
    mask = (torch.arange(16) % 2 == 0).double()
    k0 = k0 * mask
    with torch.no_grad():
        single = net(x, k0, mask)
        net.dc.lam = 1e6  # noise-free vs mu = 1e-6: the same to rounding
        multi = net(x, k0[:, None], mask, torch.ones(1, 1, 16, 16, dtype=torch.complex128))
    torch.testing.assert_close(multi, single, rtol=1e-4, atol=1e-5)
    config = SearchConfig(data=str(tiny_dataset), channels=4, cells=1, cascades=1, nodes=2, epochs=2,
                          steps_per_epoch=2, crop=32, warmup_epochs=0, patience=None, min_epochs=0,
                          device="cpu", coils=4)
    summary = run(search(config, str(tmp_path / "s")))
    assert summary["epochs_run"] == 2 and (tmp_path / "s" / "val_coils" / "multicoil").is_dir()


def test_the_coil_output_is_the_rss_of_coil_images_with_the_measured_lines_kept():
    """``rss_output`` against numpy's FFT and hand cases: with every line measured it is the RSS
    of the measured coil images whatever the estimate; with none, ``|m| sqrt(sum |S_c|^2)``; in
    between, coil by coil, the measured lines and the estimate's other lines."""
    from backend.recon_coils import rss_output

    rng = np.random.default_rng(3)
    B, C, H, W = 2, 3, 16, 12
    kspace = (rng.normal(size=(B, C, H, W)) + 1j * rng.normal(size=(B, C, H, W))).astype(np.complex64)
    maps = (rng.normal(size=(B, C, H, W)) + 1j * rng.normal(size=(B, C, H, W))).astype(np.complex64)
    m = (rng.normal(size=(B, H, W)) + 1j * rng.normal(size=(B, H, W))).astype(np.complex64)

    def ifft(k):
        return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))

    def fft(x):
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))

    full = rss_output(m, kspace, np.ones(W, np.float32), maps)
    np.testing.assert_allclose(full.real, np.sqrt((np.abs(ifft(kspace)) ** 2).sum(1)), rtol=1e-4, atol=1e-5)
    assert np.all(full.imag == 0)
    none = rss_output(m, kspace, np.zeros(W, np.float32), maps)
    np.testing.assert_allclose(none.real, np.abs(m) * np.sqrt((np.abs(maps) ** 2).sum(1)), rtol=1e-4, atol=1e-5)
    lines = np.zeros(W, np.float32)
    lines[[0, 5, 6, 9]] = 1
    mixed = np.where(lines[None, None, None, :] > 0, kspace, fft(maps * m[:, None]))
    np.testing.assert_allclose(rss_output(m, kspace, lines, maps).real, np.sqrt((np.abs(ifft(mixed)) ** 2).sum(1)),
                               rtol=1e-4, atol=1e-5)


def test_map_residual_by_hand():
    """0 for maps made from the calibration images themselves (the low-resolution maps), 1 for
    empty maps, and the share of a coil's energy for maps that keep only the other coils."""
    from backend.coils import lowres_maps
    from backend.recon_coils import map_residual

    rng = np.random.default_rng(4)
    k = (rng.normal(size=(3, 24, 20)) + 1j * rng.normal(size=(3, 24, 20))).astype(np.complex64)
    lines = np.zeros(20, np.float32)
    lines[7:13] = 1  # 6 centre columns (W // 2 = 10 inside)
    lines[[1, 16]] = 1
    maps = lowres_maps(k, 6)
    assert map_residual(k, lines, maps) == pytest.approx(0, abs=1e-6)
    assert map_residual(k, lines, np.zeros_like(maps)) == pytest.approx(1)
    window = np.zeros(20)
    window[7:13] = np.hanning(8)[1:-1]
    x = ifft2c_np(k * window[None, None])
    one = np.zeros_like(maps)
    one[0] = 1  # a map of coil 0 alone: coils 1 and 2 lie outside it
    share = (np.abs(x[1:]) ** 2).sum() / (np.abs(x) ** 2).sum()
    assert map_residual(k, lines, one) == pytest.approx(share, rel=1e-5)


@pytest.mark.skipif(not bart_available(), reason="BART is not installed")
def test_auto_falls_back_to_rss_when_espirit_maps_miss_the_object(sample_file, multicoil_file, tmp_path):
    """Two coils, the object filling a narrow field of view, readout oversampled 2x with a smooth
    phase (the shape of a real two-channel raw file): ESPIRiT's maps leave holes over the object
    and the coil path collapsed (12 dB against 29 dB, session 17); ``auto`` takes the RSS path
    with a notice, ``multi`` still uses the coils; the 8-coil file keeps its coils."""
    from backend.recon_coils import MAX_MAP_RESIDUAL, map_residual, slice_maps
    from backend.transforms import smooth_field

    with h5py.File(sample_file) as f:
        images = f["reconstruction_esc"][2:5].astype(np.float32)
    S, H, W0 = images.shape
    W = (W0 * 5) // 7
    images = images[:, :, (W0 - W) // 2:(W0 - W) // 2 + W]
    rng = np.random.default_rng(11)
    maps = simulated_sensitivities((2 * H, W), 2, rng)
    ks, refs = [], []
    for im in images:
        canvas = np.zeros((2 * H, W), np.complex64)
        canvas[H // 2:H // 2 + H] = im * np.exp(1j * np.pi * smooth_field((H, W), rng))
        k = fft2c_np(maps * canvas[None])
        k = k + np.sqrt(np.mean(np.abs(k) ** 2)) * 10 ** -1.5 * (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)) / np.sqrt(2)
        ks.append(k.astype(np.complex64))
        refs.append(np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(0))[H // 2:H // 2 + H])
    path = tmp_path / "two_coils.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = np.stack(ks)
        f["reconstruction_rss"] = np.stack(refs).astype(np.float32)
    auto = run(reconstruct_volume(path, ReconConfig(model="zero-filled", acceleration=4)))
    assert auto.notices[-1] == RSS_NOTICE and any("fit the calibration data poorly" in n for n in auto.notices)
    forced = run(reconstruct_volume(path, ReconConfig(model="zero-filled", acceleration=4, coils="multi")))
    assert "SENSE data consistency" in forced.notices[-1]
    kept = run(reconstruct_volume(multicoil_file, ReconConfig(model="zero-filled", acceleration=4)))
    assert "SENSE data consistency" in kept.notices[-1]
    # the residual that decided, recomputed on the worst slice named in the notice
    from backend.io import open_volume
    from backend.recon import volume_mask

    with open_volume(path) as volume:
        mask, _ = volume_mask(volume.info, ReconConfig(acceleration=4))
        lines = mask.sampling.astype(np.float32)
        residuals = [map_residual(volume.coil_slice(i)[0], lines, slice_maps(volume.coil_slice(i)[0], lines)) for i in range(3)]
    assert max(residuals) > MAX_MAP_RESIDUAL, residuals
