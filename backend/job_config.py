"""Search and training configs from a ``--config FILE.json`` (or a run's ``config.json``).

:func:`read_config_file` reads and checks such a file; :func:`job_config` builds the job's
config: the dataclass defaults, then the preset, then the given values (the CLI adds its flags
on top, :func:`backend.commands.job_config_from_args`). The defaults and presets themselves live
in :mod:`backend.config`.
"""

from __future__ import annotations

from .config import SEARCH_PRESETS, TRAIN_PRESETS, SearchConfig, TrainConfig

#: The job kinds and their config dataclasses and presets.
JOB_KINDS = ("search", "train")


def job_class(kind: str):
    """The config dataclass of a job kind (``search`` or ``train``)."""
    classes = {"search": SearchConfig, "train": TrainConfig}
    if kind not in classes:
        raise ValueError(f"unknown job kind {kind!r}; choose from {JOB_KINDS}")
    return classes[kind]


def job_presets(kind: str) -> dict[str, dict]:
    return SEARCH_PRESETS if kind == "search" else TRAIN_PRESETS


def read_config_file(path, kind: str) -> dict:
    """The settings in a ``--config FILE.json``: one JSON object whose keys are fields of the
    ``kind`` job's config (a run's ``config.json`` is such a file), plus an optional ``"kind"``
    that must name this job. Lists become tuples. Any problem is an
    :class:`~backend.errors.InputError` naming the file."""
    import json
    import os
    from dataclasses import fields

    from .errors import InputError
    from .files import check_input_file

    path = os.fspath(path)
    check_input_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except RecursionError:
        raise InputError(path, "not a JSON config (nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as err:
        text = " ".join(str(err).split())[:120]
        raise InputError(path, f"not a JSON config ({type(err).__name__}: {text})") from None
    if not isinstance(data, dict):
        raise InputError(path, f"a config file holds one JSON object of settings, not a {type(data).__name__}")
    named = data.pop("kind", kind)
    if named != kind:
        raise InputError(path, f"is a {named!r} config, not a {kind} config")
    names = {f.name for f in fields(job_class(kind))}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(path, f"unknown {kind} setting {unknown[0]!r} (the settings are the fields of "
                               f"{job_class(kind).__name__}, listed in the README)")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def job_config(kind: str, values: dict, source=None):
    """The ``kind`` job's config: the dataclass defaults, then the preset's values (the preset
    named in ``values``, else the default one), then ``values`` (None values included: a file
    may set a field to null). A bad value is an :class:`~backend.errors.InputError` naming
    ``source`` (the config file, or None for flags)."""
    from .errors import InputError

    cls, presets = job_class(kind), job_presets(kind)
    preset = values.get("preset", cls.preset)
    if preset not in presets:
        raise InputError(source, f"unknown {kind} preset {preset!r}; choose from {sorted(presets)}")
    try:
        return cls(**{**presets[preset], **values})
    except (TypeError, ValueError) as err:
        raise InputError(source, " ".join(str(err).split())) from None
