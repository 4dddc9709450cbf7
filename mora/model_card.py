"""The model card (``README.md``) uploaded with a MoRA checkpoint: YAML metadata + a description generated
from the checkpoint folder itself.

Read from the folder: ``config.json`` (architecture), ``conversion.json`` (written by ``mora convert``: the
converted source and CLIP tower), and, for a training export (``runs/<name>/export``), the run's resolved
``../config.yaml`` (training data). Given by the caller: base models, training data text, the evaluator's
``scores.json`` (rendered as a table beside its empty-mask baseline), license.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

LIBRARY_NAME = "mora"
PIPELINE_TAG = "video-text-to-text"
TAGS = ["mora", "video-grounding", "reasoning-video-segmentation", "referring-video-object-segmentation"]
DEFAULT_LICENSE = "apache-2.0"
_ENGINE_NAMES = {"sam": "SAM (v1)", "sam2": "SAM2", "sam2_video": "SAM2"}


class ModelCardError(ValueError):
    """The folder or scores cannot be described (missing config.json, malformed scores.json)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelCardError(f"{path}: cannot read it as JSON ({err})") from None


def read_scores(path: str | Path) -> dict[str, Any]:
    """A mora evaluator's ``scores.json``: ``overall`` (+ categories) and ``baseline_empty``."""
    scores = _read_json(Path(path))
    if not isinstance(scores.get("overall"), dict) or "JF" not in scores["overall"]:
        raise ModelCardError(f"{path}: no overall J&F: not a scores.json written by mora's evaluators")
    if not isinstance(scores.get("baseline_empty"), dict):
        raise ModelCardError(f"{path}: no baseline_empty (the empty-mask baseline every table states)")
    return scores


def scores_table(scores: dict[str, Any]) -> str:
    """Markdown table: J&F, J, F, n per category and overall beside the empty-mask J&F (x100)."""
    base = scores["baseline_empty"]
    rows = [k for k in scores if k not in ("baseline_empty", "overall") and isinstance(scores[k], dict)]
    rows.append("overall")
    temporal = any("tIoU" in scores[k] for k in rows)
    head = ["", "J&F", "J", "F", "n", "empty-mask J&F", "J&F - empty"] + (["tIoU"] if temporal else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pct(value: Any) -> str:
        return (
            "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"
        )

    for k in rows:
        s, b = scores[k], base.get(k, {})
        delta = s["JF"] - b["JF"] if "JF" in b else None
        cells = [f"**{k}**" if k == "overall" else k, pct(s["JF"]), pct(s.get("J")), pct(s.get("F"))]
        cells += [str(s.get("n", "-")), pct(b.get("JF")), "-" if delta is None else f"{100 * delta:+.2f}"]
        if temporal:
            cells.append(pct(s.get("tIoU")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _architecture(config: dict[str, Any]) -> list[str]:
    vlm = config.get("vlm_config", {})
    text, vision = vlm.get("text_config", {}), vlm.get("vision_config", {})
    engine = config.get("mask_engine_config", {})
    family = config.get("backbone_family", "?")
    lines = [
        f"- Backbone: {family} ({vlm.get('model_type', '?')}): language model {text.get('model_type', '?')} "
        f"with {text.get('num_hidden_layers', '?')} layers, hidden size {text.get('hidden_size', '?')}, "
        f"vocabulary {text.get('vocab_size', '?')}; vision tower {vision.get('model_type', '?')} "
        f"(width {vision.get('hidden_size', '?')}, {config.get('backbone_image_size', '?')} px frames).",
        f"- Mask engine: {_ENGINE_NAMES.get(engine.get('model_type'), engine.get('model_type', '?'))}, "
        f"{config.get('propagation', '?')} propagation.",
        f"- `[SEG]`: the {'state before the token' if config.get('seg_hidden_offset') == -1 else 'token state'} "
        "-> a Linear-ReLU-Linear projector -> the mask decoder's sparse prompt; `[LOC]`: the "
        f"`{config.get('span_head', 'tokens')}` span head scores every frame for the motion span.",
        f"- Frames seen by the language model: {config.get('num_frames', '?')} "
        f"({config.get('video_pooling', '?')} pooling); chat template `{config.get('chat_template', '?')}`.",
    ]
    extras = [
        name
        for name, on in (
            ("motion tokens", config.get("use_motion_tokens")),
            ("dense motion prompt", config.get("use_motion_dense_prompt")),
            ("video adapter", config.get("video_adapter_layers")),
            ("grounding reader", config.get("grounding_reader_layers")),
            ("video dense prompt", config.get("use_video_dense_prompt")),
            ("pixel mask path", config.get("pixel_mask_dim")),
        )
        if on
    ]
    if extras:
        lines.append(f"- mora's additions switched on: {', '.join(extras)}.")
    if config.get("lora"):
        lines.append(f"- LoRA layers kept in the weights: {config['lora']}.")
    return lines


def _run_datasets(folder: Path) -> list[dict[str, Any]]:
    """The datasets of the training run whose export ``folder`` is (``../config.yaml``), or []."""
    run_config = folder.parent / "config.yaml"
    if folder.name != "export" or not run_config.is_file():
        return []
    try:
        data = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
        return [d["spec"] for d in data.get("data", {}).get("datasets", []) if "spec" in d]
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        return []


def _dataset_line(spec: dict[str, Any]) -> str:
    where = spec.get("meta") or spec.get("split")
    return (
        f"- `{spec.get('root', '?')}` ({spec.get('format', '?')} format{', ' + str(where) if where else ''})"
    )


def build_model_card(
    folder: str | Path,
    repo_id: str,
    *,
    scores: dict[str, Any] | None = None,
    scores_name: str = "evaluation",
    base_models: Sequence[str] = (),
    training_data: str | None = None,
    datasets: Sequence[str] = (),
    license: str | None = None,
    revision: str | None = None,
) -> ModelCard:
    """The card of the checkpoint in ``folder`` for ``repo_id`` (see the module docstring)."""
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if config.get("model_type") != "mora":
        raise ModelCardError(
            f"{folder}/config.json is not a MoRA config (model_type {config.get('model_type')!r})"
        )
    provenance = _read_json(folder / "conversion.json") if (folder / "conversion.json").is_file() else {}
    bases = list(base_models)
    for key in ("checkpoint", "clip", "sam"):
        value = provenance.get(key)
        if value and not Path(value).exists() and value.count("/") == 1 and value not in bases:
            bases.append(value)  # a Hub id the weights were converted from
    run_datasets = _run_datasets(folder)
    dataset_ids = list(dict.fromkeys(datasets))  # only what the caller names: a format is not a dataset
    data = ModelCardData(
        license=license or DEFAULT_LICENSE,
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        base_model=bases or None,
        datasets=dataset_ids or None,
        tags=TAGS,
    )
    body = [f"# {repo_id.split('/')[-1]}", ""]
    body += [
        "A MoRA model (Motion-Grounded Reasoning Assistant, GroundMoRe, CVPR 2025) in the "
        "`mora` library's format: ask a motion question about a video and get the answer "
        "object's masks on the frames where the motion happens, the time span and a short answer.",
        "",
        "## Architecture",
        "",
        *_architecture(config),
        "",
        "## Base weights",
        "",
    ]
    if provenance:
        body.append(
            f"Converted by `{provenance.get('converter', 'mora convert')}` from `{provenance.get('checkpoint')}`"
            + (f" (CLIP tower: `{provenance['clip']}`)" if provenance.get("clip") else "")
            + (f" (SAM replaced by `{provenance['sam']}`)" if provenance.get("sam") else "")
            + f", preset `{provenance.get('preset', '?')}`, {provenance.get('dtype', '?')}."
        )
        for name, why in provenance.get("fresh_modules", {}).items():
            body.append(f"- `{name}` has no source weights and was initialised fresh: {why}.")
    body += [f"- [{b}](https://huggingface.co/{b})" for b in bases]
    if not provenance and not bases:
        body.append("No pretrained base weights are recorded (a model trained from scratch, or not stated).")
    body += ["", "## Training data", ""]
    if training_data:
        body.append(training_data)
    body += [_dataset_line(d) for d in run_datasets]
    if not training_data and not run_datasets:
        body.append(
            "Not trained by mora after conversion: the weights are the base model's."
            if provenance
            else "Not stated."
        )
    body += ["", "## Evaluation", ""]
    if scores is not None:
        body += [
            f"{scores_name} (GroundMoRe protocol: J&F over the sampled frames, ground truth empty outside the "
            "motion span; the empty-mask baseline predicts nothing on every frame):",
            "",
            scores_table(scores),
        ]
    else:
        body.append("No scores were given for this upload.")
    rev = f', revision="{revision}"' if revision and revision != "main" else ""
    body += [
        "",
        "## Usage",
        "",
        "```python",
        "import mora",
        "",
        f'model = mora.load_model("{repo_id}"{rev})  # never runs code from the repository',
        'pred = model.predict(frames, "Which object starts moving after the red square stops?")',
        "pred.masks  # [T, H, W] bool, empty outside the predicted span",
        "pred.span  # (first_frame, last_frame) or None",
        "pred.text",
        "```",
        "",
        "## License",
        "",
        f"`{data.license}` for this upload. Weights converted or fine-tuned from the base models above are also "
        "subject to those models' licenses.",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
