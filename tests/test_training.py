"""Training: deterministic batches, the loop, checkpoints, and resume after SIGKILL."""

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backend.config import TrainConfig
from backend.fft import channels_to_complex, fft2c
from backend.progress import run
from backend.training.data import EpochBatches, SliceIndex, smooth_phase
from backend.training.train import train

from conftest import killed_at_random_moments, uninterrupted_and_resumed


def _batches(tiny_dataset, epoch, **kw):
    index = SliceIndex(sorted((tiny_dataset / "train").glob("*.h5")))
    opts = dict(seed=0, epoch=epoch, batch_size=2, crop=32, accelerations=(4, 8), phase_prob=0.5, steps=3)
    opts.update(kw)
    return list(EpochBatches(index, **opts))


def test_batches_are_deterministic_and_normalised(tiny_dataset):
    a, b, c = _batches(tiny_dataset, 0), _batches(tiny_dataset, 0), _batches(tiny_dataset, 1)
    for x, y in zip(a, b):
        assert torch.equal(x.x, y.x) and torch.equal(x.mask, y.mask)
    assert not all(torch.equal(x.x, z.x) for x, z in zip(a, c))
    for batch in a:
        assert batch.x.shape == (2, 2, 32, 32) and batch.k0.shape == (2, 32, 32)
        peak = channels_to_complex(batch.x).abs().flatten(1).amax(1)
        torch.testing.assert_close(peak, torch.full((2,), 6.0))
        # k0 is the target's k-space on the sampled columns and zero elsewhere
        k_target = fft2c(channels_to_complex(batch.target))
        torch.testing.assert_close(batch.k0, k_target * batch.mask[:, None, :], atol=1e-4, rtol=0)


def test_rank_shares_are_disjoint(tiny_dataset):
    r0 = _batches(tiny_dataset, 0, world=2, rank=0, steps=1, crop=None, phase_prob=0)[0]
    r1 = _batches(tiny_dataset, 0, world=2, rank=1, steps=1, crop=None, phase_prob=0)[0]
    assert not torch.equal(r0.target, r1.target)


def test_smooth_phase_is_smooth():
    phi = smooth_phase((64, 64), np.random.default_rng(0))
    assert np.abs(phi).max() == pytest.approx(np.pi, rel=1e-5)
    assert np.abs(np.diff(phi, axis=0)).max() < 0.5 and np.abs(np.diff(phi, axis=1)).max() < 0.5


def _tiny_config(data, **kw):
    base = dict(model="dccnn", blocks=1, channels=4, data=str(data), epochs=3, steps_per_epoch=3,
                crop=32, val_volumes=1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_weights_history_and_events(tiny_dataset, tmp_path):
    from backend.models import load_model

    out = tmp_path / "run"
    summary = run(train(_tiny_config(tiny_dataset), str(out)))
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[0]["lr"] == pytest.approx(1e-3) and history[2]["lr"] == pytest.approx(1e-4)
    assert summary["best"]["psnr"] == max(h["psnr"] for h in history)
    model, meta = load_model(out / "best.safetensors")
    assert model.config.name == "dccnn" and meta["epoch"] == summary["best"]["epoch"]
    kinds = [json.loads(line)["kind"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 3
    # a second run into the same folder is refused, nothing overwritten
    with pytest.raises(Exception, match="--resume"):
        run(train(_tiny_config(tiny_dataset), str(out)))


def _cli_train(data, out, *extra):
    return [sys.executable, "-m", "backend", "train", "--model", "dccnn", "--blocks", "1", "--data", str(data),
            "--epochs", "4", "--steps-per-epoch", "6", "--crop", "32", "--device", "cpu", "--out", str(out),
            "--quiet", *extra]


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_weights(tiny_dataset, tmp_path):
    ref, killed = uninterrupted_and_resumed(lambda out: _cli_train(tiny_dataset, out), tmp_path, epochs=4)
    a, b = load_file(ref / "last.safetensors"), load_file(killed / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    assert json.loads((ref / "history.json").read_text())[-1]["psnr"] == pytest.approx(
        json.loads((killed / "history.json").read_text())[-1]["psnr"])


@pytest.mark.slow
def test_killed_at_random_moments_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    ref, killed = killed_at_random_moments(lambda out: _cli_train(tiny_dataset, out), tmp_path, seed=20261129)
    a, b = load_file(ref / "last.safetensors"), load_file(killed / "last.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    assert [h["epoch"] for h in json.loads((killed / "history.json").read_text())] == [0, 1, 2, 3]


@pytest.mark.slow
def test_nasn_trains_with_augmentation_and_the_ssim_loss(tiny_dataset, tmp_path):
    """NasN through its CPU training plan, the full augmentation pipeline and L1 + SSIM: the
    loss falls, the sidecar records the loss, and a rerun gives the same weights."""
    from backend.models import load_model

    def once(out):
        config = _tiny_config(tiny_dataset, model="nasn", channels=4, cells=1, cascades=1, loss="l1+ssim",
                              epochs=2, steps_per_epoch=8, crop=40)
        run(train(config, str(out)))
        return load_file(out / "last.safetensors")

    a, b = once(tmp_path / "a"), once(tmp_path / "b")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert all(np.isfinite(h["train_loss"]) for h in history) and history[1]["train_loss"] < history[0]["train_loss"]
    _, meta = load_model(tmp_path / "a" / "best.safetensors")
    assert meta["training"]["loss"] == "l1+ssim" and meta["training"]["augment"] is True


def test_init_weights_start_the_run_and_must_fit_the_architecture(tiny_dataset, tmp_path):
    """``init_weights`` (``train --init``): the run starts from the file's tensors, not from the
    seeded initialisation (at lr 1e-12 one step leaves them as they were); a file of another
    architecture or a missing one is a one-line error before any run folder exists."""
    import subprocess

    from backend.models import build_model, save_weights

    torch.manual_seed(5)
    start = build_model("dccnn", blocks=1, channels=4)
    init = save_weights(start, tmp_path / "init.safetensors")
    out = tmp_path / "tuned"
    run(train(_tiny_config(tiny_dataset, epochs=1, steps_per_epoch=1, lr=1e-12, init_weights=str(init)), str(out)))
    tuned, before = load_file(out / "last.safetensors"), start.state_dict()
    seeded = load_file(init)  # the file itself, read back
    fresh = tmp_path / "fresh"
    run(train(_tiny_config(tiny_dataset, epochs=1, steps_per_epoch=1, lr=1e-12), str(fresh)))
    fresh_w = load_file(fresh / "last.safetensors")
    for key in before:
        torch.testing.assert_close(tuned[key], seeded[key], atol=1e-8, rtol=0)
    assert any(not torch.allclose(fresh_w[k], seeded[k], atol=1e-3) for k in before if before[k].numel() > 1)

    other = save_weights(build_model("dccnn", blocks=2), tmp_path / "two_blocks.safetensors")  # the CLI run: 1 block
    for weights, problem in ((other, "another architecture"), (tmp_path / "none.safetensors", "weights file not found")):
        target = tmp_path / f"refused_{weights.stem}"
        proc = subprocess.run(_cli_train(tiny_dataset, target, "--init", str(weights)),
                              capture_output=True, text=True, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"nascsmri: error: {weights}: ") and problem in lines[0], lines
        assert not target.exists()


def test_validation_through_the_fast_plan_gives_the_reference_numbers(tiny_dataset):
    """``train`` validates a channels_last NasN on the CPU through its inference plan: the same
    metrics as the training module itself (to float32 rounding), the model left in training
    mode and in its layout."""
    from backend.models import build_model
    from backend.training.loop import validate

    torch.manual_seed(0)
    model = build_model("nasn", channels=16, cells=2, cascades=2).to(memory_format=torch.channels_last).train()
    files = sorted((tiny_dataset / "val").glob("*.h5"))
    ref = validate(model, files, [4, 8], torch.device("cpu"), "reference")
    fast = validate(model, files, [4, 8], torch.device("cpu"), "fast")
    assert model.training
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    assert ref.keys() == fast.keys()
    for key in ref:
        assert abs(ref[key] - fast[key]) <= 1e-4 * max(1.0, abs(ref[key])), (key, ref[key], fast[key])
