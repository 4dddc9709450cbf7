"""Errors raised by the dataset readers: each names the file and the problem."""

from __future__ import annotations

import os


class DatasetFormatError(ValueError):
    """A dataset file is missing, unreadable or does not follow its format."""

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
