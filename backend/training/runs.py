"""Writing run folders: configuration, progress events (JSON lines), atomic checkpoints, resume.

The format (file names, reading and following the events) is :mod:`backend.runfiles`.

Layout of a run folder (search and training alike)::

    RUN/config.json       the full configuration with its "kind" (search or train); a resume must
                          match it, and ``--config RUN/config.json`` reruns it
    RUN/events.jsonl      one JSON object per line: {"time", "kind", "done", "total", "epoch",
                          "message", ...data}; kinds: start, step, epoch, done, error, stopped.
                          Written by the job as it runs; the GUI follows it (also for runs
                          started from the CLI).
    RUN/checkpoint.pt     the resumable state (model, optimisers, epoch, history), written
                          atomically at the end of every epoch, loaded with weights_only=True
    RUN/history.json      per-epoch metrics

The protocol of ``events.jsonl`` is the only contract between a job and its viewers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import InputError
from ..files import atomic_write_bytes, remove_stale_temporaries, write_json

from ..runfiles import CHECKPOINT, CONFIG, EVENTS, HISTORY


@dataclass
class RunEvent:
    """A progress event: ``done`` of ``total`` steps, with per-kind data (losses, metrics...)."""

    kind: str
    done: int
    total: int
    message: str = ""
    epoch: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"time": time.time(), "kind": self.kind, "done": self.done, "total": self.total,
                "epoch": self.epoch, "message": self.message, **self.data}


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config, default=list))


class RunFolder:
    """One run's folder. Only the writer (rank 0) touches files.

    Args:
        path: the folder; kind: ``search`` or ``train``; config: the run's configuration;
        resume: continue from ``checkpoint.pt``; without it, a folder holding a checkpoint is
        refused (nothing is overwritten). A resume with another configuration is refused;
        ``defaults`` (the config's field defaults) lets fields newer than the run's
        ``config.json`` pass when they hold their default.
    """

    def __init__(self, path: str | os.PathLike, kind: str, config: dict, resume: bool, writer: bool = True,
                 defaults: dict | None = None):
        self.path = Path(path)
        self.kind = kind
        self.writer = writer
        self.config = {"kind": kind, **_jsonable(config)}
        ckpt = self.path / CHECKPOINT
        if self.path.exists() and not self.path.is_dir():
            raise InputError(self.path, "exists and is not a folder")
        if ckpt.exists() and not resume:
            raise InputError(self.path, "already holds a run: pass --resume to continue it, or choose another --out")
        if resume and (self.path / CONFIG).exists():
            saved = json.loads((self.path / CONFIG).read_text())
            saved.setdefault("kind", kind)  # runs made before config.json recorded its kind
            # a field added to the config since the run began is absent from its config.json:
            # it matches when this run leaves it at its default (what the run was made with)
            defaults = _jsonable(defaults or {})
            diff = sorted(k for k in set(saved) | set(self.config)
                          if k not in ("device",) and saved.get(k) != self.config.get(k)
                          and not (k not in saved and k in defaults and self.config.get(k) == defaults[k]))
            if diff:
                raise InputError(self.path / CONFIG, f"--resume with a different configuration ({', '.join(diff[:4])})")
        self._created = False
        self._new = not self.path.exists()  # made by this run: removed again if it is refused
        self._started = False
        if writer:
            existing = next((q for q in (self.path, *self.path.parents) if q.exists()), Path("."))
            if not existing.is_dir():
                raise InputError(existing, "is not a folder")
            if not os.access(existing, os.W_OK):
                raise InputError(existing, "output folder is not writable")
            self._create()

    def _create(self) -> None:
        if self._created or not self.writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path, os.W_OK):
            raise InputError(self.path, "output folder is not writable")
        write_json(self.path / CONFIG, self.config)
        self._created = True
        for name in (CHECKPOINT, CONFIG, HISTORY):
            remove_stale_temporaries(self.path / name)

    def _roll_back(self) -> None:
        """A job refused before its first event (a genotype, model or device that cannot be
        used) leaves no run folder behind: what this run made is removed again."""
        if not (self.writer and self._new and not self._started):
            return
        for name in (CONFIG, EVENTS):
            with contextlib.suppress(OSError):
                (self.path / name).unlink()
        with contextlib.suppress(OSError):
            self.path.rmdir()  # only when empty: nothing of anybody else's is removed
        self._created = False

    # -- events ------------------------------------------------------------------------------
    def emit(self, event: RunEvent) -> RunEvent:
        """Append the event to ``events.jsonl`` (writer only) and return it."""
        if self.writer:
            if event.kind not in ("error", "stopped"):
                self._started = True
            self._create()
            with open(self.path / EVENTS, "a") as f:
                f.write(json.dumps(event.to_json()) + "\n")
        return event

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Record how a job ends abnormally: ``stopped`` on Ctrl-C/SIGTERM, ``error`` otherwise."""
        try:
            yield
        except KeyboardInterrupt:
            self.emit(RunEvent("stopped", 0, 0, "stopped by the user; the last finished epoch is kept"))
            raise
        except Exception as err:
            if self._new and not self._started:
                self._roll_back()
            else:
                self.emit(RunEvent("error", 0, 0, f"{type(err).__name__}: {err}"))
            raise

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        if not self.writer:
            return
        self._started = True
        self._create()
        # serialised in memory, then written like every other file: a full disk is an OSError
        # (one-line error, exit 2, the previous checkpoint kept), not a torch RuntimeError
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.path / CHECKPOINT, buffer.getbuffer())

    def load_checkpoint(self) -> dict | None:
        ckpt = self.path / CHECKPOINT
        if not ckpt.exists():
            return None
        try:
            return torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InputError(ckpt, f"cannot resume: unreadable checkpoint ({str(err).splitlines()[0][:120]})") from None

    def write_history(self, history: list[dict]) -> None:
        if self.writer:
            self._create()
            write_json(self.path / HISTORY, history)
