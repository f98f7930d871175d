"""The Search widget: launch and follow a DARTS search (``nascsmri search``).

:class:`SearchWidget` adds the search settings to :class:`~napari_nascsmri._job_widget.JobWidget`,
shows the edge diagnostics (:func:`signal_text`), and remembers a finished search's
``RUN/genotype.json`` in the known genotypes (:mod:`napari_nascsmri._genotype_store`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Label, Select, SpinBox

from backend.runfiles import GENOTYPE

from ._genotype_store import _genotype_choices, genotype_events, genotypes_file, remember_genotype
from ._job_process import job_argv
from ._job_widget import DEFAULT_RUNS_DIR, JobWidget
from ._shared import _notify

if TYPE_CHECKING:
    import napari


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
                genotype_events.found.emit(entry.path)
        super()._on_done()

    def _progress_note(self) -> str:
        history = self.trace.history
        search = history[-1].search if history else None
        return f"; genotype stable for {search.stable_epochs} epoch(s)" if search is not None else ""

    def _done_text(self) -> str:
        return f"search: done ({self.trace.message}); genotype in {self.run_dir / GENOTYPE}"


def signal_text(trace) -> str:
    """The last epoch's edge diagnostics (``edge_margin``/``chosen_margin``/``edge_entropy``,
    ``no_signal``/``no_signal_reason``) in words; "-" before the first epoch."""
    from dataclasses import asdict

    history = trace.history
    last = asdict(history[-1].search) if history and history[-1].search is not None else {}
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
