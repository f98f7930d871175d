"""Launching and following a Search or Train job: the run half of the job widgets' base.

:class:`JobRunMixin` is the part of :class:`~napari_nascsmri._job_widget.JobWidget` that
starts, resumes, stops and attaches to a run folder, and follows it: a QTimer calls
:meth:`JobRunMixin.poll`, which reads new ``RUN/events.jsonl`` events
(:class:`backend.runfiles.EventFollower`) into a :class:`backend.runfiles.RunTrace`, checks
the :class:`~napari_nascsmri._job_process.JobProcess`, and renders progress, time left and the
live plots.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from magicgui.widgets import FileEdit

from backend.runfiles import (
    CHECKPOINT,
    EVENTS,
    JOB_LOG,
    EventFollower,
    RunTrace,
    config_from_run,
    run_config,
    run_kind,
)

from ._job_process import JobProcess, format_seconds
from ._shared import _notify

#: An attached run that wrote an event less than this many seconds ago counts as alive
#: (Resume refuses: two processes must not write one run folder).
ATTACHED_ALIVE_S = 120.0


def _path_value(widget: FileEdit) -> Path | None:
    value = widget.value
    if value is None or os.fspath(value) in ("", "."):
        return None
    return Path(value).expanduser()


class JobRunMixin:
    """Start / Resume / Stop / Attach and the event-following loop of
    :class:`~napari_nascsmri._job_widget.JobWidget`."""

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
