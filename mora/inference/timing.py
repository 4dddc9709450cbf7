"""Wall time of `predict_video` per stage: exclusive seconds accumulated with ``time.perf_counter``.

A stage entered inside another pauses the outer one, so the stages never count the same second twice and
their sum is at most the total. On CPU every call is synchronous and the split is exact; on an accelerator
the time of queued kernels lands in the stage that waits for them (the masks are copied to the host inside
the ``mask_engine`` stage).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

# decode: video frames decoded (key frames, the mask-engine sweeps, the overlay pass);
# backbone: key frames encoded by the vision backbone, each question answered by the language model;
# mask_engine: frames resized for the engine, image encoder, decoder or memory tracker, masks at full size;
# write: RLE, mask PNGs, prediction.json; render: overlay frames composed and encoded (MP4, GIF).
STAGES = ("decode", "backbone", "mask_engine", "write", "render")

T = TypeVar("T")


class StageTimer:
    """``with timer("decode"): ...`` adds the block's wall time (less nested stages') to ``seconds["decode"]``."""

    def __init__(self, stages: Iterable[str] = STAGES) -> None:
        self.seconds = dict.fromkeys(stages, 0.0)
        self._stack: list[str] = []
        self._since = 0.0
        self._start = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if stage not in self.seconds:
            raise KeyError(f"unknown stage {stage!r}; one of {tuple(self.seconds)}")
        self._switch(stage)
        try:
            yield
        finally:
            self._switch(None)

    def _switch(self, enter: str | None) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._since
        if enter is None:
            self._stack.pop()
        else:
            self._stack.append(enter)
        self._since = now

    def iterate(self, stage: str, items: Iterable[T]) -> Iterator[T]:
        """``items`` with the time spent producing each one (not the caller's time between them) in ``stage``."""
        iterator = iter(items)
        while True:
            with self(stage):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item

    def summary(self) -> dict[str, float]:
        """Seconds per stage and ``total`` (since the timer was made), rounded to microseconds."""
        total = time.perf_counter() - self._start
        return {**{k: round(v, 6) for k, v in self.seconds.items()}, "total": round(total, 6)}


_END = object()
