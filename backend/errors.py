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
