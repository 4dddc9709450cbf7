"""Reading original checkpoints, renaming their keys strictly, and writing converted folders atomically.

Shared by every ``mora convert`` sub-command:

* ``load_state_dict``: ``.pth``/``.pt``/``.bin`` (``torch.load(weights_only=True)``; Meta's
  ``{"model": state_dict}`` wrapper is unwrapped), ``.safetensors``, a ``*.index.json`` of shards, or a
  folder holding one of those.
* ``remap_state_dict``: ordered regex rules rename every source key; each source key is consumed by a
  rule or matched by the ignore list, and the result must hold exactly the target model's keys and shapes.
  Anything else is a ``ConversionError`` naming the keys.
* ``resolve_dtype`` / ``save_converted``: fp16/bf16 kept or cast; the folder is written under a temporary
  name and renamed into place, so no half-written folder looks complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import PreTrainedModel

from mora.utils.io import atomic_path
from mora.utils.logging import get_logger

logger = get_logger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_FOLDER_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
_WRAPPER_KEYS = ("model", "state_dict")
_MAX_LISTED = 12  # keys named in one error message


class ConversionError(ValueError):
    """A checkpoint that cannot be converted (unreadable file, unknown/missing keys, wrong shapes)."""


StateDict = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------- loading
def load_state_dict(path: str | Path) -> StateDict:
    """All tensors of a checkpoint file, shard index or folder, on CPU, keys as stored."""
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path} does not exist")
    if path.is_dir():
        return load_state_dict(_folder_checkpoint(path))
    name = path.name
    if name.endswith(".index.json"):
        return _load_index(path)
    if name.endswith(".safetensors"):
        return _load_safetensors(path)
    if name.endswith(_TORCH_SUFFIXES):
        return _load_torch(path)
    raise ConversionError(
        f"{path}: unsupported checkpoint type (expected .pth, .pt, .bin, .safetensors or .index.json)"
    )


def _folder_checkpoint(folder: Path) -> Path:
    for name in _FOLDER_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ConversionError(f"{folder} holds none of {', '.join(_FOLDER_FILES)}")


def _load_torch(path: Path) -> StateDict:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as err:  # noqa: BLE001 - pickle, zip and EOF errors all mean "not a readable checkpoint"
        raise ConversionError(f"{path}: cannot read the checkpoint ({_one_line(err)})") from None
    return _tensors_only(_unwrap(obj, path), path)


def _load_safetensors(path: Path) -> StateDict:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as err:
        raise ConversionError(f"{path}: cannot read the safetensors file ({err})") from None


def _load_index(path: Path) -> StateDict:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConversionError(f"{path}: not a shard index with a 'weight_map' ({err})") from None
    state: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise ConversionError(f"{path}: shard {shard} is missing")
        tensors = load_state_dict(shard_path)
        repeated = sorted(set(tensors) & set(state))
        if repeated:
            raise ConversionError(f"{shard_path}: keys already read from another shard: {_names(repeated)}")
        state.update(tensors)
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise ConversionError(
            f"{path}: keys listed in the index but absent from their shards: {_names(absent)}"
        )
    return state


def _one_line(err: Exception) -> str:
    """A one-line reason: torch's weights-only refusal spans many lines of advice."""
    if "Weights only load failed" in str(err):
        return (
            "not a weights-only torch checkpoint: it holds pickled objects other than tensors, or is damaged"
        )
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0]}" if first else type(err).__name__


def _unwrap(obj: object, path: Path) -> object:
    """Meta's checkpoints hold ``{"model": state_dict}``; training checkpoints sometimes ``state_dict``."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and not torch.is_tensor(inner):
                logger.info("%s: using the state dict under %r", path.name, key)
                return inner
    return obj


def _tensors_only(obj: object, path: Path) -> StateDict:
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a state dict, found {type(obj).__name__}")
    bad = sorted(str(k) for k, v in obj.items() if not (isinstance(k, str) and torch.is_tensor(v)))
    if bad:
        raise ConversionError(f"{path}: entries that are not named tensors: {_names(bad)}")
    return dict(obj)


# -------------------------------------------------------------------------------------------- renaming
Target = str | Callable[[re.Match[str]], str | tuple[str, ...]]


@dataclass(frozen=True)
class Rule:
    """Source keys fully matching ``pattern`` become ``target``: a ``re`` template (``\\1``) or a function of
    the match returning one target key or several (the same tensor under each, e.g. a shared embedding)."""

    pattern: str
    target: Target

    def apply(self, key: str) -> tuple[str, ...] | None:
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return None
        if callable(self.target):
            out = self.target(match)
            return (out,) if isinstance(out, str) else tuple(out)
        return (match.expand(self.target),)


def mlp_layer_name(index: int, depth: int) -> str:
    """transformers' name of layer ``index`` of SAM's ``depth``-layer MLP: proj_in, layers.{i-1}, proj_out."""
    if not 0 <= index < depth:
        raise ConversionError(f"MLP layer {index} is outside a {depth}-layer MLP")
    if index == 0:
        return "proj_in"
    if index == depth - 1:
        return "proj_out"
    return f"layers.{index - 1}"


def remap_state_dict(
    source: Mapping[str, torch.Tensor],
    rules: Sequence[Rule],
    expected: Mapping[str, torch.Size],
    *,
    ignore: Iterable[str] = (),
    what: str = "checkpoint",
) -> StateDict:
    """Rename ``source`` by the first matching rule per key; check the result against ``expected`` shapes.

    Raises ``ConversionError`` naming the keys when a source key matches neither a rule nor ``ignore``
    (regexes), when two source keys land on one target, or when target keys are missing, unexpected or
    of the wrong shape.
    """
    ignore = tuple(ignore)
    out: StateDict = {}
    origin: dict[str, str] = {}
    unknown, clashes, ignored = [], [], []
    for key, tensor in source.items():
        targets = next((t for t in (rule.apply(key) for rule in rules) if t is not None), None)
        if targets is None:
            if any(re.fullmatch(p, key) for p in ignore):
                ignored.append(key)
            else:
                unknown.append(key)
            continue
        for copy, target in enumerate(targets):
            if target in out:
                clashes.append(f"{origin[target]} and {key} -> {target}")
            # a tensor used twice is stored twice: safetensors refuses shared storage outside declared ties
            out[target], origin[target] = (tensor.clone() if copy else tensor), key
    if ignored:
        logger.info("%s: ignored %d keys on the ignore list: %s", what, len(ignored), _names(ignored))
    problems = []
    if unknown:
        problems.append(f"unknown keys (no rule, not ignored): {_names(unknown)}")
    if clashes:
        problems.append(f"keys mapped twice: {_names(clashes)}")
    missing = sorted(set(expected) - set(out))
    if missing:
        problems.append(f"missing keys (converted names): {_names(missing)}")
    extra = sorted(set(out) - set(expected))
    if extra:
        problems.append(f"keys the target model lacks: {_names(f'{origin[k]} -> {k}' for k in extra)}")
    wrong = [
        f"{origin[k]} {list(out[k].shape)} vs {k} {list(expected[k])}"
        for k in sorted(set(out) & set(expected))
        if tuple(out[k].shape) != tuple(expected[k])
    ]
    if wrong:
        problems.append(f"shape mismatches: {_names(wrong)}")
    if problems:
        raise ConversionError(f"{what}: " + "; ".join(problems))
    return out


def _names(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


# ---------------------------------------------------------------------------------------- dtype, saving
def resolve_dtype(state: Mapping[str, torch.Tensor], requested: str = "keep") -> torch.dtype:
    """The output dtype: ``requested`` (fp32/bf16/fp16), or the checkpoint's floating dtype for ``keep``."""
    if requested != "keep":
        if requested not in DTYPES:
            raise ConversionError(f"dtype must be keep, {', '.join(DTYPES)}; got {requested!r}")
        return DTYPES[requested]
    found = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(found) != 1:
        raise ConversionError(
            f"the checkpoint mixes floating dtypes {sorted(map(str, found))}; choose one with --dtype"
        )
    return found.pop()


def cast_floating(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
    """Floating tensors cast to ``dtype`` (integer/bool tensors unchanged)."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def expected_shapes(model_class: type[PreTrainedModel], config) -> dict[str, torch.Size]:
    """State-dict shapes of ``model_class(config)``, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = model_class(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def save_converted(
    model_class: type[PreTrainedModel],
    config,
    state: Mapping[str, torch.Tensor],
    out: str | Path,
    dtype: torch.dtype,
) -> Path:
    """Write ``model_class(config)`` with ``state`` as a ``from_pretrained`` folder at ``out``, atomically.

    The model is built on the meta device and the tensors are assigned, so no random initialisation runs
    and memory stays at one copy of the weights.
    """
    out = Path(out)
    config.dtype = dtype
    with torch.device("meta"):
        model = model_class(config)
    model.load_state_dict(cast_floating(state, dtype), strict=True, assign=True)
    model.eval()
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
    logger.info(
        "wrote %s (%s, %s) to %s", model_class.__name__, str(dtype).removeprefix("torch."), _size(state), out
    )
    return out


def _size(state: Mapping[str, torch.Tensor]) -> str:
    return f"{sum(t.numel() for t in state.values()) / 1e6:.1f}M values"


def check_out_folder(out: str | Path, overwrite: bool) -> Path:
    """``out`` as a Path; an existing file, or a non-empty folder without ``overwrite``, is an error."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"{out} exists and is not empty (pass --overwrite to replace it)")
    return out
