"""A disk that fills up mid-write: one-line error, exit 2, nothing half-written, nothing lost.

The full disk is simulated with a real kernel limit, not a mock: the command runs under
``RLIMIT_FSIZE`` (the kernel refuses to grow any file beyond the limit with ``EFBIG``, as a
full disk refuses with ``ENOSPC``; Python ignores the ``SIGXFSZ`` signal that comes with it).
"""

from __future__ import annotations

import resource
import subprocess
import sys

import h5py
import numpy as np
import pytest


def _run_with_file_size_limit(args: list[str], limit_bytes: int, cwd=None) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True,
                          preexec_fn=limit, cwd=cwd)


def _small_volume(sample_file, path):
    with h5py.File(sample_file) as f, h5py.File(path, "w") as g:
        g["kspace"] = f["kspace"][3:5]
        g["reconstruction_esc"] = f["reconstruction_esc"][3:5]
    return path


def test_reconstruct_output_that_does_not_fit(sample_file, tmp_path):
    source = _small_volume(sample_file, tmp_path / "two.h5")
    out = tmp_path / "out" / "recon.h5"
    out.parent.mkdir()
    # an existing result must survive the failed overwrite untouched
    out.write_bytes(b"previous result")
    proc = _run_with_file_size_limit(["reconstruct", str(source), "--out", str(out), "--quiet"], 64 * 1024)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("nascsmri: error:") and "recon.h5" in lines[0]
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in out.parent.iterdir()) == ["recon.h5"]  # no temporary left behind


def test_reconstruct_within_the_limit_succeeds(sample_file, tmp_path):
    source = _small_volume(sample_file, tmp_path / "two.h5")
    out = tmp_path / "recon.h5"
    proc = _run_with_file_size_limit(["reconstruct", str(source), "--out", str(out), "--quiet"], 64 * 1024 * 1024)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f["reconstruction"].shape == (2, 224, 224)
        assert np.isfinite(f["reconstruction"][()]).all()


def test_sample_that_does_not_fit(tmp_path):
    target = tmp_path / "sample.h5"
    proc = _run_with_file_size_limit(["data", "sample", "--out", str(target)], 100)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "sample.h5" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_napari_writers_on_a_full_disk(tmp_path):
    """The plugin's writers (what napari's File > Save calls) under the same kernel limit, in
    this process: a clear error naming the file, nothing left in the folder."""
    from backend.errors import InputError
    from napari_nascsmri._writer import write_fastmri_h5, write_nifti

    volume = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)  # 32 KiB
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    for writer, name in ((write_fastmri_h5, "layer.h5"), (write_nifti, "layer.nii"), (write_nifti, "layer.nii.gz")):
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            with pytest.raises(InputError, match="could not write the file") as info:
                writer(str(tmp_path / name), volume, {"name": "NasN"})
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert name in str(info.value)
        assert list(tmp_path.iterdir()) == []


def test_failed_h5_write_leaves_the_interpreter_healthy(tmp_path):
    """HDF5 used to keep a half-closed dataset after a failed write and crash the interpreter
    at exit (SIGSEGV in H5D_close): the process must exit normally, with nothing on stderr."""
    script = (
        "import resource, numpy as np\n"
        "from backend.errors import InputError\n"
        "from napari_nascsmri._writer import write_fastmri_h5\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))\n"
        "try:\n"
        f"    write_fastmri_h5({str(tmp_path / 'layer.h5')!r}, np.ones((2, 64, 64), np.float32), {{}})\n"
        "except InputError as err:\n"
        "    print(err)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "could not write the file" in proc.stdout and "layer.h5" in proc.stdout
    assert proc.stderr == ""
    assert list(tmp_path.iterdir()) == []
