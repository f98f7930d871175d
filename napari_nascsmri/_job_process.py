"""Search and training jobs as separate OS processes, followed through ``RUN/events.jsonl``.

Qt-free: the job widgets (:mod:`napari_nascsmri._jobs`) drive these objects from a QTimer.

Protocol (the same for a job launched here and for one started from the command line):

* a job is ``python -m backend search|train --config RUN/job.json --out RUN --quiet
  [--resume]``, built by :func:`job_argv`: the widget's :mod:`backend.config` dataclass is
  written whole to ``RUN/job.json`` (the CLI is the only way in: no second implementation);
* it runs in its own session/process group (``start_new_session=True``), stdout and stderr
  appended to ``RUN/job.log``; a crash or an out-of-memory kill cannot take napari down;
* :meth:`JobProcess.stop` sends SIGTERM to the process group and, after
  :data:`STOP_GRACE_S`, SIGKILL (:meth:`JobProcess.poll` escalates). ``RUN/checkpoint.pt`` is
  written atomically at the end of every epoch, so the last finished epoch survives and
  ``--resume`` continues from it;
* progress is read from ``RUN/events.jsonl`` by :class:`backend.runfiles.EventFollower`
  (complete lines only, from a byte offset); :class:`backend.runfiles.RunTrace` folds the
  events (kinds ``start``, ``step``, ``epoch``, ``done``, ``error``) into what the widgets
  show: progress, time left, loss curves, validation PSNR, alphas, the derived genotype.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend.runfiles import JOB_FILE, JOB_LOG
#: Seconds between SIGTERM and SIGKILL when stopping a job.
STOP_GRACE_S = 10.0
#: Lines of ``job.log`` shown with an error notification.
LOG_TAIL_LINES = 8


# ============================================================================ argument lists ====
def write_job_file(kind: str, config, run_dir: str | os.PathLike) -> Path:
    """Write ``RUN/job.json``: every field of ``config`` (a :class:`backend.config.SearchConfig`
    or :class:`~backend.config.TrainConfig`) and its ``kind``, atomically; what
    ``nascsmri search|train --config`` reads."""
    from dataclasses import asdict

    from backend.files import write_json

    path = Path(run_dir) / JOB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"kind": kind, **asdict(config)})
    return path


def job_argv(kind: str, config, out: str | os.PathLike, resume: bool = False) -> list[str]:
    """``python -m backend search|train --config RUN/job.json --out RUN --quiet [--resume]``,
    writing ``RUN/job.json`` (:func:`write_job_file`). The file holds every field, so the job's
    ``config.json`` is ``config`` itself and a resume rebuilt from it matches."""
    job = write_job_file(kind, config, out)
    argv = [sys.executable, "-m", "backend", kind, "--config", os.fspath(job), "--out", os.fspath(out), "--quiet"]
    return argv + (["--resume"] if resume else [])


def tail_lines(path: str | os.PathLike, n: int = LOG_TAIL_LINES, start: int = 0) -> list[str]:
    """The last ``n`` non-empty lines of a text file from byte ``start`` (tqdm's \\r handled)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return [line for line in lines if line.strip()][-n:]


# ============================================================================ process =========
class JobProcess:
    """A CLI job in its own process group, output appended to ``RUN/job.log``.

    Args:
        argv: the full command (``[sys.executable, "-m", "backend", ...]``).
        run_dir: the run folder (created; ``job.log`` lives there).
        env: environment (default: this process's).
    """

    def __init__(self, argv: list[str], run_dir: str | os.PathLike, env: dict | None = None):
        self.argv = list(argv)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / JOB_LOG
        env = dict(os.environ if env is None else env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
            self.log_start = log.tell()
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started = time.time()
        self.stop_requested: float | None = None  # time of the SIGTERM
        self.killed = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # session leader: its pid is the group id
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """SIGTERM to the job's process group; :meth:`poll` sends SIGKILL after the grace time."""
        if not self.alive:
            return
        if self.stop_requested is None:
            self.stop_requested = time.time()
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the process group now."""
        self.killed = True
        self._signal_group(signal.SIGKILL)

    def poll(self, grace: float = STOP_GRACE_S) -> int | None:
        """The exit status once the job has ended, else None (escalates a stop to SIGKILL)."""
        rc = self.popen.poll()
        if rc is None and self.stop_requested is not None and not self.killed \
                and time.time() - self.stop_requested > grace:
            self.kill()
        return rc

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, n: int = LOG_TAIL_LINES) -> list[str]:
        """The last lines this job wrote to ``job.log``."""
        return tail_lines(self.log_path, n, self.log_start)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
