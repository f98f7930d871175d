"""Small charts painted with QPainter on the GUI thread: line charts and a heat map.

The plugin's live plots (:mod:`napari_nascsmri._plots`) and per-slice metrics plot
(:mod:`napari_nascsmri._compare`) are painted here, in the widget's ``paintEvent``: a chart of a
few thousand points costs a few milliseconds, so nothing is drawn off the GUI thread and no
plotting library's global state is shared between threads (matplotlib drawn on a worker thread
beside the Qt event loop crashed the interpreter in CI).

Everything is plain data in, pixels out: :class:`Series` and :func:`paint_lines`,
:func:`paint_heatmap`; :func:`nice_ticks` picks the tick values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen, QPolygonF

# napari's dark theme
BACKGROUND, FOREGROUND, GRID = "#262930", "#d6d6d6", "#414851"
#: Font sizes (pt) of titles and of tick / legend labels.
TITLE_PT, LABEL_PT = 9, 8
#: matplotlib's "tab10" colours, by name.
COLOURS = {"tab:blue": "#1f77b4", "tab:orange": "#ff7f0e", "tab:green": "#2ca02c",
           "tab:red": "#d62728", "tab:purple": "#9467bd", "tab:brown": "#8c564b",
           "tab:pink": "#e377c2", "tab:gray": "#7f7f7f", "tab:olive": "#bcbd22",
           "tab:cyan": "#17becf"}
CYCLE = list(COLOURS.values())
#: viridis at 9 stops (linear interpolation in between).
VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=float)


@dataclass
class Series:
    """One line of a chart. ``style``: ``"line"``, ``"dots"`` (line with markers), ``"dashed"``
    (dashed line with small markers). ``alpha`` in 0..1; ``label`` None keeps it out of the legend."""

    x: np.ndarray
    y: np.ndarray
    colour: str
    style: str = "line"
    width: float = 1.5
    alpha: float = 1.0
    label: str | None = None
    marker: float = 4.5

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype=float).ravel()
        self.y = np.asarray(self.y, dtype=float).ravel()
        if self.x.shape != self.y.shape:
            raise ValueError(f"Series {self.label!r}: {self.x.size} x values but {self.y.size} y values")


@dataclass
class LineChart:
    """What :func:`paint_lines` draws: series, a title, an x label, integer x ticks or not and
    optional vertical marker lines (``vlines``: x positions, drawn dotted)."""

    title: str
    series: list[Series] = field(default_factory=list)
    xlabel: str = ""
    integer_x: bool = True
    vlines: list[float] = field(default_factory=list)


def colour(name: str, alpha: float = 1.0) -> QColor:
    c = QColor(COLOURS.get(name, name))
    c.setAlphaF(max(0.0, min(1.0, alpha)))
    return c


def viridis(t: np.ndarray) -> np.ndarray:
    """RGB (0..255) of viridis at ``t`` in 0..1."""
    t = np.clip(np.asarray(t, dtype=float), 0, 1) * (len(VIRIDIS) - 1)
    low = np.floor(t).astype(int).clip(0, len(VIRIDIS) - 2)
    frac = (t - low)[..., None]
    return VIRIDIS[low] * (1 - frac) + VIRIDIS[low + 1] * frac


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) inside ``[low, high]``, about ``count`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_text(values: list[float]) -> list[str]:
    """Labels with as many decimals as the tick step needs."""
    if len(values) < 2:
        return [f"{v:g}" for v in values]
    step = min(abs(b - a) for a, b in zip(values, values[1:])) or 1.0
    decimals = max(0, min(6, -math.floor(math.log10(step) + 1e-9)))
    if step * 10 ** decimals % 1 > 1e-6:  # 2.5 x 10^k
        decimals += 1
    return [f"{v:.{decimals}f}" for v in values]


def _font(points: float) -> QFont:
    font = QFont()
    font.setPointSizeF(points)
    return font


def _range(values: list[np.ndarray], pad: float) -> tuple[float, float]:
    finite = [v[np.isfinite(v)] for v in values if v.size]
    finite = [v for v in finite if v.size]
    if not finite:
        return 0.0, 1.0
    low = min(float(v.min()) for v in finite)
    high = max(float(v.max()) for v in finite)
    if high - low < 1e-12:
        span = abs(high) * 0.05 or 0.5
        return low - span, high + span
    margin = (high - low) * pad
    return low - margin, high + margin


def paint_lines(painter: QPainter, rect: QRectF, chart: LineChart) -> QRectF:
    """Paint ``chart`` into ``rect``; return the plot area (inside the axes)."""
    title_font, label_font = _font(TITLE_PT), _font(LABEL_PT)
    tm, lm = QFontMetricsF(title_font), QFontMetricsF(label_font)
    xs = [s.x for s in chart.series] + [np.asarray(chart.vlines, dtype=float)]
    x0, x1 = _range(xs, 0.03)
    if chart.integer_x and not any(s.x.size for s in chart.series):
        x0, x1 = 0.0, 1.0
    y0, y1 = _range([s.y for s in chart.series], 0.06)
    yticks = nice_ticks(y0, y1, 4)
    ylabels = tick_text(yticks)
    left = rect.left() + max([lm.horizontalAdvance(t) for t in ylabels] + [10]) + 8
    top = rect.top() + tm.height() + 6
    bottom = rect.bottom() - lm.height() * (2 if chart.xlabel else 1) - 6
    area = QRectF(left, top, max(rect.right() - 6 - left, 10), max(bottom - top, 10))

    def px(x):
        return area.left() + (x - x0) / (x1 - x0) * area.width()

    def py(y):
        return area.bottom() - (y - y0) / (y1 - y0) * area.height()

    painter.setFont(title_font)
    painter.setPen(QColor(FOREGROUND))
    painter.drawText(QRectF(rect.left(), rect.top() + 1, rect.width(), tm.height()),
                     Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, chart.title)
    painter.setFont(label_font)
    grid = QPen(QColor(GRID), 0.6)
    for value, text in zip(yticks, ylabels):
        y = py(value)
        painter.setPen(grid)
        painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
        painter.setPen(QColor(FOREGROUND))
        painter.drawText(QRectF(rect.left(), y - lm.height() / 2, left - rect.left() - 4, lm.height()),
                         Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
    xticks = nice_ticks(x0, x1, max(2, int(area.width() // 45)), integer=chart.integer_x)
    for value, text in zip(xticks, tick_text(xticks) if not chart.integer_x else
                           [f"{v:.0f}" for v in xticks]):
        x = px(value)
        painter.setPen(grid)
        painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        painter.setPen(QColor(FOREGROUND))
        painter.drawText(QRectF(x - 30, area.bottom() + 2, 60, lm.height()),
                         Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, text)
    if chart.xlabel:
        painter.drawText(QRectF(area.left(), area.bottom() + lm.height() + 3, area.width(), lm.height()),
                         Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, chart.xlabel)
    painter.setPen(QPen(QColor(GRID), 1.0))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRect(area)

    painter.save()
    painter.setClipRect(area.adjusted(-4, -4, 4, 4))
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    for value in chart.vlines:
        pen = QPen(QColor(FOREGROUND), 0.8, Qt.PenStyle.DotLine)
        painter.setPen(pen)
        painter.drawLine(QPointF(px(value), area.top()), QPointF(px(value), area.bottom()))
    for s in chart.series:
        keep = np.isfinite(s.x) & np.isfinite(s.y)
        points = [QPointF(px(x), py(y)) for x, y in zip(s.x[keep], s.y[keep])]
        if not points:
            continue
        pen = QPen(colour(s.colour, s.alpha), s.width)
        if s.style == "dashed":
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if len(points) > 1:
            painter.drawPolyline(QPolygonF(points))
        if s.style in ("dots", "dashed"):
            radius = s.marker / 2 if s.style == "dots" else s.marker / 3
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour(s.colour, s.alpha))
            for p in points:
                painter.drawEllipse(p, radius, radius)
    painter.restore()
    _legend(painter, area, [s for s in chart.series if s.label], lm)
    return area


def _legend(painter: QPainter, area: QRectF, series: list[Series], metrics: QFontMetricsF) -> None:
    if not series:
        return
    row = metrics.height() + 1
    width = max(metrics.horizontalAdvance(s.label) for s in series) + 26
    box = QRectF(area.right() - width - 4, area.top() + 4, width, row * len(series) + 4)
    painter.setPen(QPen(QColor(GRID), 0.8))
    fill = QColor(BACKGROUND)
    fill.setAlphaF(0.85)
    painter.setBrush(fill)
    painter.drawRect(box)
    for k, s in enumerate(series):
        y = box.top() + 2 + row * (k + 0.5)
        pen = QPen(colour(s.colour), max(s.width, 1.2))
        if s.style == "dashed":
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawLine(QPointF(box.left() + 4, y), QPointF(box.left() + 18, y))
        painter.setPen(QColor(FOREGROUND))
        painter.drawText(QRectF(box.left() + 22, y - row / 2, width - 22, row),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, s.label)


def paint_heatmap(painter: QPainter, rect: QRectF, title: str, values: np.ndarray | None,
                  rows: list[str], columns: list[str],
                  boxes: list[tuple[int, int]] = ()) -> QRectF | None:
    """Paint ``values`` (rows x columns) with viridis scaled to its own min..max, a colour bar,
    row and column labels and white boxes around ``boxes`` ((row, column) pairs). Returns the
    cell area, or None when there is nothing to show (only the title is painted)."""
    title_font, label_font = _font(TITLE_PT), _font(LABEL_PT)
    tm, lm = QFontMetricsF(title_font), QFontMetricsF(label_font)
    painter.setFont(title_font)
    painter.setPen(QColor(FOREGROUND))
    painter.drawText(QRectF(rect.left(), rect.top() + 1, rect.width(), tm.height()),
                     Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, title)
    if values is None or values.size == 0:
        return None
    values = np.asarray(values, dtype=float)
    n_rows, n_cols = values.shape
    rows = list(rows)[:n_rows] + [f"row {k}" for k in range(len(rows), n_rows)]
    columns = list(columns)[:n_cols] + [f"col {k}" for k in range(len(columns), n_cols)]
    painter.setFont(label_font)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    bar_labels = [f"{low:.3f}", f"{high:.3f}"]
    bar_width = 10 + 4 + max(lm.horizontalAdvance(t) for t in bar_labels) + 4
    slant = 0.42  # column labels rise at about 25 degrees
    label_drop = max(lm.horizontalAdvance(c) for c in columns) * slant + lm.height() + 4
    left = rect.left() + max(lm.horizontalAdvance(r) for r in rows) + 8
    top = rect.top() + tm.height() + 6
    area = QRectF(left, top, max(rect.right() - bar_width - 6 - left, 10),
                  max(rect.bottom() - label_drop - top, 10))
    cw, ch = area.width() / n_cols, area.height() / n_rows
    scaled = (values - low) / max(high - low, 1e-12)
    rgb = viridis(np.nan_to_num(scaled))
    for i in range(n_rows):
        for j in range(n_cols):
            r, g, b = (int(v) for v in rgb[i, j])
            painter.fillRect(QRectF(area.left() + j * cw, area.top() + i * ch, cw + 0.5, ch + 0.5),
                             QColor(r, g, b))
    painter.setPen(QColor(FOREGROUND))
    for i, text in enumerate(rows):
        painter.drawText(QRectF(rect.left(), area.top() + i * ch, left - rect.left() - 4, ch),
                         Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
    for j, text in enumerate(columns):
        painter.save()
        painter.translate(area.left() + (j + 0.5) * cw + 3, area.bottom() + lm.height() * 0.8)
        painter.rotate(-25)
        painter.drawText(QRectF(-lm.horizontalAdvance(text) - 2, -lm.height(), lm.horizontalAdvance(text) + 2,
                                lm.height()), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, text)
        painter.restore()
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.setPen(QPen(QColor("white"), 1.6))
    for i, j in boxes:
        if 0 <= i < n_rows and 0 <= j < n_cols:
            painter.drawRect(QRectF(area.left() + j * cw + 1, area.top() + i * ch + 1, cw - 2, ch - 2))
    # colour bar: high at the top
    bar = QRectF(area.right() + 6, area.top(), 10, area.height())
    steps = 32
    for k in range(steps):
        r, g, b = (int(v) for v in viridis(np.array(1 - (k + 0.5) / steps)))
        painter.fillRect(QRectF(bar.left(), bar.top() + k * bar.height() / steps, bar.width(),
                                bar.height() / steps + 0.5), QColor(r, g, b))
    painter.setPen(QColor(FOREGROUND))
    painter.drawText(QRectF(bar.right() + 3, bar.top() - 2, rect.right() - bar.right(), lm.height()),
                     Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, bar_labels[1])
    painter.drawText(QRectF(bar.right() + 3, bar.bottom() - lm.height() + 2, rect.right() - bar.right(),
                            lm.height()), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom,
                     bar_labels[0])
    return area


def cycle_colour(index: int) -> str:
    return CYCLE[index % len(CYCLE)]
