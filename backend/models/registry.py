"""The one registry of model names used by the CLI, training and the GUI.

``build_model(name, ...)`` is the single place where defaults live. Every model it returns has
``forward(x, k0, mask) -> (B, 2, H, W)`` with

* ``x``: normalised zero-filled image ``(B, 2, H, W)`` (real, imaginary), any ``H, W``;
* ``k0``: measured centred k-space, complex ``(B, H, W)``, in the same scale as ``x``;
* ``mask``: 0/1 column mask ``(W,)`` or ``(B, W)``;

(the U-net ignores ``k0`` and ``mask``) and carries its :class:`ModelConfig` as ``.config``,
which :func:`backend.models.weights.save_weights` records next to the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from torch import nn

from ..errors import InputError
from .baselines import UNet, dccnn, modl, rdn
from .genotype import Genotype, default_genotype
from .nasn import nasn

DEFAULT_CASCADES = 3
DEFAULT_CHANNELS = 32
DEFAULT_CELLS = 3
DEFAULT_BLOCKS: dict[str, int] = {"dccnn": 3, "modl": 3, "rdn": 3}
"""Blocks per reconstruction module (residual blocks / recursions) when not given."""
MAX_SIZES: dict[str, int] = {"blocks": 64, "cascades": 64, "cells": 64, "channels": 1 << 17}
"""Largest architecture sizes accepted (a sidecar or ``--blocks`` asking for 10^6 cascades
would otherwise build modules until memory runs out). Channels are bounded loosely here: a
sidecar's channel count is checked against the tensors on the meta device, and
:func:`build_model` bounds the parameter count (:data:`MAX_PARAMETERS`) before allocating."""
MAX_PARAMETERS = 50_000_000
"""Most parameters :func:`build_model` allocates (200 MB of float32; the shipped networks have
about 0.15 M, the paper's sizes a few M)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a registry model; fields a model does not use are None.

    name: one of :data:`MODEL_NAMES`; genotype: NasN cell; blocks: DCCNN/MoDL residual blocks
    or RDN recursions; cascades: module + DC stages; channels: feature width (U-net: start
    channels); cells: NasN cells per module.
    """

    name: str
    genotype: Genotype | None = None
    blocks: int | None = None
    cascades: int | None = None
    channels: int = DEFAULT_CHANNELS
    cells: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; the genotype as its :meth:`Genotype.to_dict`."""
        data = asdict(self)
        data["genotype"] = None if self.genotype is None else self.genotype.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`, validated through :func:`model_config`."""
        genotype = data.get("genotype")
        return model_config(
            data.get("name"),
            genotype=None if genotype is None else Genotype.from_dict(genotype),
            blocks=data.get("blocks"),
            **{key: data[key] for key in ("cascades", "channels", "cells")
               if data.get(key) is not None},
        )


_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "nasn": lambda c: nasn(c.genotype, c.cascades, c.channels, c.cells),
    "dccnn": lambda c: dccnn(c.blocks, c.cascades, c.channels),
    "modl": lambda c: modl(c.blocks, c.cascades, c.channels),
    "rdn": lambda c: rdn(c.blocks, c.cascades, c.channels),
    "unet": lambda c: UNet(c.channels),
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
"""``("nasn", "dccnn", "modl", "rdn", "unet")``."""


def model_config(name: str, *, genotype: Genotype | None = None, blocks: int | None = None,
                 cascades: int = DEFAULT_CASCADES, channels: int = DEFAULT_CHANNELS,
                 cells: int = DEFAULT_CELLS) -> ModelConfig:
    """Validate and normalise build options into a :class:`ModelConfig`.

    Defaults: NasN genotype = the shipped searched one (:func:`default_genotype`), blocks from :data:`DEFAULT_BLOCKS`. Options a
    model does not use are stored as None; passing ``genotype`` to a non-NasN model or
    ``blocks`` to NasN / U-net is an error. Problems raise ``InputError(None, ...)``.
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise InputError(None, f"unknown model {name!r} (choose from {', '.join(MODEL_NAMES)})")
    if genotype is not None and name != "nasn":
        raise InputError(None, f"a genotype only applies to 'nasn', not {name!r}")
    if blocks is not None and name not in DEFAULT_BLOCKS:
        raise InputError(None, f"'blocks' does not apply to {name!r}")
    if genotype is not None and not isinstance(genotype, Genotype):
        raise InputError(None, f"genotype must be a Genotype, got {type(genotype).__name__}")
    for key, value in (("blocks", blocks), ("cascades", cascades), ("channels", channels),
                       ("cells", cells)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise InputError(None, f"{key} must be a positive integer, got {value!r}")
        if value is not None and value > MAX_SIZES[key]:
            raise InputError(None, f"{key} must be an integer from 1 to {MAX_SIZES[key]}, got {value!r}")
    config = ModelConfig(name, channels=channels)
    if name == "nasn":
        genotype = default_genotype() if genotype is None else genotype
        return replace(config, genotype=genotype, cascades=cascades, cells=cells)
    if name in DEFAULT_BLOCKS:
        blocks = DEFAULT_BLOCKS[name] if blocks is None else blocks
        return replace(config, blocks=blocks, cascades=cascades)
    return config


def build_from_config(config: ModelConfig) -> nn.Module:
    """Build the model a :class:`ModelConfig` describes; sets ``model.config``."""
    model = _BUILDERS[config.name](config)
    model.config = config
    return model


def build_model(name: str, *, genotype: Genotype | None = None, blocks: int | None = None,
                cascades: int = DEFAULT_CASCADES, channels: int = DEFAULT_CHANNELS,
                cells: int = DEFAULT_CELLS) -> nn.Module:
    """Build a registry model (see the module docstring for its ``forward``).

    Args:
        name: ``nasn``, ``dccnn``, ``modl``, ``rdn`` or ``unet``.
        genotype: NasN cell (default: the shipped searched genotype); NasN only.
        blocks: residual blocks (DCCNN, MoDL) or recursions (RDN); default 3.
        cascades: module + DC stages (not U-net). channels: feature width (U-net: start
            channels). cells: NasN cells per module.
    """
    config = model_config(name, genotype=genotype, blocks=blocks, cascades=cascades, channels=channels,
                          cells=cells)
    check_parameter_count(config)
    return build_from_config(config)


def model_config_of(train_config) -> ModelConfig:
    """The :class:`ModelConfig` a :class:`backend.config.TrainConfig` describes (its genotype file
    read; the shipped genotype when it names none). A genotype for anything but NasN is an
    ``InputError``; ``blocks`` is not used by NasN and the U-net (the CLI refuses it for NasN)."""
    c = train_config
    if c.model != "nasn" and c.genotype:
        raise InputError(None, f"--genotype only applies to nasn, not {c.model!r}")
    if c.model == "nasn":
        genotype = Genotype.load(c.genotype) if c.genotype else None
        return model_config("nasn", genotype=genotype, channels=c.channels, cells=c.cells, cascades=c.cascades)
    if c.model == "unet":
        return model_config("unet", channels=c.channels)
    return model_config(c.model, blocks=c.blocks, channels=c.channels, cascades=c.cascades)


def check_parameter_count(config: ModelConfig) -> int:
    """The parameter count of ``config`` (built on the meta device: nothing allocated); above
    :data:`MAX_PARAMETERS` an :class:`InputError`."""
    import torch

    with torch.device("meta"):
        skeleton = build_from_config(config)
    count = sum(p.numel() for p in skeleton.parameters())
    if count > MAX_PARAMETERS:
        raise InputError(None, f"the {config.name} architecture has {count:,} parameters, more than this "
                               f"tool builds ({MAX_PARAMETERS:,}): lower channels, blocks, cells or cascades")
    return count
