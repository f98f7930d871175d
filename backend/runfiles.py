"""The run-folder format: file names, reading the events, following a run, folding its events.

A search or training run writes one folder (:class:`backend.training.runs.RunFolder` writes it);
everything that reads one -- the GUI's job widgets, the benchmarks, the tests -- goes through
this module (torch-free, so a viewer needs no model code):

* file names: :data:`CONFIG` ... :data:`JOB_FILE`;
* :class:`StepRecord` and :class:`EpochRecord` (with a search's :class:`SearchEpoch`): one step
  as its ``step`` event holds it, one epoch as ``history.json`` and the ``epoch`` events hold
  it, written and read through this one definition;
* :func:`read_events` (complete lines of ``events.jsonl`` from a byte offset),
  :class:`EventFollower` (polls them), :class:`RunTrace` (folds them into progress, losses,
  validation PSNR, alphas, the derived genotype);
* :func:`run_config` / :func:`run_kind` / :func:`config_from_run`: a run's ``config.json``.

``events.jsonl`` holds one JSON object per line: ``{"time", "kind", "done", "total", "epoch",
"message", ...data}``; kinds ``start``, ``step``, ``epoch``, ``done``, ``error``, ``stopped``.
It is the only contract between a job and its viewers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

#: The full configuration with its ``"kind"`` (a resume must match it; ``--config`` reruns it).
CONFIG = "config.json"
#: Progress events, one JSON object per line.
EVENTS = "events.jsonl"
#: The resumable state, written atomically after every epoch (``weights_only`` loads).
CHECKPOINT = "checkpoint.pt"
#: Per-epoch records.
HISTORY = "history.json"
#: A search's derived cell, its softmax alphas, and (``--select perturb``) the measured removals.
GENOTYPE = "genotype.json"
ALPHAS = "alphas.json"
SELECTION = "selection.json"
#: A search's figures: the cell as a graph, the alphas per epoch, the signal per edge.
CELL_IMAGE = "cell.png"
ALPHAS_IMAGE = "alphas.png"
SIGNAL_IMAGE = "signal.png"
#: A training's weights (safetensors + JSON sidecar): best validation epoch and last epoch.
BEST_WEIGHTS = "best.safetensors"
LAST_WEIGHTS = "last.safetensors"
#: Written by the GUI: the job's settings (``--config``) and its output.
JOB_FILE = "job.json"
JOB_LOG = "job.log"


def read_events(path: str | os.PathLike, start: int = 0) -> tuple[list[dict], int]:
    """Events of a run folder from byte offset ``start``; returns ``(events, new offset)``.

    Only complete lines are returned, so a viewer polling a running job never sees half an
    event.
    """
    file = Path(path) / EVENTS
    if not file.exists():
        return [], start
    with open(file, "rb") as f:
        f.seek(start)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    events = [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
    return events, start + end


def run_config(run_dir: str | os.PathLike) -> dict | None:
    """``RUN/config.json`` as a dict (None when absent or unreadable)."""
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


#: Keys of an event line that are the event's, not its record's (:class:`backend.training.runs.RunEvent`).
EVENT_KEYS = ("time", "kind", "done", "total", "epoch", "message")


@dataclass(frozen=True)
class StepRecord:
    """One optimisation step as its ``step`` event holds it: ``losses`` (training ``loss``;
    search ``loss_w`` and ``loss_alpha``, None in the warm-up), the learning rate, and (events
    only) the global step and epoch."""

    losses: dict
    lr: float | None
    done: int | None = None
    epoch: int | None = None

    LOSSES = ("loss", "loss_w", "loss_alpha")

    @classmethod
    def from_json(cls, data: dict, strict: bool = False) -> "StepRecord":
        """The record of a step event (``strict``: a key no field claims is a ``ValueError``)."""
        if strict and set(data) - {*EVENT_KEYS, "lr", *cls.LOSSES}:
            raise ValueError(f"step record keys without a field: {sorted(set(data) - {*EVENT_KEYS, 'lr', *cls.LOSSES})}")
        return cls({k: data[k] for k in cls.LOSSES if k in data}, data.get("lr"), data.get("done"), data.get("epoch"))

    def to_json(self) -> dict:
        """The step event's data (what the job's ``step`` returns)."""
        return {**self.losses, "lr": self.lr}


@dataclass(frozen=True)
class SearchEpoch:
    """What a search's epoch record adds (the alphas and their diagnostics,
    :func:`backend.search.selection.diagnostics`); the defaults stand in for keys that runs made
    before the diagnostics existed do not have."""

    warmup: bool = False
    stable_epochs: int = 0
    alphas_in_sync: bool = True
    genotype: dict | None = None
    genotype_uncapped: dict | None = None
    alphas: list | None = None      # edges x operations, softmax weights
    edge_entropy: list = field(default_factory=list)   # nats per edge
    edge_margin: list = field(default_factory=list)    # best - second operation per edge
    chosen_margin: list = field(default_factory=list)  # the derived cell's edges
    uniform_entropy: float | None = None               # log(#operations)
    no_signal: bool = False
    no_signal_reason: str = ""


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch of a search or a training: a line of ``history.json``, or the record of
    an ``epoch`` event. ``losses``: the epoch means (training ``train_loss``; search ``loss_w``
    and ``loss_alpha``, None in the warm-up); ``validation``: ``psnr`` and ``ssim`` (mean over
    the accelerations) and ``psnr_<a>x`` / ``ssim_<a>x``; ``search``: a search's
    :class:`SearchEpoch`; ``done``: the global step at the epoch's end (events only)."""

    epoch: int
    lr: float | None
    seconds: float | None
    losses: dict
    validation: dict
    search: SearchEpoch | None = None
    done: int | None = None

    LOSSES = ("train_loss", "loss_w", "loss_alpha")

    @classmethod
    def from_json(cls, data: dict, strict: bool = False) -> "EpochRecord":
        """The record of a history line or an epoch event; ``strict``: a key no field claims is a
        ``ValueError`` (the writers' test: the format has one definition, here)."""
        from dataclasses import fields

        search_keys = [f.name for f in fields(SearchEpoch)]
        validation = {k: v for k, v in data.items() if k in ("psnr", "ssim") or k.startswith(("psnr_", "ssim_"))}
        claimed = {*EVENT_KEYS, "lr", "seconds", *cls.LOSSES, *validation, *search_keys}
        if strict and set(data) - claimed:
            raise ValueError(f"epoch record keys without a field: {sorted(set(data) - claimed)}")
        present = {k: data[k] for k in search_keys if k in data}
        search = SearchEpoch(**present) if present else None
        return cls(int(data["epoch"]), data.get("lr"), data.get("seconds"),
                   {k: data[k] for k in cls.LOSSES if k in data}, validation, search, data.get("done"))

    def to_json(self) -> dict:
        """The history line (event keys apart, the inverse of :meth:`from_json`)."""
        from dataclasses import asdict

        out = {"epoch": self.epoch, **self.losses, "lr": self.lr, "seconds": self.seconds, **self.validation}
        return {**out, **(asdict(self.search) if self.search is not None else {})}

    def get(self, key: str) -> float | None:
        """A loss or a validation value by its key (None when the record has none)."""
        return self.losses.get(key, self.validation.get(key))


class EventFollower:
    """Reads the new events of ``RUN/events.jsonl`` on every :meth:`poll` (byte offset kept)."""

    def __init__(self, run_dir: str | os.PathLike, offset: int = 0):
        self.run_dir = Path(run_dir)
        self.offset = offset

    @classmethod
    def from_end(cls, run_dir: str | os.PathLike) -> "EventFollower":
        """A follower that skips the events already in the file (a new job in an old folder)."""
        file = Path(run_dir) / EVENTS
        return cls(run_dir, file.stat().st_size if file.exists() else 0)

    def poll(self) -> list[dict]:
        try:
            events, self.offset = read_events(self.run_dir, self.offset)
        except ValueError:  # a corrupt line: skip what is there, keep following
            events, self.offset = [], self.offset
        return events


@dataclass
class RunTrace:
    """What the events of one run say so far (folded by :meth:`feed`).

    ``steps``: ``{key: [(global step, value), ...]}`` from step events (loss_w/loss_alpha or
    loss); ``epochs``: ``{epoch: EpochRecord}`` from epoch events (the history, one record per
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
            for key, value in StepRecord.from_json(event).losses.items():
                if value is not None:  # the search's warm-up has no alpha loss
                    self.steps.setdefault(key, []).append((self.done, float(value)))
        elif kind == "epoch":
            self.state = "running"
            record = EpochRecord.from_json(event)
            self.epochs[self.epoch] = record
            if record.search is not None and record.search.alphas is not None:
                self.alphas = record.search.alphas
            if record.search is not None and record.search.genotype is not None:
                self.genotype = record.search.genotype
        elif kind == "stopped":  # SIGTERM / Ctrl-C: a clean stop, the last epoch is kept
            self.state = "stopped"
        elif kind == "done":
            self.state = "done"
            self.summary = {k: v for k, v in event.items() if k not in EVENT_KEYS}
            if "genotype" in self.summary:
                self.genotype = self.summary["genotype"]

    @property
    def history(self) -> list[EpochRecord]:
        """Epoch records in epoch order."""
        return [self.epochs[e] for e in sorted(self.epochs)]

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps per epoch, from an epoch event (``done`` at its end = (epoch + 1) * steps)."""
        for e, record in self.epochs.items():
            if record.done:
                return max(1, int(record.done) // (e + 1))
        return None

    def seconds_left(self) -> float | None:
        """Time left, from this session's rate of steps (None until a step is done)."""
        if self._t0 is None or self.last_time is None or self.done <= self._d0 or self.state != "running":
            return None
        rate = (self.done - self._d0) / max(self.last_time - self._t0, 1e-6)
        return (self.total - self.done) / rate
