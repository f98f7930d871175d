"""The named-genotype store the Search and Train widgets share.

:func:`known_genotypes` lists the shipped NasN genotype (when present), HAND_A3 and every
genotype a finished search remembered (:func:`remember_genotype`), persisted as a JSON list in
:func:`genotypes_file` (``$NASCSMRI_GENOTYPES``, else under ``$XDG_CONFIG_HOME``).
``genotype_events.changed`` tells the widgets' genotype lists to refresh.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal

#: Environment variable naming the known-genotypes JSON file (tests point it to a temp dir).
GENOTYPES_ENV = "NASCSMRI_GENOTYPES"
SHIPPED_LABEL, HAND_LABEL = "shipped NasN genotype", "HAND_A3 (hand-made)"


@dataclass(frozen=True)
class KnownGenotype:
    """A genotype the widgets offer: ``label`` (shown), ``path`` (JSON file), ``source``
    (``shipped``, ``builtin`` or ``run``)."""

    label: str
    path: str
    source: str


class _GenotypeEvents:
    changed = Signal()
    found = Signal(str)


#: ``genotype_events.changed`` fires when :func:`remember_genotype` adds a genotype;
#: ``genotype_events.found(path)`` when a search run by the GUI finished with that genotype (the
#: Train widgets preselect it).
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
