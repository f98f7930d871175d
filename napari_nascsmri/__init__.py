"""napari plugin of napari-nascsmri: readers, writers, sample data and reconstruction widgets.

The plugin is thin: it builds configs and calls :mod:`backend`; napari itself is imported only
where a widget needs it.
"""

__version__ = "0.1.0"
