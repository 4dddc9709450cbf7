"""Load a MoRA checkpoint from a local folder or the Hugging Face Hub, ready for ``predict``."""

from __future__ import annotations

import json
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


WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PROCESSOR_CONFIG_NAME = "mora_processor_config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
)  # one of them, beside tokenizer_config.json


def check_checkpoint_files(folder: str | os.PathLike) -> None:
    """Raise `CheckpointNotFoundError` naming the first file a MoRA checkpoint folder lacks: ``config.json``,
    the weights (``model.safetensors``, or an index and every shard it names), the processor config and the
    tokenizer."""
    folder = Path(folder)

    def missing(what: str) -> CheckpointNotFoundError:
        return CheckpointNotFoundError(f"{folder} is not a complete MoRA checkpoint: {what}")

    if not (folder / "config.json").is_file():
        raise missing("no config.json")
    index = folder / WEIGHTS_INDEX_NAME
    if not (folder / WEIGHTS_NAME).is_file():
        if not index.is_file():
            raise missing(f"no {WEIGHTS_NAME} (nor {WEIGHTS_INDEX_NAME})")
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as err:
            raise missing(f"{WEIGHTS_INDEX_NAME} is unreadable ({err})") from None
        absent = [name for name in shards if not (folder / name).is_file()]
        if absent:
            raise missing(
                f"weight shard(s) {', '.join(absent[:3])} named in {WEIGHTS_INDEX_NAME} are missing"
            )
    if not (folder / PROCESSOR_CONFIG_NAME).is_file():
        raise missing(f"no {PROCESSOR_CONFIG_NAME} (the MoRA processor)")
    if not (folder / "tokenizer_config.json").is_file():
        raise missing("no tokenizer_config.json")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise missing(f"no tokenizer file ({' / '.join(TOKENIZER_FILES)})")


def load_model(
    path_or_hub_id: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
):
    """`MoRAForVideoGrounding` with its processor, in eval mode, on ``device`` in ``dtype``.

    Raises:
        CheckpointNotFoundError: the folder or Hub id does not exist, lacks a file of a MoRA checkpoint
            (`check_checkpoint_files`) or does not load.
    """
    folder = resolve_checkpoint(path_or_hub_id, revision=revision)
    check_checkpoint_files(folder)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        model = MoRAForVideoGrounding.from_pretrained(folder, dtype=dtype or torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise CheckpointNotFoundError(
            f"{folder}: the checkpoint does not load ({type(err).__name__}: {reason})"
        ) from err
    if model.processor is None:
        raise CheckpointNotFoundError(
            f"{folder} has model weights but no MoRA processor (mora_processor_config.json)"
        )
    if device is not None:
        model.to(device)
    logger.info("loaded %s (%s) on %s", folder, model.config.backbone_family, model.device)
    return model.eval()
