"""Batching: ``TrainingExample`` s -> exactly the keyword arguments of ``MoRAForVideoGrounding.forward``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mora.data.schema import TrainingExample


class MoRACollator:
    """``collate(items) -> BatchFeature`` through ``MoRAProcessor`` (chat template, tokens, resizing).

    An item is a ``TrainingExample`` or a group of them (the questions of one video, drawn by a
    ``video_groups`` dataset). Examples that share one ``frames`` array (and ``llm_frames``) are one video
    of the batch: its frames are prepared and encoded once, and ``video_index`` maps each question to it.
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, items: Sequence[TrainingExample | Sequence[TrainingExample]]) -> Any:
        examples = [e for item in items for e in (item if isinstance(item, (list, tuple)) else [item])]
        if not examples:
            raise ValueError("cannot collate an empty batch")
        for example in examples:
            if not isinstance(example, TrainingExample):
                raise TypeError(f"MoRACollator expects TrainingExample items, got {type(example).__name__}")
        videos: list[Any] = []
        llm_videos: list[Any] = []
        slot: dict[tuple[int, int], int] = {}  # ids of (frames, llm_frames) -> its video number
        keys = [(id(e.frames), id(e.llm_frames)) for e in examples]
        for key, example in zip(keys, examples, strict=True):
            slot.setdefault(key, len(videos))
            if slot[key] == len(videos):
                videos.append(example.frames)
                llm_videos.append(example.llm_frames)
        return self.processor(
            videos=videos,
            llm_videos=llm_videos if any(v is not None for v in llm_videos) else None,
            questions=[e.question for e in examples],
            answers=[e.answer for e in examples],
            masks=[e.masks for e in examples],
            mask_valid=[e.mask_valid for e in examples],
            spans=[e.span for e in examples],
            video_index=[slot[key] for key in keys],
        )
