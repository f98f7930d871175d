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
* progress is read from ``RUN/events.jsonl`` with :func:`backend.training.runs.read_events`
  (complete lines only, from a byte offset) by :class:`EventFollower`; :class:`RunTrace` folds
  the events (kinds ``start``, ``step``, ``epoch``, ``done``, ``error``) into what the widgets
  show: progress, time left, loss curves, validation PSNR, alphas, the derived genotype.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LOG = "job.log"
#: The settings the GUI hands to a job (``--config``).
JOB_FILE = "job.json"
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


def run_config(run_dir: str | os.PathLike) -> dict | None:
    """``RUN/config.json`` as a dict (None when absent or unreadable)."""
    from backend.training.runs import CONFIG

    try:
        return json.loads((Path(run_dir) / CONFIG).read_text())
    except (OSError, ValueError):
        return None


def run_kind(config: dict | None) -> str | None:
    """``search`` or ``train`` from a run's ``config.json`` (None when unknown)."""
    if not config:
        return None
    if config.get("kind") in ("search", "train"):
        return config["kind"]
    if "model" in config:  # runs made before config.json recorded its kind
        return "train"
    if "space" in config and "nodes" in config:
        return "search"
    return None


def config_from_run(cls, saved: dict):
    """The config dataclass ``cls`` rebuilt from a saved ``config.json`` (unknown keys dropped)."""
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in names}
    return cls(**values)


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
        self.log_path = self.run_dir / LOG
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


class EventFollower:
    """Reads the new events of ``RUN/events.jsonl`` on every :meth:`poll` (byte offset kept)."""

    def __init__(self, run_dir: str | os.PathLike, offset: int = 0):
        self.run_dir = Path(run_dir)
        self.offset = offset

    @classmethod
    def from_end(cls, run_dir: str | os.PathLike) -> "EventFollower":
        """A follower that skips the events already in the file (a new job in an old folder)."""
        from backend.training.runs import EVENTS

        file = Path(run_dir) / EVENTS
        return cls(run_dir, file.stat().st_size if file.exists() else 0)

    def poll(self) -> list[dict]:
        from backend.training.runs import read_events

        try:
            events, self.offset = read_events(self.run_dir, self.offset)
        except ValueError:  # a corrupt line: skip what is there, keep following
            events, self.offset = [], self.offset
        return events


# ============================================================================ trace ===========
@dataclass
class RunTrace:
    """What the events of one run say so far (folded by :meth:`feed`).

    ``steps``: ``{key: [(global step, value), ...]}`` from step events (loss_w/loss_alpha or
    loss); ``epochs``: ``{epoch: record}`` from epoch events (the history, one record per
    epoch, later records replace earlier ones after a resume); ``alphas``: the last epoch's
    ``edges x ops`` softmax weights (search); ``genotype``: the last derived genotype dict.
    """

    state: str = "waiting"  # waiting, running, done, stopped, error
    done: int = 0
    total: int = 0
    epoch: int = 0
    message: str = ""
    error: str | None = None
    summary: dict = field(default_factory=dict)
    steps: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    epochs: dict[int, dict] = field(default_factory=dict)
    alphas: list | None = None
    genotype: dict | None = None
    last_time: float | None = None
    _t0: float | None = None  # start of the current session (its start event)
    _d0: int = 0

    STEP_KEYS = ("loss_w", "loss_alpha", "loss")

    def feed(self, event: dict) -> None:
        kind = event.get("kind")
        t = event.get("time")
        if kind == "error":
            self.state, self.error = "error", event.get("message", "")
            self.message = self.error
            self.last_time = t
            return
        self.done = int(event.get("done", self.done))
        self.total = int(event.get("total", self.total)) or self.total
        self.epoch = int(event.get("epoch", self.epoch))
        self.message = event.get("message", self.message)
        self.last_time = t
        if kind == "start":
            self.state, self.error = "running", None
            self._t0, self._d0 = t, self.done
            for key in self.steps:  # a resumed run repeats the steps of an unfinished epoch
                self.steps[key] = [(x, y) for x, y in self.steps[key] if x <= self.done]
            self.epochs = {e: r for e, r in self.epochs.items() if e < self.epoch}
        elif kind == "step":
            self.state = "running"
            for key in self.STEP_KEYS:
                if event.get(key) is not None:  # the search's warm-up has no alpha loss
                    self.steps.setdefault(key, []).append((self.done, float(event[key])))
        elif kind == "epoch":
            self.state = "running"
            self.epochs[self.epoch] = event
            if "alphas" in event:
                self.alphas = event["alphas"]
            if "genotype" in event:
                self.genotype = event["genotype"]
        elif kind == "stopped":  # SIGTERM / Ctrl-C: a clean stop, the last epoch is kept
            self.state = "stopped"
        elif kind == "done":
            self.state = "done"
            self.summary = {k: v for k, v in event.items()
                            if k not in ("time", "kind", "done", "total", "epoch", "message")}
            if "genotype" in self.summary:
                self.genotype = self.summary["genotype"]

    @property
    def history(self) -> list[dict]:
        """Epoch records in epoch order."""
        return [self.epochs[e] for e in sorted(self.epochs)]

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps per epoch, from an epoch event (``done`` at its end = (epoch + 1) * steps)."""
        for e, record in self.epochs.items():
            if record.get("done"):
                return max(1, int(record["done"]) // (e + 1))
        return None

    def seconds_left(self) -> float | None:
        """Time left, from this session's rate of steps (None until a step is done)."""
        if self._t0 is None or self.last_time is None or self.done <= self._d0 or self.state != "running":
            return None
        rate = (self.done - self._d0) / max(self.last_time - self._t0, 1e-6)
        return (self.total - self.done) / rate


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
