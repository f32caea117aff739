"""Errors that mean "the input is wrong", as opposed to a bug in mrharmony.

The command line turns an :class:`InputError` into one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input given by the user: a file, a config or an argument.

    The message is one sentence that names the file (when there is one) and the problem.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        if self.path is not None and not message.startswith(self.path):
            message = f"{self.path}: {message}"
        super().__init__(message)
