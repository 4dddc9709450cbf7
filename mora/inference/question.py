"""One question's state while `predict_video` streams the video: its grounding on the key clip, its scores
and span on every output frame, and how its masks are made (per frame, SAM2 memory, or empty)."""

from __future__ import annotations

import numpy as np
import torch

from mora.inference.writers import QuestionOutput
from mora.model.inference import (
    ClipGrounding,
    _window_prompts,
    clip_masks,
    gated_frames,
    key_frame,
    span_from_scores,
)
from mora.model.mask_engines.sam2_stream import StreamingTracker


class QuestionState:
    """Masks of one question for output positions ``0 .. n-1`` (key frames at ``key_positions``).

    ``kind``: ``"empty"`` (no ``[SEG]``, or gated with no frame in the span), ``"memory"`` (SAM2 propagation
    from the key frame with the highest in-span score) or ``"per_frame"``. ``lo .. hi``: the positions whose
    masks can be non-empty (the span when gating).
    """

    def __init__(
        self,
        model,
        grounding: ClipGrounding,
        key_positions: list[int],
        num_positions: int,
        *,
        gate: bool,
        propagation: str,
        output: QuestionOutput,
    ) -> None:
        self.grounding, self.output = grounding, output
        self.key_positions = key_positions
        g, n = grounding, num_positions
        positions = np.arange(n)
        self.scores = (
            np.interp(positions, key_positions, g.scores).astype(np.float32)
            if g.located
            else np.full(n, np.nan, np.float32)
        )
        self.span = span_from_scores(self.scores, model.config.span_threshold) if g.located else None
        gated = gate and self.span is not None
        self.lo, self.hi = self.span if gated else (0, n - 1)
        if not g.segmented or (gate and g.located and self.span is None):
            self.kind = "empty"
        elif propagation == "memory" and model.config.mask_engine_kind == "sam2":
            self.kind = "memory"
        else:
            self.kind = "per_frame"
        self.key_masks: dict[int, np.ndarray] = {}
        self.tracker: StreamingTracker | None = None
        if self.kind == "per_frame":
            pred = clip_masks(model, g, gate=gate, propagation="per_frame")
            self.key_masks = {p: pred.masks[r] for r, p in enumerate(key_positions)}
        elif self.kind == "memory":
            self._start_memory(model, gate, n)
        self.forward_positions_set = self.forward_positions()
        self.reverse_positions_set = self.reverse_positions()

    def _start_memory(self, model, gate: bool, n: int) -> None:
        g, clip = self.grounding, self.grounding.clip
        row = key_frame(g.scores, gated_frames(clip.num_frames, g.span if gate else None))
        pix = clip.mask_pixel_values.to(model.device)
        _, dense = _window_prompts(model, pix, [row], clip.features, clip.engine_cache)
        engine = model.mask_engine
        with torch.inference_mode():
            feats = engine.encode(pix[row : row + 1])
            key_logits = engine.decode(feats, g.prompts[row][None], dense)[0]
        self.key = self.key_positions[row]
        self.key_logits = key_logits
        self.tracker = StreamingTracker(engine, n, self.key, feats, key_logits)
        window = self.tracker.window
        self.forward_end = n - 1 if self.hi == n - 1 else min(n - 1, max(self.hi, self.key + window))
        self.reverse_start = self.lo

    def ready_mask(self, position: int) -> bool:
        """Whether the mask of ``position`` is known without decoding the frame (key frame, outside the span)."""
        if self.kind == "empty" or not self.lo <= position <= self.hi:
            return True
        if self.kind == "per_frame":
            return position in self.key_masks
        return position == self.key

    def known_logits_or_mask(self, position: int):
        """The mask of a `ready_mask` position: ``("mask", [H, W])`` or ``("logits", [S, S])``."""
        if self.kind == "per_frame" and position in self.key_masks:
            return "mask", self.key_masks[position]
        if self.kind == "memory" and position == self.key:
            return "logits", self.key_logits
        return "empty", None

    def forward_positions(self) -> set[int]:
        """Positions this question decodes in the forward sweep."""
        if self.kind == "per_frame":
            return {p for p in range(self.lo, self.hi + 1) if p not in self.key_masks}
        if self.kind == "memory":
            return set(range(self.key + 1, self.forward_end + 1))
        return set()

    def reverse_positions(self) -> set[int]:
        """Positions this question tracks in the backward sweep (SAM2 memory only)."""
        return set(range(self.reverse_start, self.key)) if self.kind == "memory" else set()

    def in_span(self, position: int) -> bool:
        return self.lo <= position <= self.hi
