"""A line profile across the reference and every reconstruction of the current slice.

:class:`ProfilePlot` is docked by the compare panel's *Line profile* button. It shows the values
along one row (or column) of the current slice for the reference and each method's layer
(:func:`backend.viewer.line_profile`), painted with QPainter (:mod:`napari_nascsmri._charts`),
and follows the slice slider; the row (or column) is set with its spin box.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, SpinBox
from qtpy.QtCore import QRectF, QSize
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ._charts import BACKGROUND, FOREGROUND, LineChart, Series, cycle_colour, paint_lines

if TYPE_CHECKING:
    from ._widget import ReconstructionWidget


class _Canvas(QWidget):
    def __init__(self, owner: "ProfilePlot"):
        super().__init__()
        self._owner = owner
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(240)

    def sizeHint(self):  # noqa: N802 - Qt override
        return QSize(700, 240)

    def paintEvent(self, event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        try:
            rect = QRectF(self.rect())
            painter.fillRect(rect, QColor(BACKGROUND))
            if self._owner.chart is not None:
                paint_lines(painter, rect, self._owner.chart)
        finally:
            painter.end()


class ProfilePlot(QWidget):
    """Values along a row / column of the current slice, one line per image.

    ``profiles``: ``{name: values}`` last shown; ``chart``: the LineChart painted.
    """

    def __init__(self, owner: "ReconstructionWidget"):
        super().__init__()
        self.owner = owner
        self.axis = ComboBox(label="along", choices=["row", "column"], value="row",
                             tooltip="a horizontal line (row) or a vertical one (column) of the slice")
        self.index = SpinBox(label="index", min=0, max=4095, value=0,
                             tooltip="which row / column of the slice (0 = top / left)")
        self.controls = Container(widgets=[self.axis, self.index], layout="horizontal", labels=True)
        self.canvas = _Canvas(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.controls.native)
        layout.addWidget(self.canvas)
        self.chart: LineChart | None = None
        self.profiles: dict[str, np.ndarray] = {}
        self.axis.changed.connect(lambda *_: self.update_profile())
        self.index.changed.connect(lambda *_: self.update_profile())
        viewer = owner.viewer
        viewer.dims.events.current_step.connect(self._on_slice)
        self.destroyed.connect(lambda *_: self._disconnect())
        shape = self._shape()
        if shape is not None:
            self.index.value = shape[0] // 2

    def _disconnect(self) -> None:
        viewer = self.owner.viewer
        try:
            viewer.dims.events.current_step.disconnect(self._on_slice)
        except (ValueError, RuntimeError, TypeError):
            pass

    def _images(self) -> dict[str, np.ndarray]:
        """The current slice of the reference and of every method's layer."""
        from ._layers import find_layer
        from ._shared import ZERO_FILLED

        owner, i = self.owner, self.owner.current_slice
        images = {}
        if owner.reference is not None:
            images["reference"] = owner.reference[i]
        for method in [ZERO_FILLED] + list(owner._models):
            layer = find_layer(owner.viewer, owner._name(method))
            if layer is not None and np.ndim(layer.data) == 3 and i < layer.data.shape[0]:
                images[method] = np.asarray(layer.data[i])
        return images

    def _shape(self) -> tuple[int, int] | None:
        images = self._images()
        return next(iter(images.values())).shape if images else None

    def update_profile(self) -> dict[str, np.ndarray]:
        from backend.viewer import line_profile

        images = self._images()
        axis = self.axis.value
        if not images:
            self.profiles, self.chart = {}, None
            self.canvas.update()
            return {}
        shape = next(iter(images.values())).shape
        size = shape[0] if axis == "row" else shape[1]
        index = min(self.index.value, size - 1)
        self.profiles = line_profile(images, index, axis)
        chart = LineChart(f"{axis} {index} of slice {self.owner.current_slice}",
                          xlabel="column" if axis == "row" else "row")
        for k, (name, values) in enumerate(self.profiles.items()):
            reference = name == "reference"
            chart.series.append(Series(np.arange(values.size), values, FOREGROUND if reference else cycle_colour(k),
                                       width=1.6 if reference else 1.1, label=name))
        self.chart = chart
        self.canvas.update()
        return self.profiles

    def _on_slice(self, *_) -> None:
        self.update_profile()
