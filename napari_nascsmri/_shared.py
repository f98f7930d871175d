"""Names the plugin's widget modules share: napari notifications, file export, a few constants.

:func:`_notify` shows an error / warning / info notification (napari imported on first use);
:func:`export_file` / :func:`chosen_path` run an export the widgets offer (mask, metrics); the
constants are the reconstruction widget's source-layer metadata key, its weights choices
(also set by the Train widget) and the zero-filled method's name.
"""

from __future__ import annotations

SOURCE_KEY = "nascsmri_source"
SHIPPED, FROM_FILE = "shipped", "file"
ZERO_FILLED = "zero-filled"


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        kind, notifications.show_info
    )(message)


def chosen_path(value, what: str) -> str | None:
    """The path in a file-picker ``value``, or None (with a warning naming ``what``) when empty."""
    import os

    if not value or os.fspath(value) in ("", "."):
        _notify("warning", f"napari-nascsmri: choose {what} first")
        return None
    return os.fspath(value)


def export_file(write, path, status, what: str) -> str | None:
    """``write(path)`` -> the written path, reported in ``status`` (a widget whose ``value`` is
    the status line); the file errors of :mod:`backend` become one error notification."""
    import os

    from backend.errors import InputError

    try:
        out = write(path)
    except (InputError, OSError) as err:
        _notify("error", f"napari-nascsmri: {err}")
        return None
    status.value = f"{what} written to {os.path.basename(out)}"
    return out
