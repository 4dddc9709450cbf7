"""Batching: ``TrainingExample`` s -> exactly the keyword arguments of ``MoRAForVideoGrounding.forward``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mora.data.schema import TrainingExample


class MoRACollator:
    """``collate(items) -> BatchFeature`` through ``MoRAProcessor`` (chat template, tokens, resizing).

    An item is a ``TrainingExample`` or a group of them (the questions of one video, drawn by a
    ``video_groups`` dataset). Examples that share one ``frames`` array are one video of the batch:
    its frames are prepared and encoded once, and ``video_index`` maps each question to it.
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
        slot: dict[int, int] = {}  # id of a frames array -> its video number
        for example in examples:
            slot.setdefault(id(example.frames), len(videos))
            if slot[id(example.frames)] == len(videos):
                videos.append(example.frames)
        return self.processor(
            videos=videos,
            questions=[e.question for e in examples],
            answers=[e.answer for e in examples],
            masks=[e.masks for e in examples],
            mask_valid=[e.mask_valid for e in examples],
            spans=[e.span for e in examples],
            video_index=[slot[id(e.frames)] for e in examples],
        )
