"""A local folder laid out like the Hugging Face Hub cache, for offline tests of Hub ids and revisions.

``models--owner--name/snapshots/<commit>/<files>`` plus ``refs/<branch>`` holding the commit: what
``snapshot_download`` leaves behind, and what it resolves offline (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest


def commit_hash(text: str) -> str:
    """A 40-hex commit id (deterministic in ``text``)."""
    return hashlib.sha1(text.encode()).hexdigest()


def add_snapshot(
    cache: Path, repo_id: str, folder: Path, *, revision: str = "main", commit: str | None = None
) -> str:
    """Copy ``folder`` into ``cache`` as the snapshot of ``repo_id`` at ``revision``; returns the commit id.

    ``revision`` is a branch or tag (written to ``refs/``); the commit id is also usable as a revision.
    """
    commit = commit or commit_hash(f"{repo_id}@{revision}")
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return commit


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache in tmp, offline (env and huggingface_hub's constants)."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache
