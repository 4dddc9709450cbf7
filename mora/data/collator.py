"""Batching: ``TrainingExample`` s -> exactly the keyword arguments of ``MoRAForVideoGrounding.forward``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mora.data.schema import TrainingExample


class MoRACollator:
    """``collate(examples) -> BatchFeature`` through ``MoRAProcessor`` (chat template, tokens, resizing)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, examples: Sequence[TrainingExample]) -> Any:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        for example in examples:
            if not isinstance(example, TrainingExample):
                raise TypeError(f"MoRACollator expects TrainingExample items, got {type(example).__name__}")
        return self.processor(
            videos=[e.frames for e in examples],
            questions=[e.question for e in examples],
            answers=[e.answer for e in examples],
            masks=[e.masks for e in examples],
            mask_valid=[e.mask_valid for e in examples],
            spans=[e.span for e in examples],
        )
