"""Shared fixtures: small fake fastMRI files with the real key layout, written once per session."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)


def smooth_phantom(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth positive image with some structure (ellipses), float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    img = np.zeros((h, w), dtype=np.float32)
    for _ in range(5):
        cy, cx = rng.uniform(-0.4, 0.4, 2)
        ry, rx = rng.uniform(0.15, 0.6, 2)
        img += rng.uniform(0.3, 1.0) * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
    return img


@pytest.fixture(scope="session")
def fastmri_files(tmp_path_factory):
    """Paths of fake single-coil, multi-coil and test h5 files with the fastMRI layout."""
    from backend.fft import fft2c_np, ifft2c_np
    from backend.transforms import center_crop

    root = tmp_path_factory.mktemp("fastmri")
    rng = np.random.default_rng(0)
    S, H, W, crop = 3, 40, 28, 16
    # complex images with smooth phase, like raw knee data
    images = np.stack([smooth_phantom(H, W, s) for s in range(S)]).astype(np.complex64)
    phase = np.exp(1j * np.linspace(0, 1.5, W))[None, None, :]
    kspace = fft2c_np(images * phase).astype(np.complex64)
    esc = np.abs(center_crop(ifft2c_np(kspace), (crop, crop))).astype(np.float32)
    single = root / "file_single.h5"
    with h5py.File(single, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=esc)
        f.create_dataset("ismrmrd_header", data="<ismrmrdHeader/>")
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = float(esc.max())
        f.attrs["norm"] = float(np.linalg.norm(esc))
        f.attrs["patient_id"] = "fake"
    coils = 4
    sens = rng.uniform(0.5, 1.0, (coils, 1, 1)).astype(np.float32)
    mc_k = fft2c_np(images[:, None] * sens[None]).astype(np.complex64)
    rss = np.sqrt((np.abs(ifft2c_np(mc_k)) ** 2).sum(1))
    multi = root / "file_multi.h5"
    with h5py.File(multi, "w") as f:
        f.create_dataset("kspace", data=mc_k)
        f.create_dataset("reconstruction_rss", data=center_crop(rss, (crop, crop)).astype(np.float32))
    mask = np.zeros(W, dtype=bool)
    mask[::3] = True
    mask[W // 2 - 2 : W // 2 + 2] = True
    test = root / "file_test.h5"
    with h5py.File(test, "w") as f:
        f.create_dataset("kspace", data=kspace * mask[None, None, :])
        f.create_dataset("mask", data=mask)
        f.attrs["acceleration"] = 3
        f.attrs["num_low_frequency"] = 4
    return {"single": single, "multi": multi, "test": test, "kspace": kspace, "esc": esc,
            "crop": crop, "mask": mask, "rss": rss}


@pytest.fixture(scope="session")
def sample_file():
    from backend.sample import sample_path

    path = sample_path()
    assert path.exists(), "the shipped sample is missing"
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, sample_file):
    """A prepared-dataset folder (train/ val/) of real ch2 slices cropped to 48x48 (image space)."""
    from backend.config import PrepareConfig
    from backend.datasets import SOURCES, write_fastmri_h5
    from backend.transforms import center_crop

    root = tmp_path_factory.mktemp("tiny_dataset")
    with h5py.File(sample_file) as f:
        images = center_crop(f["reconstruction_esc"][()], (48, 48))
    config = PrepareConfig(size=48)
    # (val shares slices with train: fine for testing the machinery, not for measuring)
    for split, name, rows in [("train", "a.h5", slice(0, 4)), ("train", "b.h5", slice(4, 8)),
                              ("val", "c.h5", slice(6, 8))]:
        (root / split).mkdir(exist_ok=True)
        write_fastmri_h5(root / split / name, images[rows], SOURCES["ch2"], config)
    return root


def uninterrupted_and_resumed(make_cmd, tmp_path, epochs: int):
    """Run the CLI job ``make_cmd(out)`` once straight through and once SIGKILLed after its first
    epoch and finished with ``--resume``; returns the two run folders ``(reference, resumed)``."""
    import json
    import signal
    import subprocess
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(make_cmd(ref), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(make_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "history.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(json.loads((killed / "history.json").read_text())) < epochs, "finished before the kill"
    subprocess.run(make_cmd(killed) + ["--resume"], check=True, env=env, capture_output=True)
    return ref, killed


def killed_at_random_moments(make_cmd, tmp_path, seed: int, kills: int = 3):
    """Run the CLI job ``make_cmd(out)`` once straight through, and once SIGKILLed at ``kills``
    seeded random moments (each after the run has started, anywhere in the first 60% of the
    reference run's duration: mid-step, mid-validation, mid-checkpoint write), resumed with
    ``--resume`` after each kill and finally to the end. Returns ``(reference, killed)`` folders.
    """
    import random
    import signal
    import subprocess
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(make_cmd(ref), check=True, env=env, capture_output=True)
    run_seconds = sum(h["seconds"] for h in json.loads((ref / "history.json").read_text()))
    rng = random.Random(seed)
    done = 0
    for attempt in range(kills):
        proc = subprocess.Popen(make_cmd(killed) + (["--resume"] if attempt else []), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120  # the run has started once its event log exists
        while proc.poll() is None and not (killed / "events.jsonl").exists() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6) * run_seconds)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            done += 1
        proc.wait()
    assert done >= 2, "the run kept finishing before the kill: make it longer"
    subprocess.run(make_cmd(killed) + ["--resume"], check=True, env=env, capture_output=True)
    return ref, killed


def docked_viewer(make_napari_viewer, path, size=(1400, 900), run_sync=True):
    """A shown napari viewer of ``size`` with ``path`` opened by the plugin's reader and the
    Reconstruction widget docked (jobs synchronous unless ``run_sync`` is False):
    ``(viewer, widget, source)``."""
    from napari_nascsmri._widget import ReconstructionWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*size)
    [source] = viewer.open(str(path), plugin="napari-nascsmri")
    widget = ReconstructionWidget(viewer)
    widget.run_sync = run_sync
    viewer.window.add_dock_widget(widget, name="Reconstruction", area="right")
    return viewer, widget, source


@pytest.fixture
def reconstruction_rig(make_napari_viewer, sample_file):
    """:func:`docked_viewer` of the shipped sample at 1400x900."""
    return docked_viewer(make_napari_viewer, sample_file)


@pytest.fixture
def job_env(tmp_path, monkeypatch):
    """For the job widgets' tests: known genotypes in a temp file; jobs on one thread (they
    inherit the environment)."""
    from napari_nascsmri._genotype_store import GENOTYPES_ENV

    monkeypatch.setenv(GENOTYPES_ENV, str(tmp_path / "config" / "genotypes.json"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
