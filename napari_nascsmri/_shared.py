"""Names the plugin's widget modules share: napari notifications and a few constants.

:func:`_notify` shows an error / warning / info notification (napari imported on first use);
the constants are the reconstruction widget's source-layer metadata key, its weights choices
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
