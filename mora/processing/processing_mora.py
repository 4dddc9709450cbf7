"""`MoRAProcessor`: videos + questions (+ answers, masks, spans) -> the keyword arguments of the model.

It owns the chat template of the backbone family (LLaVA v1 / Vicuna "USER: ... ASSISTANT:" or Qwen
ChatML), expands the ``<video>`` / ``<motion>`` placeholders to exactly the visual token counts of
`VisualLayout` (Qwen3-VL: one timestamped group per temporal patch), tokenizes with ``[SEG]``/``[LOC]`` as
special tokens, and prepares frames twice: for the backbone (its mean/std, square resize) and for the mask
engine (its canvas, mean/std) with image_ops. Qwen batches also carry ``mm_token_type_ids`` (2 at the
video placeholders, 0 elsewhere), as transformers' Qwen processors give them. ``question_mask`` marks the
tokens of the question's own words (1; the pixel mask path's motion match reads their mean state,
``config.pixel_mask_motion_match``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from mora.configuration_mora import MoRAConfig
from mora.constants import IGNORE_INDEX, LOC_TOKEN, SEG_TOKEN, SPATIOTEMPORAL_INSTRUCTION
from mora.processing.chat import PromptTemplate
from mora.processing.image_ops import (
    ResizeGeometry,
    frames_to_tensor,
    mask_engine_frame_settings,
    masks_to_canvas,
)
from mora.processing.tokenizer import MoRATokenIds, add_mora_tokens
from mora.processing.visual_layout import VisualLayout, mm_token_type_ids
from mora.utils.io import write_json_atomic

PROCESSOR_CONFIG_NAME = "mora_processor_config.json"


class EncodedSample(NamedTuple):
    """One sample's token ids ``[L]``, labels ``[L]`` (IGNORE_INDEX outside the answer) and question flags
    ``[L]`` (True on the tokens of the question's own words)."""

    ids: list[int]
    labels: list[int]
    question: list[bool]


class MoRAProcessor:
    """Turns raw clips and text into model inputs.

    Args:
        tokenizer: any transformers tokenizer; MoRA's special tokens are added when missing.
        layout: visual token geometry (from the model config).
        chat_template: ``"vicuna_v1"`` or ``"chatml"``.
        backbone_image_size, backbone_resize_mode, backbone_image_mean, backbone_image_std: backbone frames.
        mask_image_size, mask_resize_mode, mask_image_mean, mask_image_std: mask-engine frames.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        layout: VisualLayout,
        chat_template: str,
        backbone_image_size: int,
        backbone_resize_mode: str,
        backbone_image_mean: Sequence[float],
        backbone_image_std: Sequence[float],
        mask_image_size: int,
        mask_resize_mode: str,
        mask_image_mean: Sequence[float],
        mask_image_std: Sequence[float],
    ) -> None:
        self.tokenizer = tokenizer
        self.token_ids: MoRATokenIds = add_mora_tokens(tokenizer)
        self.layout = layout
        self.template = PromptTemplate(chat_template, tokenizer)
        self.backbone_image_size = int(backbone_image_size)
        self.backbone_resize_mode = backbone_resize_mode
        self.backbone_image_mean = tuple(float(v) for v in backbone_image_mean)
        self.backbone_image_std = tuple(float(v) for v in backbone_image_std)
        self.mask_image_size = int(mask_image_size)
        self.mask_resize_mode = mask_resize_mode
        self.mask_image_mean = tuple(float(v) for v in mask_image_mean)
        self.mask_image_std = tuple(float(v) for v in mask_image_std)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: MoRAConfig, tokenizer: PreTrainedTokenizerBase) -> MoRAProcessor:
        """A processor matching a `MoRAConfig` (mask-engine frame settings derived from its engine config)."""
        mask_frames = mask_engine_frame_settings(config.mask_engine_config)
        return cls(
            tokenizer,
            layout=VisualLayout.from_config(config),
            chat_template=config.chat_template,
            backbone_image_size=config.backbone_image_size,
            backbone_resize_mode=config.backbone_resize_mode,
            backbone_image_mean=config.backbone_image_mean,
            backbone_image_std=config.backbone_image_std,
            mask_image_size=mask_frames.image_size,
            mask_resize_mode=mask_frames.resize_mode,
            mask_image_mean=mask_frames.image_mean,
            mask_image_std=mask_frames.image_std,
        )

    def apply_token_ids(self, config: MoRAConfig) -> None:
        """Copy the tokenizer's special-token ids into a `MoRAConfig` (and its backbone config)."""
        ids = self.token_ids
        config.set_token_ids(
            seg=ids.seg,
            loc=ids.loc,
            video=ids.video,
            motion=ids.motion,
            pad=ids.pad,
            eos=self.template.eos_id,
        )

    def settings(self) -> dict[str, Any]:
        return {
            "processor_class": type(self).__name__,
            "layout": self.layout.to_dict(),
            "chat_template": self.template.name,
            "backbone_image_size": self.backbone_image_size,
            "backbone_resize_mode": self.backbone_resize_mode,
            "backbone_image_mean": list(self.backbone_image_mean),
            "backbone_image_std": list(self.backbone_image_std),
            "mask_image_size": self.mask_image_size,
            "mask_resize_mode": self.mask_resize_mode,
            "mask_image_mean": list(self.mask_image_mean),
            "mask_image_std": list(self.mask_image_std),
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the tokenizer files and ``mora_processor_config.json`` into ``save_directory``."""
        os.makedirs(save_directory, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        write_json_atomic(Path(save_directory) / PROCESSOR_CONFIG_NAME, self.settings())

    @staticmethod
    def is_saved_in(path: str | os.PathLike) -> bool:
        return (Path(path) / PROCESSOR_CONFIG_NAME).is_file()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> MoRAProcessor:
        """Load a processor written by `save_pretrained` (local folder)."""
        config_file = Path(path) / PROCESSOR_CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"no {PROCESSOR_CONFIG_NAME} in {path}: not a MoRA processor folder")
        settings = json.loads(config_file.read_text())
        settings.pop("processor_class", None)
        layout = VisualLayout(**settings.pop("layout"))
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        return cls(tokenizer, layout=layout, **settings)

    # ------------------------------------------------------------------ frames
    def prepare_frames(self, video) -> tuple[torch.Tensor, torch.Tensor, ResizeGeometry]:
        """Backbone frames ``[T, 3, I, I]``, mask-engine frames ``[T, 3, S, S]`` and the engine geometry."""
        pixel_values, _ = frames_to_tensor(
            video,
            self.backbone_image_size,
            self.backbone_resize_mode,
            self.backbone_image_mean,
            self.backbone_image_std,
        )
        mask_pixel_values, geometry = frames_to_tensor(
            video, self.mask_image_size, self.mask_resize_mode, self.mask_image_mean, self.mask_image_std
        )
        return pixel_values, mask_pixel_values, geometry

    def prepare_mask_frames(self, video) -> tuple[torch.Tensor, ResizeGeometry]:
        """Mask-engine frames ``[T, 3, S, S]`` and their geometry only (each frame independently of the others,
        so a video prepared in chunks gives the same values as in one piece)."""
        return frames_to_tensor(
            video, self.mask_image_size, self.mask_resize_mode, self.mask_image_mean, self.mask_image_std
        )

    # ------------------------------------------------------------------ text
    def encode_sample(self, question: str, answer: str | None, num_frames: int) -> EncodedSample:
        """Token ids, labels (the answer only; no answer = inference) and question flags of one sample."""
        n_motion = self.layout.num_motion_tokens(num_frames)
        video = self.template.video_ids(self.layout.video_segments(num_frames), self.token_ids.video)
        visual = video + [self.token_ids.motion] * n_motion
        prompt_ids, flags = self.template.prompt_ids(visual, question.strip(), SPATIOTEMPORAL_INSTRUCTION)
        if answer is None:
            return EncodedSample(prompt_ids, [IGNORE_INDEX] * len(prompt_ids), flags)
        answer_ids = self.template.answer_ids(answer)
        return EncodedSample(
            prompt_ids + answer_ids,
            [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
            flags + [False] * len(answer_ids),
        )

    def __call__(
        self,
        videos: Sequence[Any],
        questions: Sequence[str],
        answers: Sequence[str] | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
        mask_valid: Sequence[np.ndarray] | None = None,
        spans: Sequence[tuple[int, int] | None] | None = None,
        video_index: Sequence[int] | None = None,
        llm_videos: Sequence[Any | None] | None = None,
    ) -> BatchFeature:
        """A right-padded batch with exactly the keyword arguments of ``MoRAForVideoGrounding.forward``.

        ``videos`` holds V clips and ``questions`` (and answers, masks, mask_valid, spans) B questions;
        ``video_index`` gives each question's clip (default: one clip per question, V = B). Each clip's
        frames are prepared once, and the model encodes each once for all of its questions.
        """
        B = len(questions)
        if video_index is None:
            _check_lengths(B, videos=videos)
            video_index = list(range(B))
        else:
            video_index = [int(i) for i in video_index]
            _check_lengths(B, video_index=video_index)
            bad = [i for i in video_index if not 0 <= i < len(videos)]
            if bad:
                raise ValueError(f"video_index {bad} outside the {len(videos)} videos given")
        _check_lengths(B, answers=answers, masks=masks, mask_valid=mask_valid, spans=spans)
        frames = [self.prepare_frames(v) for v in videos]
        if llm_videos is not None:
            if len(llm_videos) != len(videos):
                raise ValueError(f"llm_videos has {len(llm_videos)} entries for {len(videos)} videos")
            frames = [
                f if v is None else (self.prepare_frames(v)[0], *f[1:])
                for f, v in zip(frames, llm_videos, strict=True)
            ]
        T = frames[0][0].shape[0]
        if any(f[0].shape[0] != T for f in frames):
            raise ValueError(
                f"all videos of a batch need the same frame count, got {[f[0].shape[0] for f in frames]}"
            )
        encoded = [
            self.encode_sample(q, None if answers is None else answers[i], T) for i, q in enumerate(questions)
        ]
        data = self._pad(encoded)
        if self.layout.backbone_family != "llava":
            data["mm_token_type_ids"] = mm_token_type_ids(data["input_ids"], self.token_ids.video)
        data["pixel_values"] = torch.stack([f[0] for f in frames])  # [V, T, 3, I, I]
        data["mask_pixel_values"] = torch.stack([f[1] for f in frames])  # [V, T, 3, S, S]
        if len(videos) != B or video_index != list(range(B)):
            data["video_index"] = torch.tensor(video_index, dtype=torch.long)  # [B]
        if answers is None:
            data.pop("labels")
        if masks is not None:
            self._check_answer_tokens(answers, SEG_TOKEN, [True] * B, "mask target")
            data.update(self._mask_targets(masks, mask_valid, [frames[i][2] for i in video_index], T))
        if spans is not None:
            self._check_answer_tokens(answers, LOC_TOKEN, [s is not None for s in spans], "span")
            data.update(_span_targets(spans, T))
        return BatchFeature(data=data)

    def _pad(self, encoded: list[EncodedSample]) -> dict[str, torch.Tensor]:
        length = max(len(e.ids) for e in encoded)
        input_ids = torch.full((len(encoded), length), self.token_ids.pad, dtype=torch.long)
        labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(encoded), length), dtype=torch.long)
        question = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, e in enumerate(encoded):
            input_ids[row, : len(e.ids)] = torch.tensor(e.ids)
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
            attention[row, : len(e.ids)] = 1
            question[row, : len(e.question)] = torch.tensor(e.question, dtype=torch.long)
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "question_mask": question,
        }

    def _check_answer_tokens(self, answers, token: str, needed: list[bool], what: str) -> None:
        if answers is None:
            raise ValueError(f"{what}s need answers containing {token}")
        for i, (answer, need) in enumerate(zip(answers, needed)):
            count = answer.count(token)
            if need and count != 1:
                raise ValueError(f"answer {i} has {count} {token} tokens but 1 {what}: {answer!r}")

    def _mask_targets(self, masks, mask_valid, geometries, T: int) -> dict[str, torch.Tensor]:
        S = self.mask_image_size
        gt = torch.zeros(len(masks), T, S, S)
        valid = torch.zeros(len(masks), T, dtype=torch.bool)
        for i, (mask, geometry) in enumerate(zip(masks, geometries)):
            if mask is None:
                continue
            mask = np.asarray(mask)
            if mask.shape[0] != T:
                raise ValueError(f"masks[{i}] has {mask.shape[0]} frames but video {i} has {T}")
            gt[i] = masks_to_canvas(mask.astype(bool), geometry)
            row = np.ones(T, dtype=bool) if mask_valid is None else np.asarray(mask_valid[i], dtype=bool)
            if row.shape != (T,):
                raise ValueError(f"mask_valid[{i}] has shape {row.shape}, expected ({T},)")
            valid[i] = torch.from_numpy(row)
        return {"gt_masks": gt, "mask_valid": valid}

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids: Sequence[int]) -> str:
        """Answer text, keeping ``[SEG]``/``[LOC]`` and dropping other special tokens."""
        return self.template.decode(token_ids)


def _span_targets(spans, T: int) -> dict[str, torch.Tensor]:
    labels = torch.zeros(len(spans), T)
    valid = torch.zeros(len(spans), dtype=torch.bool)
    for i, span in enumerate(spans):
        if span is None:
            continue
        first, last = int(span[0]), int(span[1])
        if not 0 <= first <= last < T:
            raise ValueError(f"spans[{i}] = {span} is not an inclusive range inside 0..{T - 1}")
        labels[i, first : last + 1] = 1.0
        valid[i] = True
    return {"span_labels": labels, "span_valid": valid}


def _check_lengths(batch: int, **fields: Sequence | None) -> None:
    for name, values in fields.items():
        if values is not None and len(values) != batch:
            raise ValueError(f"{name} has {len(values)} entries but there are {batch} questions")
