"""What every raw-data reader's end-to-end test checks (ISMRMRD, twix): the CLI reconstructs the
file without touching it, and the napari reader opens it with its notice shown on opening."""

from __future__ import annotations

import json
from pathlib import Path


def reconstructs_and_opens(path: Path, tmp_path: Path, shape: tuple[int, ...], notice: str) -> dict:
    """Run ``nascsmri reconstruct`` (zero-filled) and the napari reader on ``path``; returns the
    reader's layer metadata."""
    from napari.utils.notifications import notification_manager

    from backend.cli import main
    from napari_nascsmri._reader import get_reader

    before = path.read_bytes()
    out, metrics = tmp_path / "zf.h5", tmp_path / "m.json"
    assert main(["reconstruct", str(path), "--model", "zero-filled", "--out", str(out), "--json", str(metrics),
                 "--quiet"]) == 0
    assert 15 < json.loads(metrics.read_text())["psnr"] < 40
    assert path.read_bytes() == before  # opened read-only, never touched
    start = len(notification_manager.records)
    [(data, meta, kind)] = get_reader(str(path))(str(path))
    assert kind == "image" and data.shape == shape
    assert any(notice in str(n.message) for n in notification_manager.records[start:])  # shown on opening
    return meta
