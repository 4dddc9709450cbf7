"""Load a MoRA checkpoint from a local folder or the Hugging Face Hub, ready for ``predict``."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.utils.logging import get_logger

logger = get_logger("hub")


class CheckpointNotFoundError(FileNotFoundError):
    """The model folder or Hub repository does not exist or is not a MoRA checkpoint."""


def resolve_checkpoint(path_or_hub_id: str | os.PathLike, *, revision: str | None = None) -> Path:
    """A local folder holding ``config.json``: the path itself, or a Hub snapshot (downloaded or cached)."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointNotFoundError(f"{path} is a folder without config.json: not a MoRA checkpoint")
        return path
    text = str(path_or_hub_id)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointNotFoundError(
            f"model {text!r} is neither a checkpoint folder nor a Hub id (owner/name)"
        )

    try:
        local = snapshot_download(repo_id=text, revision=revision)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        raise CheckpointNotFoundError(
            f"could not get {text!r} from the Hugging Face Hub (offline or missing repository): {err}"
        ) from err
    return resolve_checkpoint(local)


def load_model(
    path_or_hub_id: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
):
    """`MoRAForVideoGrounding` with its processor, in eval mode, on ``device`` in ``dtype``.

    Raises:
        CheckpointNotFoundError: the folder or Hub id does not exist or lacks a MoRA checkpoint.
    """
    folder = resolve_checkpoint(path_or_hub_id, revision=revision)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model = MoRAForVideoGrounding.from_pretrained(folder, dtype=dtype or torch.float32)
    if model.processor is None:
        raise CheckpointNotFoundError(
            f"{folder} has model weights but no MoRA processor (mora_processor_config.json)"
        )
    if device is not None:
        model.to(device)
    logger.info("loaded %s (%s) on %s", folder, model.config.backbone_family, model.device)
    return model.eval()
