"""Model weights on disk: safetensors + a JSON sidecar describing the architecture.

``save_weights(model, "nasn.safetensors", meta)`` writes

* ``nasn.safetensors`` -- the state dict (safetensors: no pickle, so loading runs no code);
  the sidecar content is also stored in its header metadata under ``"nascsmri"``;
* ``nasn.json`` -- ``{"format": ..., "version": 1, "name", "genotype", "blocks",
  "cascades", "channels", "cells", "meta"}`` (the :class:`ModelConfig` + free-form ``meta``).

``load_model(path)`` rebuilds the architecture with :func:`build_model` from the sidecar (or,
if the sidecar is missing, from the header metadata) and loads the tensors strictly. A
``.pt`` / ``.pth`` state dict is accepted only through ``torch.load(weights_only=True)`` and
needs the sidecar. Every problem is an :class:`~backend.errors.InputError` naming the file.
Both files are written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

from ..errors import InputError
from ..files import atomic_write_bytes
from .registry import ModelConfig, build_from_config

FORMAT = "napari-nascsmri-weights"
VERSION = 1
_META_KEY = "nascsmri"
_PICKLE_SUFFIXES = (".pt", ".pth")
_SHOW = 3  # how many mismatching keys an error message names


SHIPPED_DIR = "data/weights"


def shipped_weights(name: str) -> Path:
    """Path of the weights for model ``name`` that ship inside the package (may not exist)."""
    from importlib import resources

    return Path(str(resources.files("backend") / SHIPPED_DIR / f"{name}.safetensors"))


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a weights file: same name, suffix ``.json``."""
    return Path(path).with_suffix(".json")


def save_weights(model: nn.Module, path: str | os.PathLike,
                 meta: dict[str, Any] | None = None) -> Path:
    """Save a registry model's weights to ``path`` (safetensors) and its sidecar JSON.

    ``model`` must come from :func:`build_model` (it reads ``model.config``); ``meta`` is any
    JSON-serialisable dict (epoch, data set, metrics ...). Returns ``path``.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise ValueError("save_weights needs a model built by build_model (no .config found)")
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, **config.to_dict(), "meta": meta or {}}
    text = json.dumps(header, indent=2) + "\n"  # TypeError here if meta is not JSON-ready
    tensors = {key: value.detach().to("cpu").contiguous()
               for key, value in model.state_dict().items()}
    atomic_write_bytes(path, save_safetensors(tensors, metadata={_META_KEY: text}))
    atomic_write_bytes(sidecar_path(path), text.encode("utf-8"))
    return path


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model and load its weights; returns ``(model in eval mode, meta)``.

    Raises :class:`InputError` if a file is missing, unreadable, not safetensors (or, for
    ``.pt``/``.pth``, not loadable with ``weights_only=True``), if the sidecar is invalid, or
    if the tensors do not fit the architecture (missing / unexpected keys, shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        tensors, embedded = _read_pickled_state_dict(path), None
    else:
        tensors, embedded = _read_safetensors(path)
    header, source = _read_header(path, embedded)
    try:
        config = ModelConfig.from_dict(header)
    except InputError as err:
        raise InputError(source, err.problem) from None
    # Check the tensors against a skeleton on the meta device first: a sidecar may declare an
    # enormous architecture (e.g. 100,000 channels), which must not be allocated. Once the
    # shapes match, the real model is no larger than the tensors already read from the file.
    with torch.device("meta"):
        skeleton = build_from_config(config)
    _check_state_dict(path, skeleton, tensors)
    bad = next((key for key, value in tensors.items()
                if value.is_floating_point() or value.is_complex()
                if not bool(torch.isfinite(value).all())), None)
    if bad is not None:
        raise InputError(path, f"weights hold NaN or Inf values (tensor {bad!r}): a diverged or damaged "
                               "training; nothing reconstructed")
    # the skeleton takes the file's tensors as its parameters (no initialisation to overwrite:
    # that took most of NasN's 0.1 s load); every parameter and buffer is in the state dict
    skeleton.load_state_dict(tensors, strict=True, assign=True)
    model = skeleton.eval()
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise AssertionError("a model tensor outside the state dict stayed on the meta device")
    return model, dict(header.get("meta") or {})


def _one_line(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # torch colours parts of its messages
    # torch.load(weights_only=True) explains how to bypass the check before naming the problem
    # (and then how to allow the offending global: advice we do not pass on for a refused file)
    reason = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    if reason:
        text = reason.group(1).split(" Please use")[0]
    return " ".join(text.split()) or type(err).__name__


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Tensors and the embedded sidecar text (None if absent) of a safetensors file."""
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise InputError(path, f"not a valid safetensors weights file ({_one_line(err)})") from None
    return tensors, metadata.get(_META_KEY)


def _read_pickled_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``.pt``/``.pth`` state dict through ``torch.load(weights_only=True)`` only."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(path, "refused: not a plain tensor file loadable with "
                               f"weights_only=True ({_one_line(err)[:200]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise InputError(path, "expected a state dict (names -> tensors)")
    return obj


def _read_header(path: Path, embedded: str | None) -> tuple[dict[str, Any], Path]:
    """The sidecar dict (falls back to the text embedded in the safetensors header) and the
    file it came from."""
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        source: Path = sidecar
        try:
            text = sidecar.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(sidecar, f"cannot read ({_one_line(err)})") from None
    elif embedded is not None:
        source, text = path, embedded
    else:
        raise InputError(path, f"no sidecar {sidecar.name} describing the model")
    try:
        header = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(source, f"invalid JSON: {err}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(source, f"not a {FORMAT} description (missing \"format\": \"{FORMAT}\")")
    if header.get("version") != VERSION:
        raise InputError(source, f"unsupported version {header.get('version')!r} "
                                 f"(this program reads version {VERSION})")
    if not isinstance(header.get("meta", {}), dict):
        raise InputError(source, "'meta' must be a JSON object")
    return header, source


def _check_state_dict(path: Path, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Raise ``InputError(path, ...)`` naming the first few mismatches with the architecture."""
    expected = model.state_dict()
    problems = []
    missing = [key for key in expected if key not in tensors]
    unexpected = [key for key in tensors if key not in expected]
    shapes = [f"{key} {tuple(tensors[key].shape)} != {tuple(value.shape)}"
              for key, value in expected.items()
              if key in tensors and tensors[key].shape != value.shape]
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
    if problems:
        name = getattr(model, "config").name
        raise InputError(path, f"weights do not match the {name!r} architecture of the "
                               f"sidecar: {'; '.join(problems)}")
