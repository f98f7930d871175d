"""The Search and Train widgets: launch ``nascsmri search|train`` as a process, follow it live.

Both are magicgui :class:`~magicgui.widgets.Container` subclasses whose sub-widgets are
attributes (tests set values and call :meth:`JobWidget.start` / ``stop`` / ``resume`` /
``attach`` without clicking). They are thin:

* the settings become a :class:`backend.config.SearchConfig` / ``TrainConfig`` through
  :func:`backend.config.apply_preset` (the presets are the one home of defaults), and the
  config is written to ``RUN/job.json`` and handed to the CLI with ``--config``
  (:func:`~napari_nascsmri._job_process.job_argv`);
* the job is a separate process (:class:`~napari_nascsmri._job_process.JobProcess`: own
  process group, output in ``RUN/job.log``, Stop = SIGTERM then SIGKILL, Resume = ``--resume``);
* a QTimer (:data:`POLL_MS`) reads ``RUN/events.jsonl`` (:func:`backend.runfiles.read_events`)
  and renders progress, time left and the live plots (:mod:`napari_nascsmri._plots`). *Attach*
  follows a run folder without a process (a run started from the CLI): same events, no Stop.

A finished search's ``RUN/genotype.json`` joins the list of known genotypes
(:func:`known_genotypes`, persisted in :func:`genotypes_file`), which the Train widget offers
for NasN. A finished training's ``RUN/best.safetensors`` can be handed to the reconstruction
widget (:func:`use_in_reconstruction`, the *Use in reconstruction widget* button, and the
``TrainWidget.weights_ready`` signal).

A job keeps running when its widget or napari closes (it is in its own session); *Attach*
picks it up again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, Select, SpinBox
from psygnal import Signal

from backend.runfiles import (
    BEST_WEIGHTS,
    CHECKPOINT,
    EVENTS,
    GENOTYPE,
    JOB_LOG,
    EventFollower,
    RunTrace,
    config_from_run,
    run_config,
    run_kind,
)

from ._job_process import JobProcess, format_seconds, job_argv
from ._widget import FROM_FILE, _notify

if TYPE_CHECKING:
    import napari

#: Milliseconds between two reads of ``RUN/events.jsonl``.
POLL_MS = 500
#: Environment variable naming the known-genotypes JSON file (tests point it to a temp dir).
GENOTYPES_ENV = "NASCSMRI_GENOTYPES"
#: An attached run that wrote an event less than this many seconds ago counts as alive
#: (Resume refuses: two processes must not write one run folder).
ATTACHED_ALIVE_S = 120.0
#: Where new runs go when no run folder is chosen.
DEFAULT_RUNS_DIR = Path.home() / "nascsmri-runs"
SHIPPED_LABEL, HAND_LABEL = "shipped NasN genotype", "HAND_A3 (hand-made)"


# ============================================================================ known genotypes ==
@dataclass(frozen=True)
class KnownGenotype:
    """A genotype the widgets offer: ``label`` (shown), ``path`` (JSON file), ``source``
    (``shipped``, ``builtin`` or ``run``)."""

    label: str
    path: str
    source: str


class _GenotypeEvents:
    changed = Signal()


#: ``genotype_events.changed`` fires when :func:`remember_genotype` adds a genotype.
genotype_events = _GenotypeEvents()


def genotypes_file() -> Path:
    """The JSON list of genotypes found by runs: ``$NASCSMRI_GENOTYPES`` or
    ``$XDG_CONFIG_HOME/napari-nascsmri/genotypes.json`` (``~/.config`` by default)."""
    env = os.environ.get(GENOTYPES_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "napari-nascsmri" / "genotypes.json"


def _read_entries() -> list[dict]:
    try:
        data = json.loads(genotypes_file().read_text())
    except (OSError, ValueError):
        return []
    return [e for e in data.get("genotypes", []) if isinstance(e, dict) and "path" in e]


def _hand_file() -> Path:
    """HAND_A3 as a JSON file next to the list (written when first used)."""
    return genotypes_file().parent / "HAND_A3.json"


def known_genotypes() -> list[KnownGenotype]:
    """The shipped genotype (when present), HAND_A3, then every finished search remembered."""
    from backend.models.genotype import shipped_genotype_path

    out = []
    shipped = shipped_genotype_path()
    if shipped.exists():
        out.append(KnownGenotype(SHIPPED_LABEL, str(shipped), "shipped"))
    out.append(KnownGenotype(HAND_LABEL, str(_hand_file()), "builtin"))
    for entry in _read_entries():
        if Path(entry["path"]).is_file():
            out.append(KnownGenotype(entry.get("label") or entry["path"], entry["path"], "run"))
    return out


def ensure_genotype_file(path: str | os.PathLike) -> str:
    """The path of a known genotype, writing HAND_A3's file first when that is the one."""
    from backend.models import HAND_A3

    path = Path(path)
    if path == _hand_file() and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        HAND_A3.save(path)
    return str(path)


def remember_genotype(path: str | os.PathLike, label: str | None = None) -> KnownGenotype:
    """Add a genotype file (validated) to the persisted list; returns its entry.

    ``label`` defaults to ``"<run folder> (space S, N nodes)"``. A path already known keeps
    its entry. Emits ``genotype_events.changed`` when something was added.
    """
    from backend.files import write_json
    from backend.models import Genotype

    path = Path(path).resolve()
    genotype = Genotype.load(path)
    entries = _read_entries()
    for entry in entries:
        if Path(entry["path"]) == path:
            return KnownGenotype(entry.get("label") or str(path), str(path), "run")
    label = label or f"{path.parent.name} (space {genotype.space}, {genotype.num_nodes} nodes)"
    taken = {e.get("label") for e in entries} | {SHIPPED_LABEL, HAND_LABEL}
    unique, k = label, 2
    while unique in taken:
        unique, k = f"{label} #{k}", k + 1
    entries.append({"label": unique, "path": str(path), "space": genotype.space,
                    "nodes": genotype.num_nodes, "added": time.strftime("%Y-%m-%d %H:%M:%S")})
    target = genotypes_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json(target, {"version": 1, "genotypes": entries})
    genotype_events.changed.emit()
    return KnownGenotype(unique, str(path), "run")


def _genotype_choices(widget=None) -> list[tuple[str, str]]:
    return [(g.label, g.path) for g in known_genotypes()]


# ============================================================================ reconstruction ===
def find_reconstruction_widget(viewer: napari.viewer.Viewer):
    """The ReconstructionWidget docked in ``viewer``'s window, or None."""
    from ._widget import ReconstructionWidget

    window = viewer.window
    docks = getattr(window, "dock_widgets", None)  # napari >= 0.6.2: inner widgets
    if docks is None:
        docks = {name: dock.inner_widget() for name, dock in window._dock_widgets.items()}
    for widget in docks.values():
        if isinstance(widget, ReconstructionWidget):
            return widget
    return None


def use_in_reconstruction(viewer: napari.viewer.Viewer, model: str, weights: str | os.PathLike,
                          dock: bool = True):
    """Select ``model`` with the weights file ``weights`` in the reconstruction widget.

    Docks a reconstruction widget first when none is docked (``dock``); returns the widget
    (None when there is none and ``dock`` is False).
    """
    widget = find_reconstruction_widget(viewer)
    if widget is None and dock:
        _, widget = viewer.window.add_plugin_dock_widget("napari-nascsmri", "Reconstruction")
    if widget is None:
        return None
    widget.method.value = model
    widget.weights.value = FROM_FILE
    widget.weights_file.value = Path(weights)
    return widget


# ============================================================================ widgets =========
def _device_choices() -> list[tuple[str, str]]:
    import torch

    choices = [("cpu", "cpu")]
    if torch.cuda.is_available():
        try:
            name = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - informational only
            name = "CUDA"
        choices.insert(0, (f"cuda ({name})", "cuda"))
    return choices


def _path_value(widget: FileEdit) -> Path | None:
    value = widget.value
    if value is None or os.fspath(value) in ("", "."):
        return None
    return Path(value).expanduser()


def _set_optional(spin: SpinBox, value: int | None, none_text: str, low: int) -> None:
    """Show an optional count: None as 0 with ``none_text``, else ``value`` (minimum ``low``).

    0 is offered only when the preset's value is None: the CLI has no flag for "None", so an
    omitted flag means the preset's value.
    """
    spin.native.setSpecialValueText(none_text if value is None else "")
    spin.min = 0 if value is None else low
    spin.value = 0 if value is None else value


class JobWidget(Container):
    """Common part of the Search and Train widgets (see the module docstring).

    Sub-widgets: ``data``, ``preset``, ``epochs``, ``steps_per_epoch`` (0 = one pass),
    ``crop`` (0 = full grid), ``device``, ``seed``, ``out`` (the run folder), ``start_button``,
    ``stop_button``, ``resume_button``, ``attach_button``, ``progress``, ``status``; the Qt
    widget ``plots`` (:class:`~napari_nascsmri._plots.LivePlots`). State: ``process``
    (:class:`JobProcess` or None), ``run_dir``, ``trace`` (:class:`RunTrace`), ``timer``.
    """

    KIND = ""  # "search" or "train"
    job_finished = Signal(str, str)  # (state: done/stopped/error, run folder)

    def __init__(self, viewer: napari.viewer.Viewer, config_cls, presets: dict):
        from qtpy.QtCore import QTimer

        from ._plots import LivePlots

        super().__init__(labels=True)
        self.viewer = viewer
        self._config_cls, self._presets = config_cls, presets
        self.process: JobProcess | None = None
        self.follower: EventFollower | None = None
        self.run_dir: Path | None = None
        self.trace = RunTrace()
        self._run_settings: dict = {}
        self._since = 0.0
        self._reported = False

        d = config_cls()
        self.data = FileEdit(label="dataset", mode="d", value=d.data,
                             tooltip="prepared dataset folder (train/ and val/), see 'nascsmri data prepare'")
        self.preset = ComboBox(label="preset", choices=sorted(presets), value=d.preset,
                               tooltip="cpu: sized for a few CPU cores; paper: the authors' sizes")
        self.epochs = SpinBox(label="epochs", min=1, max=10_000, value=1,
                              tooltip="passes of the schedule (the preset's value until you change it)")
        self.steps_per_epoch = SpinBox(label="steps / epoch", min=0, max=1_000_000, value=0,
                                       tooltip="'one pass': every training slice once per epoch")
        self.crop = SpinBox(label="crop", min=0, max=4096, value=0,
                            tooltip="square image-space training crop; 'full grid': no crop")
        self.device = ComboBox(label="device", choices=_device_choices(),
                               tooltip="where the job runs (CUDA when torch sees a GPU)")
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=d.seed,
                            tooltip="seed of the job's weights, data order and masks (reproducible runs)")
        self.out = FileEdit(label="run folder", mode="d",
                            tooltip="the job's folder (config.json, events.jsonl, checkpoint.pt, job.log); "
                                    f"empty: a new folder under {DEFAULT_RUNS_DIR}")
        self.start_button = PushButton(text="Start", tooltip=f"launch 'nascsmri {self.KIND}' as a separate "
                                                             "process in the run folder")
        self.stop_button = PushButton(text="Stop", enabled=False,
                                      tooltip="SIGTERM to the job; the last finished epoch's checkpoint is kept")
        self.resume_button = PushButton(text="Resume", tooltip="continue the run folder's checkpoint (--resume)")
        self.attach_button = PushButton(text="Attach", tooltip="follow the run folder (e.g. a job started "
                                                               "from the command line) without launching")
        self._buttons = Container(layout="horizontal", labels=False, label="",
                                  widgets=[self.start_button, self.stop_button, self.resume_button,
                                           self.attach_button])
        self._buttons.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0, tooltip="steps done of the run")
        self.status = Label(label="status", value="idle")
        self.status.tooltip = "the job's state, epoch, step and time left"
        self.status.native.setWordWrap(True)
        self.plots = LivePlots(self.KIND)

        self.preset.changed.connect(self._on_preset_changed)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.resume_button.changed.connect(self.resume)
        self.attach_button.changed.connect(lambda: self.attach())
        self.timer = QTimer(self.native)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.native.destroyed.connect(lambda *_: self._disconnect())

    def _finish_layout(self, widgets: list) -> None:
        self.extend(widgets)
        self.native.layout().addWidget(self.plots)
        self._make_scrollable()
        self._on_preset_changed()
        self._update_buttons()

    def _make_scrollable(self) -> None:
        """Move the controls and plots into a scroll area: the widget's minimum height (about
        1,300 px with the plots) must not set the napari window's (it grew past the screen)."""
        from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

        outer = self.native.layout()
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.setContentsMargins(outer.contentsMargins())
        inner.setSpacing(outer.spacing())
        while outer.count():
            item = outer.takeAt(0)
            if item.widget() is not None:
                inner.addWidget(item.widget())
            else:
                inner.addItem(item)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(content)
        self.scroll.setMinimumWidth(content.minimumSizeHint().width() + 20)
        self.scroll.setMinimumHeight(240)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

    def _disconnect(self) -> None:
        """The native widget is going away: stop polling, leave the registry's signal.

        The job itself keeps running (own session); *Attach* picks it up again. Runs during
        garbage collection too, when attributes may already be gone.
        """
        for step in (lambda: self.timer.stop(), lambda: self._leave_registry()):
            try:
                step()
            except (AttributeError, RuntimeError):
                pass

    def _leave_registry(self) -> None:
        pass

    # ------------------------------------------------------------------------ settings ------
    def _on_preset_changed(self, *_) -> None:
        """Show the preset's values (they are the defaults; edited values override them)."""
        from backend.config import apply_preset

        base = apply_preset(self._config_cls(preset=self.preset.value), self._presets)
        self._show_settings(base, preset_only=True)

    def _show_settings(self, config, preset_only: bool = False) -> None:
        self.epochs.value = config.epochs
        _set_optional(self.steps_per_epoch, config.steps_per_epoch, "one pass", 1)
        _set_optional(self.crop, config.crop, "full grid", 16)
        if preset_only:
            return
        self.data.value = config.data
        if config.preset in self.preset.choices:
            with self.preset.changed.blocked():
                self.preset.value = config.preset
        if config.device in self.device.choices:
            self.device.value = config.device
        self.seed.value = config.seed

    def config(self):
        """The job's configuration: the preset, then the values shown in the widget."""
        from backend.config import apply_preset

        data = _path_value(self.data)
        base = self._config_cls(data=str(data.resolve()) if data else self._config_cls().data,
                                preset=self.preset.value, seed=self.seed.value,
                                device=self.device.value, **self._own_fields())
        overrides = {"epochs": self.epochs.value, "steps_per_epoch": self.steps_per_epoch.value or None,
                     "crop": self.crop.value or None, **self._own_overrides()}
        return apply_preset(base, self._presets, overrides)

    def _own_fields(self) -> dict:  # kind-specific constructor fields
        return {}

    def _own_overrides(self) -> dict:  # kind-specific preset overrides
        return {}

    def argv(self, config, out, resume: bool = False) -> list[str]:
        raise NotImplementedError

    def default_run_dir(self) -> Path:
        raise NotImplementedError

    # ------------------------------------------------------------------------ actions -------
    @property
    def running(self) -> bool:
        """A job launched by this widget is alive."""
        return self.process is not None and self.process.alive

    @property
    def following(self) -> bool:
        return self.timer.isActive()

    def start(self, *_) -> JobProcess | None:
        """Launch a new job with the widget's settings in the run folder."""
        if self.running:
            _notify("warning", f"napari-nascsmri: a {self.KIND} job is already running")
            return None
        run_dir = _path_value(self.out)
        if run_dir is None:
            run_dir = self.default_run_dir()
            self.out.value = run_dir
        if self._attached_alive(run_dir):
            return None
        try:
            config = self.config()
        except Exception as err:  # noqa: BLE001 - a bad setting becomes a notification
            _notify("error", f"napari-nascsmri: {err}")
            return None
        run_dir = run_dir.resolve()
        follower = EventFollower.from_end(run_dir)  # an old failed attempt's events stay old
        return self._launch(self.argv(config, run_dir), run_dir, follower)

    def resume(self, *_) -> JobProcess | None:
        """Relaunch the run folder's job from its checkpoint (``--resume``), as it was configured."""
        if self.running:
            _notify("warning", f"napari-nascsmri: a {self.KIND} job is already running")
            return None
        run_dir = _path_value(self.out)
        if self._attached_alive(run_dir):
            return None
        saved = run_config(run_dir) if run_dir else None
        if run_dir is None or run_kind(saved) != self.KIND:
            _notify("error", f"napari-nascsmri: {run_dir or 'no run folder'}: not a {self.KIND} run folder")
            return None
        if not (run_dir / CHECKPOINT).exists():
            _notify("warning", f"napari-nascsmri: {run_dir}: no checkpoint yet; use Start")
            return None
        config = config_from_run(self._config_cls, saved)
        config.device = self.device.value  # the device may change on resume
        self._show_settings(config)
        run_dir = run_dir.resolve()
        return self._launch(self.argv(config, run_dir, resume=True), run_dir, EventFollower(run_dir))

    def _attached_alive(self, run_dir: Path | None) -> bool:
        """True (with a warning) when an attached run in ``run_dir`` still writes events."""
        t = self.trace
        if (self.process is None and run_dir is not None and self.run_dir == run_dir.resolve()
                and t.state == "running" and t.last_time is not None
                and time.time() - t.last_time < ATTACHED_ALIVE_S):
            _notify("warning", f"napari-nascsmri: {run_dir} is still writing events (last "
                               f"{time.time() - t.last_time:.0f} s ago): stop that job where it was "
                               "started before resuming it here")
            return True
        return False

    def stop(self, *_) -> None:
        """SIGTERM to the job's process group (SIGKILL after the grace time)."""
        if not self.running:
            return
        self.process.stop()
        self.stop_button.enabled = False
        self.status.value = "stopping (SIGTERM sent)..."

    def attach(self, path: str | os.PathLike | None = None) -> bool:
        """Follow an existing run folder (a job started elsewhere, or a finished run)."""
        if self.running:
            _notify("warning", f"napari-nascsmri: a {self.KIND} job is running here; stop it first")
            return False
        run_dir = Path(path) if path is not None else _path_value(self.out)
        saved = run_config(run_dir) if run_dir else None
        kind = run_kind(saved)
        if run_dir is None or (kind is None and not (run_dir / EVENTS).exists()) or kind not in (None, self.KIND):
            what = f"a {kind} run" if kind else "not a run folder (no config.json / events.jsonl)"
            _notify("error", f"napari-nascsmri: {run_dir or 'no run folder'}: {what}; "
                             f"attach a {self.KIND} run folder")
            return False
        if saved:
            self._show_settings(config_from_run(self._config_cls, saved))
        self.out.value = run_dir
        self.process = None
        self._follow(run_dir.resolve(), EventFollower(run_dir.resolve()))
        self.poll()
        return True

    def _launch(self, argv: list[str], run_dir: Path, follower: EventFollower) -> JobProcess | None:
        try:
            process = JobProcess(argv, run_dir)
        except OSError as err:
            _notify("error", f"napari-nascsmri: cannot start the {self.KIND} job: {err}")
            return None
        self.process = process
        self._follow(run_dir, follower)
        self.status.value = f"{self.KIND}: starting (pid {process.pid}), log in {run_dir / 'job.log'}"
        return process

    def _follow(self, run_dir: Path, follower: EventFollower) -> None:
        self.run_dir, self.follower = run_dir, follower
        self.trace = RunTrace()
        self._run_settings = run_config(run_dir) or {}
        self._since = time.time()
        self._reported = False
        self.plots.clear()
        self.progress.max, self.progress.value = 1, 0
        self.timer.start()
        self._update_buttons()

    # ------------------------------------------------------------------------ following -----
    def poll(self) -> None:
        """Read new events, check the process, refresh the display (the timer calls this)."""
        if self.follower is None:
            return
        if not self._run_settings:
            self._run_settings = run_config(self.run_dir) or {}
        changed = self._feed(self.follower.poll())
        if self.process is not None:
            rc = self.process.poll()
            if rc is not None:
                changed |= self._feed(self.follower.poll())
                self._on_exit(rc)
                changed = True
        elif self.trace.state in ("done", "error"):
            self.timer.stop()
        if changed:
            self._refresh()
        elif self.trace.state == "running":
            self._refresh_status()
        self._update_buttons()

    def _feed(self, events: list[dict]) -> bool:
        for event in events:
            self.trace.feed(event)
            kind = event.get("kind")
            if kind == "done":
                self._on_done()
            elif kind == "error" and self.process is None and not self._reported \
                    and event.get("time", 0) >= self._since - 1:
                # an attached job failed (a launched job's failure is reported at its exit)
                self._reported = True
                _notify("error", f"napari-nascsmri: {self.KIND} in {self.run_dir} failed: {event.get('message')}")
        return bool(events)

    def _on_exit(self, rc: int) -> None:
        process, self.process = self.process, None
        self.timer.stop()
        if process.stop_requested is not None:
            epochs = len(self.trace.epochs)
            self.trace.state = "stopped"
            self.status.value = (f"{self.KIND}: stopped after {epochs} finished epoch(s); the checkpoint "
                                 "is kept, Resume continues")
            self.job_finished.emit("stopped", str(self.run_dir))
            return
        if rc == 0 and self.trace.state == "done":
            return
        lines = process.log_tail()
        reason = f"killed by signal {-rc}" + (" (out of memory?)" if rc == -9 else "") if rc < 0 else f"exit {rc}"
        message = self.trace.error if self.trace.state == "error" else None
        text = "\n".join(lines) or message or "(no output)"
        self.trace.state = "error"
        self.trace.error = f"({reason}) " + (message or (lines[-1] if lines else ""))
        _notify("error", f"napari-nascsmri: {self.KIND} failed ({reason}):\n{text}")
        self.job_finished.emit("error", str(self.run_dir))

    def _on_done(self) -> None:
        """The run's done event (launched or attached)."""
        self.job_finished.emit("done", str(self.run_dir))

    def _refresh(self) -> None:
        self._refresh_status()
        self.plots.render(self.trace, space=self._run_settings.get("space"),
                          nodes=self._run_settings.get("nodes"), run_dir=self.run_dir)

    def _refresh_status(self) -> None:
        t = self.trace
        if t.total:
            self.progress.max = max(t.total, 1)
            self.progress.value = min(t.done, t.total)
        epochs = self._run_settings.get("epochs")
        if t.state == "running":
            epoch = t.epoch + 1 if not epochs else min(t.epoch + 1, epochs)
            self.status.value = (f"{self.KIND}: epoch {epoch}/{epochs or '?'}, step {t.done}/{t.total}, "
                                 f"{format_seconds(t.seconds_left())} left" + self._progress_note()
                                 + (" (attached)" if self.process is None else ""))
        elif t.state == "waiting":
            self.status.value = f"{self.KIND}: waiting for the first event" + (
                "" if self.process is not None else " (attached)")
        elif t.state == "done":
            self.status.value = self._done_text()
        elif t.state == "error" and self.process is None:
            log = self.run_dir / JOB_LOG if self.run_dir else None
            self.status.value = f"{self.KIND}: failed: {t.error}" + (
                f"; log in {log}" if log is not None and log.exists() else "")

    def _progress_note(self) -> str:
        """Extra words for the running status line (kind-specific)."""
        return ""

    def _done_text(self) -> str:
        return f"{self.KIND}: done ({self.trace.message})"

    def _update_buttons(self) -> None:
        running = self.running
        self.start_button.enabled = not running
        self.stop_button.enabled = running and self.process.stop_requested is None
        self.resume_button.enabled = not running
        self.attach_button.enabled = not running
        self.data.enabled = self.out.enabled = not running


class SearchWidget(JobWidget):
    """Launch and follow a DARTS search (``nascsmri search``).

    Extra sub-widgets: ``space``, ``nodes``, ``channels``, ``cells``, ``genotypes`` (the known
    genotypes, a finished search's ``genotype.json`` included). ``plots`` adds the alphas heat
    map and the derived cell (``RUN/cell.png``).
    """

    KIND = "search"

    def __init__(self, viewer: napari.viewer.Viewer):
        from backend.config import SEARCH_PRESETS, SearchConfig

        super().__init__(viewer, SearchConfig, SEARCH_PRESETS)
        d = SearchConfig()
        from backend.config import SEARCH_METHODS, SELECTIONS

        self.space = ComboBox(label="search space", choices=["A", "B", "extended"], value=d.space,
                              tooltip="candidate operations per edge (the paper's spaces A and B, or extended)")
        self.nodes = ComboBox(label="nodes", choices=[2, 3, 4], value=d.nodes,
                              tooltip="intermediate nodes of the cell (node i reads all earlier ones)")
        self.method = ComboBox(label="method", choices=list(SEARCH_METHODS), value=d.method,
                               tooltip="darts (the paper's), pc-darts (partial channels), drnas "
                                       "(Dirichlet), beta-darts (beta-decay regulariser)")
        self.warmup = SpinBox(label="warm-up epochs", min=0, max=10_000, value=d.warmup_epochs,
                              tooltip="epochs that train only the weights before the alphas move")
        self.select = ComboBox(label="cell selection", choices=list(SELECTIONS), value=d.select,
                               tooltip="argmax of the weights (DARTS) or perturb (per edge, the "
                                       "operation whose removal costs most validation loss)")
        self.signal = Label(label="signal", value="-")
        self.signal.tooltip = ("how decided the chosen edges are: margin = best minus second operation "
                               "weight (per edge); a cell whose edges all lead by less than the "
                               "threshold carries no signal")
        self.signal.native.setWordWrap(True)
        self.channels = SpinBox(label="channels", min=1, max=512, value=d.channels,
                                tooltip="supernet feature channels (the retrained network may be wider)")
        self.cells = SpinBox(label="cells", min=1, max=16, value=d.cells, tooltip="supernet cells per module")
        self.genotypes = Select(label="known genotypes", choices=_genotype_choices,
                                tooltip=f"shipped, hand-made and searched genotypes (list: {genotypes_file()})")
        self.genotypes.native.setMaximumHeight(90)
        genotype_events.changed.connect(self.genotypes.reset_choices)
        self._finish_layout([self.data, self.space, self.nodes, self.method, self.select, self.preset,
                             self.epochs, self.warmup, self.steps_per_epoch, self.crop, self.channels,
                             self.cells, self.device, self.seed, self.out, self._buttons, self.progress,
                             self.status, self.signal, self.genotypes])

    def _leave_registry(self) -> None:
        genotype_events.changed.disconnect(self.genotypes.reset_choices)

    def _show_settings(self, config, preset_only: bool = False) -> None:
        super()._show_settings(config, preset_only)
        self.channels.value = config.channels
        self.cells.value = config.cells
        self.warmup.value = config.warmup_epochs
        if not preset_only:
            self.space.value = config.space
            self.nodes.value = config.nodes
            self.method.value = config.method
            self.select.value = config.select

    def _own_fields(self) -> dict:
        return {"space": self.space.value, "nodes": self.nodes.value, "method": self.method.value,
                "select": self.select.value}

    def _own_overrides(self) -> dict:
        return {"channels": self.channels.value, "cells": self.cells.value,
                "warmup_epochs": self.warmup.value}

    def _refresh(self) -> None:
        super()._refresh()
        self.signal.value = signal_text(self.trace)

    def argv(self, config, out, resume: bool = False) -> list[str]:
        return job_argv("search", config, out, resume)

    def default_run_dir(self) -> Path:
        return DEFAULT_RUNS_DIR / (f"search-{self.space.value}{self.nodes.value}-{self.preset.value}-"
                                   f"{time.strftime('%Y%m%d-%H%M%S')}")

    def _on_done(self) -> None:
        summary = self.trace.summary
        if summary.get("no_signal"):
            _notify("warning", f"napari-nascsmri: the search in {self.run_dir} found no signal: "
                               f"{summary.get('no_signal_reason') or 'the chosen edges are undecided'}")
        path = self.run_dir / GENOTYPE
        if path.is_file():
            try:
                entry = remember_genotype(path)
            except Exception as err:  # noqa: BLE001 - a broken file becomes a notification
                _notify("error", f"napari-nascsmri: {err}")
            else:
                self.genotypes.value = [entry.path]
        super()._on_done()

    def _progress_note(self) -> str:
        history = self.trace.history
        return f"; genotype stable for {history[-1].get('stable_epochs', 0)} epoch(s)" if history else ""

    def _done_text(self) -> str:
        return f"search: done ({self.trace.message}); genotype in {self.run_dir / GENOTYPE}"


def signal_text(trace) -> str:
    """The last epoch's edge diagnostics (``edge_margin``/``chosen_margin``/``edge_entropy``,
    ``no_signal``/``no_signal_reason``) in words; "-" before the first epoch."""
    history = trace.history
    last = dict(history[-1]) if history else {}
    last.update({k: trace.summary[k] for k in ("no_signal", "no_signal_reason") if k in trace.summary})
    chosen = last.get("chosen_margin") or []
    entropy = last.get("edge_entropy") or []
    if not chosen and "no_signal" not in last:
        return "-"
    parts = []
    if chosen:
        parts.append(f"chosen edges lead by {min(chosen):.3f}-{max(chosen):.3f}")
    if entropy and last.get("uniform_entropy"):
        parts.append(f"entropy {sum(entropy) / len(entropy):.2f} of {last['uniform_entropy']:.2f} (uniform)")
    if last.get("warmup"):
        parts.append("warm-up: alphas frozen")
    text = "; ".join(parts) or "-"
    if last.get("no_signal"):
        text = f"<b style='color:#ff9a3c'>no signal</b>: {last.get('no_signal_reason') or ''}" + (
            f" ({text})" if parts else "")
    return text


class TrainWidget(JobWidget):
    """Launch and follow a training (``nascsmri train``); hand the best weights to reconstruction.

    Extra sub-widgets: ``model``, ``genotype`` (known genotypes, for nasn), ``blocks`` (dccnn,
    modl, rdn), ``use_button``. ``weights_ready(model, path)`` fires when a training finishes.
    """

    KIND = "train"
    weights_ready = Signal(str, str)

    def __init__(self, viewer: napari.viewer.Viewer):
        from backend.config import TRAIN_PRESETS, TrainConfig, network_model_names
        from backend.models.registry import DEFAULT_BLOCKS

        super().__init__(viewer, TrainConfig, TRAIN_PRESETS)
        self._default_blocks = DEFAULT_BLOCKS
        d = TrainConfig()
        self.model = ComboBox(label="model", choices=list(network_model_names()), value=d.model,
                              tooltip="the network to train (nasn: a cell from a genotype)")
        self.genotype = ComboBox(label="genotype", choices=_genotype_choices,
                                 tooltip="NasN cell: shipped, hand-made or found by a search")
        self.blocks = SpinBox(label="blocks", min=1, max=64, value=3,
                              tooltip="residual blocks (dccnn, modl) or recursions (rdn) per module")
        self.use_button = PushButton(text="Use in reconstruction widget", enabled=False,
                                     tooltip="select this run's best.safetensors in the reconstruction widget")
        self.model.changed.connect(self._on_model_changed)
        self.use_button.changed.connect(self.use_weights)
        genotype_events.changed.connect(self.genotype.reset_choices)
        self._finish_layout([self.data, self.model, self.genotype, self.blocks, self.preset, self.epochs,
                             self.steps_per_epoch, self.crop, self.device, self.seed, self.out,
                             self._buttons, self.progress, self.status, self.use_button])
        self._on_model_changed()

    def _leave_registry(self) -> None:
        genotype_events.changed.disconnect(self.genotype.reset_choices)

    def _on_model_changed(self, *_) -> None:
        model = self.model.value
        self.genotype.enabled = model == "nasn"
        self.blocks.enabled = model in self._default_blocks
        if model in self._default_blocks:
            self.blocks.value = self._default_blocks[model]

    def _show_settings(self, config, preset_only: bool = False) -> None:
        super()._show_settings(config, preset_only)
        if preset_only:
            return
        self.model.value = config.model
        if config.blocks:
            self.blocks.value = config.blocks
        if config.genotype:
            path = str(Path(config.genotype).resolve())
            if path not in [g.path for g in known_genotypes()]:
                path = remember_genotype(path).path
            self.genotype.reset_choices()
            self.genotype.value = path

    def _own_fields(self) -> dict:
        model = self.model.value
        genotype = ensure_genotype_file(self.genotype.value) if model == "nasn" and self.genotype.value else None
        return {"model": model, "genotype": genotype,
                "blocks": self.blocks.value if model in self._default_blocks else None}

    def argv(self, config, out, resume: bool = False) -> list[str]:
        return job_argv("train", config, out, resume)

    def default_run_dir(self) -> Path:
        return DEFAULT_RUNS_DIR / f"train-{self.model.value}-{self.preset.value}-{time.strftime('%Y%m%d-%H%M%S')}"

    @property
    def best_weights(self) -> Path | None:
        """``RUN/best.safetensors`` of the followed run, when it exists."""
        if self.run_dir is None:
            return None
        path = self.run_dir / BEST_WEIGHTS
        return path if path.is_file() else None

    def _on_done(self) -> None:
        if self.best_weights is not None:
            self.weights_ready.emit(self._run_model(), str(self.best_weights))
        super()._on_done()

    def _run_model(self) -> str:
        return self._run_settings.get("model") or self.model.value

    def _done_text(self) -> str:
        best = self.trace.summary.get("best") or {}
        text = "train: done"
        if best.get("psnr") is not None:
            text += f", best epoch {best['epoch'] + 1}: val PSNR {best['psnr']:.2f} dB"
        return text + f"; weights in {self.run_dir / BEST_WEIGHTS}"

    def _update_buttons(self) -> None:
        super()._update_buttons()
        self.use_button.enabled = self.best_weights is not None

    def use_weights(self, *_) -> Any:
        """Select this run's best weights (and model) in the docked reconstruction widget."""
        weights = self.best_weights
        if weights is None:
            _notify("warning", "napari-nascsmri: no best.safetensors in the run folder yet")
            return None
        widget = use_in_reconstruction(self.viewer, self._run_model(), weights)
        if widget is not None:
            self.status.value = f"{self._run_model()} with {weights} selected in the reconstruction widget"
        return widget
