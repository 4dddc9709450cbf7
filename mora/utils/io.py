"""Atomic writes and root-confined paths.

Nothing half-written is ever picked up as complete: files and folders are written under a temporary
name in the same directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class UnsafePathError(ValueError):
    """A dataset path escapes its root folder."""


def safe_join(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Join ``relative`` under ``root`` and reject results that escape ``root`` (``..``, absolute, symlinks)."""
    root_path = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafePathError(f"path {str(relative)!r} is absolute; expected a path relative to {root_path}")
    joined = (root_path / rel).resolve()
    if joined != root_path and root_path not in joined.parents:
        raise UnsafePathError(f"path {str(relative)!r} escapes the dataset root {root_path}")
    return joined


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to ``final`` only if the block succeeds.

    Works for files and folders: the caller creates whatever it wants at the yielded path.
    An existing ``final`` is replaced (folders: the old one is removed after the rename of the new).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if final.is_dir() and not final.is_symlink():
            trash = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, trash)
            os.replace(target, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")
