"""Issue #18, files: a full disk while ``checkpoint.pt`` is written, stale temporaries of killed
writes, outputs that are inputs (hard and symbolic links), run folders made only once a job
starts. Real files, a real kernel file-size limit, real CLI processes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backend.errors import InputError
from backend.files import atomic_write_bytes, check_distinct, check_output_path, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[1]


def test_full_disk_while_the_checkpoint_is_written(tmp_path):
    """Under RLIMIT_FSIZE a checkpoint larger than the limit gives InputError (not torch's
    RuntimeError), the previous checkpoint stays as it was and no temporary is left."""
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import resource, sys, torch
        from backend.errors import InputError
        from backend.training.runs import RunFolder
        folder = RunFolder({str(run)!r}, "train", {{"a": 1}}, resume=False)
        folder.save_checkpoint({{"w": torch.zeros(10)}})
        before = open({str(run / 'checkpoint.pt')!r}, "rb").read()
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            folder.save_checkpoint({{"w": torch.zeros(1 << 20)}})  # 4 MB > 1 MB
        except InputError as err:
            print("InputError", err)
        after = open({str(run / 'checkpoint.pt')!r}, "rb").read()
        print("kept" if after == before else "changed")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("InputError") and "checkpoint.pt" in lines[0] and "could not write" in lines[0]
    assert lines[1] == "kept"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json"]


def test_stale_temporaries_of_the_same_name_are_removed(tmp_path):
    target = tmp_path / "out.json"
    dead = tmp_path / ".out.json.999999999.abcdefgh.tmp"  # a PID that does not exist
    old = tmp_path / ".out.json.abcdefgh.tmp"  # the earlier pattern (no PID), two days old
    live = tmp_path / f".out.json.{os.getpid()}.abcdefgh.tmp"  # a writer that is still running
    recent = tmp_path / ".out.json.zzzzzzzz.tmp"  # no PID, recent: may be another writer's
    other = tmp_path / ".other.json.999999999.abcdefgh.tmp"  # another file's
    lookalike = tmp_path / ".out.json.999999999.ABCDEFGH.tmp"  # not mkstemp's alphabet
    for path in (dead, old, live, recent, other, lookalike):
        path.write_text("half")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    atomic_write_bytes(target, b"{}")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in (target, live, recent, other, lookalike))
    assert remove_stale_temporaries(target) == []


def test_outputs_that_are_inputs_are_refused(tmp_path):
    data = tmp_path / "in.h5"
    data.write_bytes(b"input")
    hard = tmp_path / "hard.h5"
    os.link(data, hard)
    soft = tmp_path / "soft.h5"
    soft.symlink_to(data)
    for out in (data, hard, soft, tmp_path / "." / "in.h5"):
        with pytest.raises(InputError, match="same file as the input"):
            check_distinct([out], [data])
    with pytest.raises(InputError, match="same file as the output"):
        check_distinct([tmp_path / "new.h5", tmp_path / "sub" / ".." / "new.h5"])
    check_distinct([tmp_path / "a.h5", tmp_path / "b.json"], [data, None])
    for special in ("/dev/null", "/dev/zero"):
        with pytest.raises(InputError, match="not a regular file"):
            check_output_path(special)
    assert data.read_bytes() == b"input"


def test_refused_train_leaves_no_run_folder(tmp_path, tiny_dataset):
    """A genotype that cannot be built, an absent CUDA device: the run folder is never made."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"space": "A", "num_nodes": 1, "nodes": [[["conv_99x99", 0], ["skip_connect", 1]]]}))
    for extra in (["--model", "nasn", "--genotype", str(bad)], ["--model", "dccnn", "--device", "cuda:999"]):
        out = tmp_path / "run"
        proc = subprocess.run([sys.executable, "-m", "backend", "train", "--data", str(tiny_dataset), "--quiet",
                               "--out", str(out), *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("nascsmri: error: ")
        assert not out.exists()


def test_soft_link_loop_in_the_reader(tmp_path):
    import h5py

    from napari_nascsmri._reader import get_reader

    path = tmp_path / "loop.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = h5py.SoftLink("/kspace")
    reader = get_reader(str(path))
    if reader is not None:
        with pytest.raises(InputError, match="loop.h5"):
            reader(str(path))


def test_refused_inside_the_job_rolls_the_new_run_folder_back(tmp_path, tiny_dataset):
    """Through the backend API (no CLI pre-checks): the genotype fails inside the job, after the
    data check; the run folder it had made is removed again."""
    from backend.config import TrainConfig
    from backend.progress import run
    from backend.training.train import train

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"space": "A", "num_nodes": 1, "nodes": [[["conv_99x99", 0], ["skip_connect", 1]]]}))
    config = TrainConfig(model="nasn", genotype=str(bad), data=str(tiny_dataset), device="cpu", epochs=1,
                         steps_per_epoch=1, crop=32, val_volumes=1)
    with pytest.raises(InputError, match="unknown operation"):
        run(train(config, str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(InputError):
        run(train(config, str(existing / "run")))
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_stale_onnx_temporaries_of_a_killed_export_are_removed(tmp_path):
    """A SIGKILLed export-onnx leaves the exporter's ``.NAME.PID.XXXXXXXX.onnx`` beside the
    ``.tmp``: both are the project's pattern and go when the next write of that name starts;
    a live process's file and another name's file stay."""
    from backend.files import atomic_path

    dead = 2**22 + 12345  # above pid_max's default: no such process
    stale = [tmp_path / f".model.onnx.{dead}.abcdefgh.onnx", tmp_path / f".model.onnx.{dead}.abcdefgh.tmp"]
    alive = tmp_path / f".model.onnx.{os.getpid()}.zyxwvuts.onnx"
    other = tmp_path / f".other.onnx.{dead}.abcdefgh.onnx"
    for p in (*stale, alive, other):
        p.write_bytes(b"partial")
    with atomic_path(tmp_path / "model.onnx") as tmp:
        open(tmp, "wb").write(b"new")
    assert not any(p.exists() for p in stale) and alive.exists() and other.exists()
    assert (tmp_path / "model.onnx").read_bytes() == b"new"
