"""The shared base of the Search and Train widgets: settings, layout and the job's controls.

Both widgets are magicgui :class:`~magicgui.widgets.Container` subclasses whose sub-widgets are
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

Launching and following live in :class:`~napari_nascsmri._job_run.JobRunMixin`; this module
holds the construction, the layout and the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from psygnal import Signal

from backend.runfiles import EventFollower, RunTrace

from ._job_process import JobProcess
from ._job_run import JobRunMixin, _path_value

if TYPE_CHECKING:
    import napari

#: Milliseconds between two reads of ``RUN/events.jsonl``.
POLL_MS = 500
#: Where new runs go when no run folder is chosen.
DEFAULT_RUNS_DIR = Path.home() / "nascsmri-runs"


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


def _set_optional(spin: SpinBox, value: int | None, none_text: str, low: int) -> None:
    """Show an optional count: None as 0 with ``none_text``, else ``value`` (minimum ``low``).

    0 is offered only when the preset's value is None: the CLI has no flag for "None", so an
    omitted flag means the preset's value.
    """
    spin.native.setSpecialValueText(none_text if value is None else "")
    spin.min = 0 if value is None else low
    spin.value = 0 if value is None else value


class JobWidget(JobRunMixin, Container):
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
        self.coils = SpinBox(label="coils", min=0, max=64, value=d.coils,
                             tooltip="0: single-coil; N >= 2: every sample seen by N simulated coils, "
                                     "with the SENSE data consistency (--coils N)")
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
        widgets = [w for w in widgets if w is not self.coils]
        widgets.insert(widgets.index(self.device), self.coils)  # the shared fields in one place
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
        self.coils.value = config.coils

    def config(self):
        """The job's configuration: the preset, then the values shown in the widget."""
        from backend.config import apply_preset

        data = _path_value(self.data)
        base = self._config_cls(data=str(data.resolve()) if data else self._config_cls().data,
                                preset=self.preset.value, seed=self.seed.value,
                                device=self.device.value, coils=self.coils.value,
                                **self._own_fields())
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
