"""Errors the user can act on.

Every problem with an input file, a genotype, a weights file or an output folder is raised as an
:class:`InputError` whose message names the file and the problem in one line. The CLI prints that
line and exits with status 2; the napari plugin shows it as a notification.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """A user-supplied file or value cannot be used; the message is one line for the user."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def range_text(lo=None, hi=None, integer: bool = False) -> str:
    """``an integer from 1 to 100`` / ``a number >= 0`` ...: the allowed range in words."""
    kind = "an integer" if integer else "a finite number"
    if lo is not None and hi is not None:
        return f"{kind} from {lo:g} to {hi:g}" if not integer else f"{kind} from {lo} to {hi}"
    if lo is not None:
        return f"{kind} >= {lo:g}" if not integer else f"{kind} >= {lo}"
    if hi is not None:
        return f"{kind} <= {hi:g}" if not integer else f"{kind} <= {hi}"
    return kind


def in_range(value, lo=None, hi=None, integer: bool = False) -> bool:
    """True when ``value`` is a (finite) number, an integer if asked, within ``[lo, hi]``."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if integer and not isinstance(value, numbers.Integral):
        return False
    if not integer and not math.isfinite(float(value)):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def check_range(name: str, value, lo=None, hi=None, integer: bool = False, optional: bool = False) -> None:
    """Raise ``InputError(None, "NAME must be ... , got VALUE")`` unless ``value`` is in range
    (``optional``: None is accepted too). Shared by the config dataclasses, the CLI and the GUI."""
    if optional and value is None:
        return
    if not in_range(value, lo, hi, integer):
        raise InputError(None, f"{name} must be {range_text(lo, hi, integer)}, got {value!r}")


def check_fields(obj, rules: dict) -> None:
    """Validate dataclass fields: ``rules`` maps a field name to ``(lo, hi, integer, optional)``;
    the first field out of range raises ``InputError(None, "FIELD must be ..., got VALUE")``."""
    for name, (lo, hi, integer, optional) in rules.items():
        check_range(name.replace("_", " "), getattr(obj, name), lo, hi, integer, optional)


def check_device(device) -> None:
    """``device`` must be ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (availability is checked
    when the device is resolved)."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", device):
        raise InputError(None, f"unknown device {device!r}: choose auto, cpu, cuda or cuda:N")


#: Largest seed accepted everywhere (numpy's RandomState takes 32-bit seeds).
MAX_SEED = 2**32 - 1


def short_reason(err: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters), or its type's name."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]
