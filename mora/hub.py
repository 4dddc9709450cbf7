"""MoRA checkpoints and the Hugging Face Hub: load from a local folder or a Hub id (with a revision, or from
the offline cache), and publish a folder with its generated model card (`push_folder`, ``mora push``).

Nothing here runs code from a repository: configs, weights (safetensors only) and the processor's JSON and
tokenizer files are read as data, never with ``trust_remote_code``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.utils.logging import get_logger

logger = get_logger("hub")


class CheckpointNotFoundError(FileNotFoundError):
    """The model folder or Hub repository does not exist or is not a MoRA checkpoint."""


def resolve_checkpoint(
    path_or_hub_id: str | os.PathLike, *, revision: str | None = None, **download: object
) -> Path:
    """A local folder holding ``config.json``: the path itself, or a Hub snapshot (downloaded or cached).

    ``revision``: a branch, tag or commit of a Hub id (default: main); with ``HF_HUB_OFFLINE=1`` it is
    resolved in the local cache (``refs/<branch>`` or ``snapshots/<commit>``). ``download``: further
    ``snapshot_download`` arguments (``cache_dir``, ``token``, ``local_files_only``).
    """
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
        local = snapshot_download(
            repo_id=text, revision=revision, allow_patterns=HUB_FILE_PATTERNS, **download
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        at = f" at revision {revision!r}" if revision else ""
        raise CheckpointNotFoundError(
            f"could not get {text!r}{at} from the Hugging Face Hub (offline without a cached copy, or no such "
            f"repository or revision): {_first_line(err)}"
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


# ------------------------------------------------------------------------------------------- publishing
# What a MoRA checkpoint consists of on the Hub (uploaded and downloaded); never pickles or code.
HUB_FILE_PATTERNS = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "mora_processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "chat_template.jinja",
    "conversion.json",
    "README.md",
]
_REQUIRED = ("config.json", "mora_processor_config.json", "tokenizer_config.json")


class PushError(ValueError):
    """A folder that cannot be published as it is (not a MoRA checkpoint, pickled weights, bad scores)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The files of ``folder`` a Hub upload holds (``HUB_FILE_PATTERNS``, without a README).

    Raises:
        PushError: a required file is missing, there are no safetensors weights, or code is asked for.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PushError(f"{folder} is not a folder")
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise PushError(f"{folder} is not a complete MoRA checkpoint: missing {', '.join(missing)}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.name != "README.md"
        and any(fnmatch.fnmatch(p.name, g) for g in HUB_FILE_PATTERNS)
    )
    if not any(p.name.endswith(".safetensors") for p in files):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pth", ".pt"))
        found = f" (found {', '.join(pickles)}: pickled weights are not published)" if pickles else ""
        raise PushError(f"{folder} has no safetensors weights{found}")
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "mora":
        raise PushError(
            f"{folder}/config.json is not a MoRA config (model_type {config.get('model_type')!r})"
        )
    if "auto_map" in config:
        raise PushError(f"{folder}/config.json has an auto_map: MoRA checkpoints carry no remote code")
    skipped = sorted(p.name for p in folder.iterdir() if p.is_file() and p not in files)
    if skipped:
        logger.info("not uploaded (not part of a MoRA checkpoint): %s", ", ".join(skipped))
    return files


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    scores: str | os.PathLike | dict | None = None,
    scores_name: str = "evaluation",
    base_models: Sequence[str] = (),
    training_data: str | None = None,
    datasets: Sequence[str] = (),
    license: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | bool | None = None,
    api: HfApi | None = None,
):
    """Upload the MoRA checkpoint in ``folder`` to ``repo_id`` with a generated model card, in one commit.

    Uploaded: safetensors weights, ``config.json``, the processor and tokenizer files, ``conversion.json``
    when present, and ``README.md`` (`mora.model_card.build_model_card`, with the ``scores.json`` table).
    The repository is created when missing (``private`` applies then), and the branch ``revision`` too.
    ``token``: a Hub token (default: ``HF_TOKEN`` / the cached login); it is never logged.

    Returns:
        the ``CommitInfo`` of the upload (a string: the commit URL).
    """
    from mora.model_card import ModelCardError, build_model_card, read_scores

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"--repo-id must be owner/name, got {repo_id!r}")
    files = checkpoint_files(folder)
    try:
        score_table = read_scores(scores) if isinstance(scores, (str, os.PathLike)) else scores
        card = build_model_card(
            folder,
            repo_id,
            scores=score_table,
            scores_name=scores_name,
            base_models=base_models,
            training_data=training_data,
            datasets=datasets,
            license=license,
            revision=revision,
        )
    except ModelCardError as err:
        raise PushError(str(err)) from None
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="mora-push-") as staging:
        staging = Path(staging)
        for path in files:  # linked, not copied: weights can be many GB
            _link_or_copy(path.resolve(), staging / path.name)
        card.save(staging / "README.md")
        logger.info(
            "uploading %d files to %s%s: %s",
            len(files) + 1,
            repo_id,
            f"@{revision}" if revision else "",
            ", ".join(sorted([p.name for p in files] + ["README.md"])),
        )
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            repo_type="model",
            revision=revision,
            commit_message=commit_message or f"Upload MoRA checkpoint ({Path(folder).name})",
            create_pr=create_pr,
        )
    logger.info("pushed %s to %s", folder, getattr(info, "commit_url", info))
    return info


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source, target)
    except OSError:
        shutil.copy2(source, target)
