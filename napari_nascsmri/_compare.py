"""Focused compare and metrics export for the reconstruction widget.

:class:`ComparePanel` is a magicgui Container docked inside the
:class:`~napari_nascsmri._widget.ReconstructionWidget` (its ``compare`` attribute):

* ``view``: *grid* (everything side by side, the default), *compare* (the reference and one
  method, large, side by side) or *flicker* (the two in one view; *Flip* or the ``F`` key
  swaps them, so small differences jump out);
* ``against``: the method compared with the reference (zero-filled or any reconstruction);
* ``metrics_path`` + *Export metrics*: the metrics table (per slice and per volume, every
  method) as CSV or JSON through :func:`backend.viewer.write_metrics`;
* *Per-slice metrics plot*: :class:`MetricsPlot` (PSNR and SSIM against slice), docked below.

It only changes layer visibility and the grid; the layers stay the widget's.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit, PushButton
from qtpy.QtWidgets import QWidget

if TYPE_CHECKING:
    from ._widget import ReconstructionWidget

GRID, COMPARE, FLICKER = "grid", "compare", "flicker"


class ComparePanel(Container):
    """View mode, the compared method, flip, metrics export (see the module docstring)."""

    def __init__(self, owner: ReconstructionWidget):
        super().__init__(labels=True)
        self.owner = owner
        self.showing_reference = False  # flicker: which of the two is on display
        self.view = ComboBox(label="view", choices=[GRID, COMPARE, FLICKER], value=GRID,
                             tooltip="grid: everything side by side; compare: the reference and one "
                                     "method, large; flicker: the two in one view, Flip (F) swaps them")
        self.against = ComboBox(label="compare with", choices=self._methods,
                                tooltip="the method shown next to the reference in compare / flicker")
        self.flip_button = PushButton(text="Flip (F)", enabled=False,
                                      tooltip="flicker: show the reference / the method (key F)")
        self.metrics_path = FileEdit(label="metrics file", mode="w", filter="*.csv *.json",
                                     tooltip="where Export metrics writes the table (.csv or .json)")
        self.export_button = PushButton(text="Export metrics", label="",
                                        tooltip="per-slice and per-volume PSNR / SSIM / NMSE of every "
                                                "method, as CSV or JSON")
        self.plot_button = PushButton(text="Per-slice metrics plot", label="",
                                      tooltip="PSNR and SSIM against slice for every method (a docked plot)")
        self.profile_button = PushButton(text="Line profile", label="",
                                         tooltip="values along one row / column of the current slice for "
                                                 "the reference and every method (a docked plot)")
        self.extend([self.view, self.against, self.flip_button, self.metrics_path, self.export_button,
                     self.plot_button, self.profile_button])
        self.plot = None  # the MetricsPlot, docked on first use
        self.profile = None  # the ProfilePlot, docked on first use
        self.plot_button.changed.connect(lambda *_: self.show_plot())
        self.profile_button.changed.connect(lambda *_: self.show_profile())
        self.view.changed.connect(self._on_view_changed)
        self.against.changed.connect(lambda *_: self.apply())
        self.flip_button.changed.connect(self.flip)
        self.export_button.changed.connect(self._on_export_clicked)
        try:
            owner.viewer.bind_key("f", lambda viewer: self.flip(), overwrite=True)
        except Exception:  # noqa: BLE001 - a key binding is a convenience
            pass

    def next_method(self) -> str | None:
        """Compare with the next method of the list (wraps around); returns it."""
        self.against.reset_choices()
        choices = list(self.against.choices)
        if not choices:
            return None
        current = self.against.value
        self.against.value = choices[(choices.index(current) + 1) % len(choices) if current in choices else 0]
        return self.against.value

    # ------------------------------------------------------------------------------------------
    def _methods(self, widget=None) -> list[str]:
        from ._shared import ZERO_FILLED

        owner = self.owner
        if owner.volume is None:
            return [ZERO_FILLED]
        return [m for m in [ZERO_FILLED] + list(owner._models) if owner._name(m) in owner.viewer.layers] \
            or [ZERO_FILLED]

    def pair(self) -> tuple:
        """``(reference layer, method layer)`` of the comparison (either may be None)."""
        owner = self.owner
        source = owner._source_layer
        ref = source if owner.reference is not None and source in owner.viewer.layers else None
        method = self.against.value
        layer = owner.viewer.layers[owner._name(method)] if method and owner.volume is not None \
            and owner._name(method) in owner.viewer.layers else None
        return ref, layer

    def _on_view_changed(self, *_) -> None:
        self.showing_reference = False
        if self.view.value == GRID:
            for layer in self._own_layers():
                layer.visible = True
            self.owner._arrange()
        self.apply()

    def _own_layers(self) -> list:
        owner = self.owner
        if owner.volume is None:
            return []
        suffix = owner._name("")[1:]
        layers = [layer for layer in owner.viewer.layers
                  if "nascsmri_role" in layer.metadata and layer.name.endswith(suffix)]
        if owner._source_layer in owner.viewer.layers and owner.reference is not None:
            layers.append(owner._source_layer)
        return layers

    def apply(self) -> None:
        """Show the chosen view (the widget calls this after every re-arrangement)."""
        from ._layers import grid_of

        self.against.reset_choices()
        mode = self.view.value
        self.flip_button.enabled = mode == FLICKER
        if mode == GRID:
            return
        ref, method = self.pair()
        shown = [layer for layer in (ref, method) if layer is not None]
        for layer in self._own_layers():
            layer.visible = layer in shown
        grid = grid_of(self.owner.viewer)
        if mode == COMPARE:
            if tuple(grid.shape) != (1, 2):
                grid.shape = (1, 2)
            grid.enabled = True
        else:
            grid.enabled = False
            if ref is not None and method is not None:
                method.visible = not self.showing_reference
        self.owner.viewer.reset_view()

    def flip(self, *_) -> None:
        """Flicker: swap the reference and the method."""
        if self.view.value != FLICKER:
            return
        ref, method = self.pair()
        if ref is None or method is None:
            return
        self.showing_reference = not self.showing_reference
        method.visible = not self.showing_reference
        self.owner.status.value = f"showing {'the reference' if self.showing_reference else method.name}"

    # ------------------------------------------------------------------------------------------
    def show_plot(self):
        """Dock (once) and redraw the per-slice metrics plot; returns the MetricsPlot."""
        if self.plot is None:
            self.plot = MetricsPlot()
            self.owner.viewer.window.add_dock_widget(self.plot, name="Per-slice metrics", area="bottom")
        self.plot.draw(self.owner.metrics, self.owner.current_slice)
        return self.plot

    def show_profile(self):
        """Dock (once) and update the line profile; returns the ProfilePlot."""
        if self.profile is None:
            from ._profile import ProfilePlot

            self.profile = ProfilePlot(self.owner)
            self.owner.viewer.window.add_dock_widget(self.profile, name="Line profile", area="bottom")
        self.profile.update_profile()
        return self.profile

    def export_metrics(self, path) -> str | None:
        """Write the metrics table to ``path`` (.csv / .json); errors become notifications."""
        from backend.viewer import metrics_records, write_metrics

        from ._shared import _notify, export_file

        owner = self.owner
        if not owner.metrics:
            _notify("warning", "napari-nascsmri: no metrics yet (they need a reference and a reconstruction)")
            return None
        source = os.path.basename(owner.volume.info.path) if owner.volume is not None else None
        return export_file(lambda p: write_metrics(p, metrics_records(owner.metrics, source)), path, owner.status,
                           "metrics")

    def _on_export_clicked(self, *_) -> None:
        from ._shared import chosen_path

        path = chosen_path(self.metrics_path.value, "a metrics file (.csv or .json)")
        if path is not None:
            self.export_metrics(path)


class MetricsPlot(QWidget):
    """PSNR and SSIM against slice index, one line per method; the current slice marked.

    Painted with QPainter (:mod:`napari_nascsmri._charts`) on request (a button).
    ``drawn``: ``{method: number of slices plotted}``; ``charts``: the two charts painted.
    """

    def __init__(self):
        from qtpy.QtCore import QSize
        from qtpy.QtWidgets import QSizePolicy, QVBoxLayout

        super().__init__()
        owner = self

        class _Canvas(QWidget):
            def sizeHint(self):  # noqa: N802 - constant: the layout never grows it
                return QSize(700, 260)

            def paintEvent(self, event):  # noqa: N802 - Qt override
                owner._paint(self)

        self.canvas = _Canvas()
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setFixedHeight(260)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.drawn: dict[str, int] = {}
        self.charts: list = []

    def draw(self, metrics: dict, current: int | None = None) -> None:
        from ._charts import LineChart, Series, cycle_colour

        self.drawn = {}
        self.charts = []
        for key, title in (("psnr", "PSNR (dB) per slice"), ("ssim", "SSIM per slice")):
            chart = LineChart(title, xlabel="slice", vlines=[] if current is None else [float(current)])
            for k, (method, entry) in enumerate(metrics.items()):
                points = [(i, v[key]) for i, v in enumerate(entry.get("slices") or []) if v]
                if points:
                    x, y = zip(*points)
                    chart.series.append(Series(x, y, cycle_colour(k), style="dots", width=1.2, marker=3.0,
                                               label=method))
                    self.drawn[method] = len(points)
            self.charts.append(chart)
        self.canvas.update()

    def _paint(self, canvas) -> None:
        from qtpy.QtCore import QRectF
        from qtpy.QtGui import QColor, QPainter

        from ._charts import BACKGROUND, paint_lines

        painter = QPainter(canvas)
        try:
            rect = QRectF(canvas.rect())
            painter.fillRect(rect, QColor(BACKGROUND))
            n = max(len(self.charts), 1)
            width = rect.width() / n
            for k, chart in enumerate(self.charts):
                paint_lines(painter, QRectF(rect.left() + k * width, rect.top(), width - 4, rect.height()), chart)
        finally:
            painter.end()

