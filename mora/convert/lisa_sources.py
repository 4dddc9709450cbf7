"""Where ``mora convert lisa`` reads its inputs: a folder, file or Hub id (`resolve_source`), LISA's flat
``config.json`` and tokenizer, the CLIP tower of ``--clip`` and the SAM of ``--sam``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, PreTrainedTokenizerBase, SamConfig, SamModel

from mora.convert.checkpoint_io import ConversionError, load_state_dict
from mora.convert.sam import convert_sam_state_dict


def resolve_source(source: str | Path, what: str, patterns: list[str]) -> Path:
    """A local folder/file, or a Hub id (``owner/name``) resolved with huggingface_hub (its offline cache
    when ``HF_HUB_OFFLINE=1``)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    text = str(source)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ConversionError(
            f"{what} {text} does not exist (expected a folder, a file or a Hub id owner/name)"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=text, allow_patterns=patterns))
    except Exception as err:  # noqa: BLE001 - offline, missing repo, auth: one line for the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(
            f"{what} {text}: not a local path, and the Hugging Face Hub gave no snapshot "
            f"(offline without a cached copy, or no such repository): {first}"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def source_folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def read_source_config(folder: Path) -> dict:
    """LISA's flat LLaVA-v1 ``config.json`` (Llama fields + ``mm_*``), or {} when absent."""
    file = folder / "config.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ConversionError(f"{file}: not valid JSON ({err})") from None


def load_source_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved beside the weights (LISA: LLaMA's ``tokenizer.model`` + added tokens)."""
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - missing files, missing sentencepiece: one line
        hint = ""
        if "sentencepiece" in str(err).lower() or "protobuf" in str(err).lower():
            hint = " (LLaMA's tokenizer.model needs the sentencepiece package: pip install 'mora[convert]')"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(
            f"{folder}: cannot load the tokenizer saved beside the weights{hint}: {first}"
        ) from None


def load_clip(source: str | Path) -> tuple[dict[str, torch.Tensor], CLIPVisionConfig]:
    """Tensors and vision config of a transformers ``CLIPVisionModel`` or ``CLIPModel`` folder / Hub id."""
    path = resolve_source(source, "--clip", ["*.json", "*.safetensors"])
    folder = source_folder(path)
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    if not has_weights and not Path(source).exists():
        path = folder = resolve_source(source, "--clip", ["*.json", "*.bin"])
    try:
        config = CLIPVisionConfig.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001
        raise ConversionError(f"--clip {source}: no CLIP config.json ({err})") from None
    if config.model_type != "clip_vision_model":
        raise ConversionError(f"--clip {source}: config is {config.model_type!r}, not a CLIP (vision) model")
    state = load_state_dict(path)
    if not any(
        k.startswith("vision_model.") for k in state
    ):  # transformers 5 saves CLIPVisionModel unprefixed
        state = {f"vision_model.{k}": v for k, v in state.items()}
    return state, config


def load_sam(source: str | Path) -> tuple[SamConfig, dict[str, torch.Tensor]]:
    """``(SamConfig, SamModel state)`` of ``--sam``: Meta's segment-anything checkpoint (``sam_vit_h_4b8939.pth``)
    or a transformers ``SamModel`` folder / Hub id (``facebook/sam-vit-huge``)."""
    path = resolve_source(source, "--sam", ["*.json", "*.safetensors"])
    if not (path.is_dir() and (path / "config.json").is_file()):
        try:
            return convert_sam_state_dict(load_state_dict(path))
        except ConversionError as err:
            raise ConversionError(f"--sam {source}: {err}") from None
    try:  # transformers' own loader: it knows the key names of every version that saved the folder
        model, info = SamModel.from_pretrained(str(path), output_loading_info=True)
    except Exception as err:  # noqa: BLE001
        raise ConversionError(
            f"--sam {source}: not a transformers SamModel folder ({_first_line(err)})"
        ) from None
    problems = {
        k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    if problems:
        raise ConversionError(f"--sam {source}: the SamModel folder does not load cleanly: {problems}")
    return model.config, {k: v.detach() for k, v in model.state_dict().items()}
