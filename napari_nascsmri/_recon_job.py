"""The reconstruction job and the reconstruction widget's handling of it.

:func:`reconstruction_job` is the worker generator (current slice first as a
:class:`SlicePreview`, then the whole volume through :func:`backend.recon.reconstruct_volume`,
returning a :class:`JobResult`). :class:`JobMixin` is the part of
:class:`~napari_nascsmri._widget.ReconstructionWidget` that starts it (in a napari
``thread_worker``, or in the calling thread with ``run_sync``), shows its progress, previews
and results, cancels it, and keeps the weights widgets in step with the chosen method.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any, NamedTuple

import numpy as np

from ._layers import find_layer, set_slice, upsert_image
from ._shared import FROM_FILE, SHIPPED, ZERO_FILLED, _notify

#: Seconds between two progress-bar repaints while a job runs.
PROGRESS_S = 1.0


class SlicePreview(NamedTuple):
    """Yielded by :func:`reconstruction_job` once the current slice is reconstructed."""

    index: int
    image: np.ndarray  # float32 (h, w) magnitude on the output grid
    metrics: dict | None


class JobResult(NamedTuple):
    """Returned by :func:`reconstruction_job` for a whole volume."""

    result: Any  # backend.recon.VolumeResult
    slice_metrics: dict | None  # method -> one {"psnr", "ssim", "nmse"} per slice (volume range)
    data_range: float | None
    errors: dict | None = None  # method -> |error| volume in % of the reference max


def slice_metrics(reference: np.ndarray, image: np.ndarray, data_range: float) -> dict[str, float]:
    """PSNR/SSIM/NMSE of one slice, with the *volume* data range (:func:`backend.viewer.slice_metrics`)."""
    from backend.viewer import slice_metrics as metrics

    return metrics(reference, image, data_range)


def reconstruction_job(path, config, lines, index, whole, reference, data_range):
    """Worker generator: current slice first (:class:`SlicePreview`), then the whole volume.

    Yields :class:`backend.recon.Progress` events and one :class:`SlicePreview`; returns a
    :class:`JobResult` (``whole``) or None (current slice only). ``lines`` is the bool ``(W,)``
    mask shown in the widget; for the whole volume ``config`` reproduces it (drawn mask, or
    ``config.mask_lines`` for an edited one).
    """
    from backend.io import open_volume
    from backend.recon import make_reconstructor, reconstruct_volume
    from backend.progress import Progress
    from backend.recon_coils import reconstruct_slice
    from backend.viewer import error_percent, per_slice_metrics

    yield Progress(0, 1, f"{config.model}: loading")
    recon = make_reconstructor(config)
    volume = open_volume(path, crop=config.crop)
    try:
        image = np.abs(reconstruct_slice(volume, index, config, lines, recon)).astype(np.float32)
        metrics = None
        if reference is not None and data_range:
            metrics = slice_metrics(reference[index], image, data_range)
        yield SlicePreview(index, image, metrics)
        if not whole:
            return None
        result = yield from reconstruct_volume(volume, config, recon)
    finally:
        volume.close()
    per_slice = errors = None
    if result.reference is not None and data_range:
        yield Progress(len(result.reference), len(result.reference), f"{config.model}: metrics")
        outputs = ((config.model, result.reconstruction), (ZERO_FILLED, result.zero_filled))
        per_slice = {name: per_slice_metrics(result.reference, images, data_range) for name, images in outputs}
        errors = {name: error_percent(images, result.reference, data_range) for name, images in outputs}
    return JobResult(result, per_slice, data_range, errors)


class JobMixin:
    """Reconstruction jobs of :class:`~napari_nascsmri._widget.ReconstructionWidget`: weights
    widgets, start / cancel, and the worker's yielded / returned / errored / aborted handlers."""

    # ===================================================================== weights ============
    def _update_weight_widgets(self, *_) -> None:
        from backend.models import shipped_weights

        model = self.method.value
        is_net = model in self._networks
        shipped_ok = is_net and shipped_weights(model).exists()
        item = self.weights.native.model().item(0)
        if item is not None:
            item.setEnabled(shipped_ok or not is_net)
            item.setToolTip("" if shipped_ok else f"no weights ship for {model!r} yet: choose a "
                            "weights file (see 'nascsmri train')")
        if is_net and not shipped_ok and self.weights.value == SHIPPED:
            self.weights.value = FROM_FILE
        self.weights.enabled = is_net
        self.weights_file.enabled = is_net and self.weights.value == FROM_FILE

    # ===================================================================== jobs ===============
    @property
    def running(self) -> bool:
        return self._job_method is not None

    def reconstruct(self, whole_volume: bool = True):
        """Run the selected method: current slice first, then (``whole_volume``) every slice.

        Returns the worker (None when run synchronously or refused).
        """
        from backend.errors import InputError

        if self.volume is None:
            _notify("warning", "napari-nascsmri: choose a source layer first")
            return None
        if self.running:
            _notify("warning", "napari-nascsmri: a reconstruction is already running")
            return None
        config = self.config()
        if config.model in self._networks and self.weights.value == FROM_FILE and not (
            self.weights_file.value and os.path.isfile(os.fspath(self.weights_file.value))
        ):
            _notify("error", f"napari-nascsmri: {InputError(self.weights_file.value, 'choose a weights file')}")
            return None
        if self.editor.edited:  # the edited mask (columns or a 2-D pattern) travels in the config
            from backend.mask_files import strict_mask_values

            config.mask_lines = strict_mask_values(self.editor.sampling)
        self._job_method = config.model
        self._job_config = config
        self._job_lines = self.editor.sampling.copy()
        kwargs = dict(path=self.volume.info.path, config=config, lines=self._job_lines,
                      index=self.current_slice, whole=whole_volume, reference=self.reference,
                      data_range=self.data_range)
        self._on_started()
        if self.run_sync:
            self._run_here(reconstruction_job(**kwargs))
            return None
        from napari.qt.threading import create_worker

        worker = create_worker(reconstruction_job, _start_thread=False, _ignore_errors=True, **kwargs)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        return worker

    def _run_here(self, gen) -> None:
        """Synchronous driver with the worker's semantics (yielded/returned/errored/aborted)."""
        try:
            while True:
                if self._cancel_requested:
                    gen.close()
                    self._on_aborted()
                    break
                try:
                    event = next(gen)
                except StopIteration as stop:
                    self._on_returned(stop.value)
                    break
                self._on_yielded(event)
        except Exception as err:  # noqa: BLE001 - shown to the user like the worker's errored
            self._on_errored(err)
        finally:
            self._on_finished()

    def cancel(self, *_) -> None:
        """Stop the running job after its current slice; results so far are discarded."""
        if not self.running:
            return
        self._cancel_requested = True
        if self.worker is not None:
            self.worker.quit()
        self.status.value = "cancelling..."

    def _on_started(self) -> None:
        self._cancel_requested = False
        self.run_button.enabled = self.slice_button.enabled = self.source.enabled = False
        self.cancel_button.enabled = True
        self.progress.max, self.progress.value = 1, 0
        self.status.value = f"{self._job_method}: running"

    def _on_yielded(self, event) -> None:
        if isinstance(event, SlicePreview):
            self._show_preview(event)
            return
        total = max(int(event.total), 1)
        done = min(int(event.done), total)
        now = time.perf_counter()
        # QProgressBar repaints at once, and with it napari's GL canvas when that has a pending
        # redraw (0.1-0.5 s with software OpenGL): at most a few progress repaints a second
        if done in (0, total) or self.progress.max != total or now - self._progress_time > PROGRESS_S:
            self._progress_time = now
            self.progress.max = total
            self.progress.value = done
        self.status.value = event.message

    def _show_preview(self, preview: SlicePreview) -> None:
        with self._batch():
            self._show_preview_unbatched(preview)

    def _show_preview_unbatched(self, preview: SlicePreview) -> None:
        method = self._job_method
        i = preview.index
        if method == ZERO_FILLED:
            return  # the live zero-filled view already shows this slice
        self._ensure_method(method)
        name = self._name(method)
        layer = find_layer(self.viewer, name)
        shape = (len(self.volume),) + tuple(self.volume.info.output_shape)
        if layer is None or tuple(layer.data.shape) != shape:
            data = np.zeros(shape, dtype=np.float32)
            data[i] = preview.image
            upsert_image(self.viewer, name, data, contrast_limits=self._display_limits(),
                         metadata={"nascsmri_role": "reconstruction", "nascsmri_method": method})
            self._arrange()
        else:
            set_slice(layer, i, preview.image)
        if self.reference is not None:
            self._set_error_slice(method, i, preview.image)
        entry = self.metrics.setdefault(method, {"slices": [None] * len(self.volume), "volume": None})
        entry["slices"] = [None] * len(self.volume)
        entry["volume"] = None
        entry["slices"][i] = preview.metrics
        self._stale.discard(method)
        self._render_table()

    def _ensure_method(self, method: str) -> None:
        if method != ZERO_FILLED and method not in self._models:
            self._models.append(method)

    def _on_returned(self, value) -> None:
        with self._batch():
            self._on_returned_unbatched(value)

    def _on_returned_unbatched(self, value) -> None:
        if value is None:
            self.progress.value = self.progress.max
            self.status.value = f"{self._job_method}: current slice done"
            return
        result, per_slice, data_range, errors = value
        method = result.model
        if not np.array_equal(result.mask.sampling, self._job_lines):
            _notify("warning", "napari-nascsmri: the volume was reconstructed with a different mask")
        self.last_result = result
        self._ensure_method(method)
        config = asdict(self._job_config)
        config["mask_lines"] = None  # the lines are in nascsmri_mask_lines
        common = {
            "nascsmri_config": config,
            "nascsmri_mask_lines": result.mask.lines.astype(np.uint8).tolist(),
            "nascsmri_realised_acceleration": float(result.mask.realised_acceleration),
            "nascsmri_mask_edited": self._job_config.mask_lines is not None,
            "nascsmri_seed": None if result.seed is None else list(np.atleast_1d(result.seed).tolist()),
        }
        slices = per_slice or {}
        # the mask may have been edited while the job ran: keep the live zero-filled view then
        mask_moved_on = not np.array_equal(self.editor.sampling, self._job_lines)
        outputs = {} if mask_moved_on else {ZERO_FILLED: (result.zero_filled, result.zero_filled_metrics)}
        if method != ZERO_FILLED:
            outputs[method] = (result.reconstruction, result.metrics)
        for name, (data, volume_metrics) in outputs.items():
            meta = dict(common, nascsmri_role="reconstruction", nascsmri_method=name)
            if volume_metrics is not None:
                meta["nascsmri_metrics"] = {"volume": volume_metrics.as_dict(), "slices": slices.get(name),
                                            "data_range": data_range}
                self.metrics[name] = {"slices": slices.get(name), "volume": volume_metrics.as_dict()}
            upsert_image(self.viewer, self._name(name), data.astype(np.float32),
                         contrast_limits=self._display_limits(), metadata=meta)
            if errors and name in errors:
                layer = self._add_error_layer(name, errors[name])
                layer.metadata.update(common)
            self._stale.discard(name)
        if mask_moved_on:
            self._stale.add(method)
        else:
            self._zf_fresh = set(range(len(self.volume)))
        self._arrange()
        self._render_table()
        text = f"{method}: done, realised {result.mask.realised_acceleration:.2f}x"
        if result.metrics is not None:
            text += f", PSNR {result.metrics.psnr:.2f} dB"
        self.status.value = text
        for notice in result.notices:
            if notice not in self.volume.info.notices:
                _notify("info", f"napari-nascsmri: {notice}")

    def _on_errored(self, err: BaseException) -> None:
        from backend.errors import InputError

        text = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
        _notify("error", f"napari-nascsmri: {self._job_method}: {text}")
        self.status.value = f"{self._job_method}: failed"

    def _on_aborted(self) -> None:
        self.status.value = f"{self._job_method}: cancelled"
        self.progress.value = 0

    def _on_finished(self) -> None:
        self._job_method = None
        self.worker = None
        self.run_button.enabled = self.slice_button.enabled = self.source.enabled = True
        self.cancel_button.enabled = False
