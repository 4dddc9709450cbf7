"""What each run folder records about itself: the resolved config, the DeepSpeed config, the git commit
and the package versions (``config.yaml``, ``deepspeed.json``, ``run_info.json``)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mora.training.config import RunConfig
from mora.training.config_io import dump_config_yaml
from mora.utils.io import write_json_atomic, write_text_atomic
from mora.utils.logging import get_logger

logger = get_logger("training")

PACKAGES = (
    "mora",
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "deepspeed",
    "accelerate",
    "safetensors",
    "numpy",
    "tensorboard",
)


def git_state(repo: Path) -> dict[str, Any]:
    def _git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_run_info(
    run_dir: Path, run: RunConfig, ds_config: dict[str, Any], argv: list[str], repo: Path, world_size: int
) -> None:
    """Write the run's provenance (rank 0). An earlier ``config.yaml`` of a resumed run is kept beside it
    as ``config.<time>.yaml`` when the configuration changed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = dump_config_yaml(run)
    previous = run_dir / "config.yaml"
    if previous.is_file() and previous.read_text() != text:
        kept = run_dir / f"config.{time.strftime('%Y%m%d-%H%M%S')}.yaml"
        previous.rename(kept)
        logger.warning("the configuration differs from the run's previous one (kept as %s)", kept.name)
    write_text_atomic(previous, text)
    write_json_atomic(run_dir / "deepspeed.json", ds_config)
    write_json_atomic(
        run_dir / "run_info.json",
        {
            "argv": argv,
            "git": git_state(repo),
            "packages": package_versions(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "world_size": world_size,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
