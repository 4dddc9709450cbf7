"""Per-frame masks of the frames between the key frames (SAM v1, and SAM2 with ``propagation="per_frame"``).

The model reasons over the K key frames (`mora.model.inference.encode_clip`): the backbone, the video
adapter, the language model, the span head and the clip-level parts of the mask prompts see those frames.
Any other frame is decoded as if it took the place of its nearest key frame in that clip: the mask decoder
reads the frame's own image embedding with the ``[SEG]`` prompt of that key frame, and where the model has
them, the dense prompts (the video grid of that key frame; motion differences between the frame and that
key frame's neighbours in the clip) and the pixel mask path (the frame's own pixels, its differences to the
key frame's neighbours, that key frame's grid). On a key frame itself this is exactly the clip computation.
"""

from __future__ import annotations

import numpy as np
import torch

from mora.model.inference import ClipGrounding, EncodedClip
from mora.model.mask_engines.base import FrameFeatures


def nearest_rows(positions: list[int], key_positions: list[int]) -> list[int]:
    """For each output position, the clip row of the nearest key frame (the earlier one on a tie)."""
    keys = np.asarray(key_positions)
    where = np.searchsorted(keys, positions)
    rows = []
    for p, w in zip(positions, where):
        before, after = max(0, w - 1), min(len(keys) - 1, w)
        rows.append(int(before if abs(p - keys[before]) <= abs(keys[after] - p) else after))
    return rows


class KeyClipContext:
    """What every question shares when decoding non-key frames: the key clip's engine frames and grid."""

    def __init__(self, model, clip: EncodedClip) -> None:
        self.model = model
        self.pix = clip.mask_pixel_values.to(model.device)  # [K, 3, S, S]
        self.grid = clip.features.grid  # [1, K, h', w', d]
        self.K = self.pix.shape[0]
        self.stride = model.motion_stride(self.K)
        self._embeds: torch.Tensor | None = None

    def key_embeds(self) -> torch.Tensor:
        """``[K, C, h, w]`` engine image embeddings of the key frames (for the motion dense prompt)."""
        if self._embeds is None:
            self._embeds = self.model.engine_features(self.pix).maps[-1]
        return self._embeds

    def _partners(self, rows: list[int], own: torch.Tensor, bank: torch.Tensor, stride: int) -> torch.Tensor:
        """``[n, 3, ...]``: (key row - stride, the frame, key row + stride) with the frame itself standing in
        where the clip has no such key frame (a zero difference, as at the clip's ends)."""
        prev = [bank[r - stride] if r - stride >= 0 else own[i] for i, r in enumerate(rows)]
        nxt = [bank[r + stride] if r + stride < self.K else own[i] for i, r in enumerate(rows)]
        return torch.stack([torch.stack(prev), own, torch.stack(nxt)], dim=1)

    def dense_prompts(self, feats: FrameFeatures, pix: torch.Tensor, rows: list[int]) -> torch.Tensor | None:
        """``[n, C, h, w]`` dense prompts of frames ``pix [n, 3, S, S]`` standing in for key ``rows`` (or None)."""
        model = self.model
        dense = None
        if model.motion_dense_prompt is not None:
            embeds = self._partners(rows, feats.maps[-1], self.key_embeds(), self.stride)  # [n, 3, C, h, w]
            frames = self._partners(rows, pix, self.pix, self.stride)  # [n, 3, 3, S, S]
            dense = model.motion_dense_prompt(embeds, frames, 1)[:, 1]
        if model.video_dense_prompt is not None:
            extra = model.video_dense_prompt(self.grid[:, rows]).to(feats.maps[-1].dtype)  # [n, C, h, w]
            dense = extra if dense is None else dense + extra
        return dense

    def pixel_inputs(self, pix: torch.Tensor, rows: list[int]) -> torch.Tensor | None:
        """``[1, n, c, S, S]`` inputs of the pixel mask path (None when the model has none)."""
        path = self.model.pixel_mask_path
        if path is None:
            return None
        if path.input_channels == 3:
            return pix.unsqueeze(0)
        trio = self._partners(rows, pix, self.pix, 1)  # [n, 3 (prev, frame, next), 3, S, S]
        return torch.cat([pix, pix - trio[:, 0], trio[:, 2] - pix], dim=1).unsqueeze(0)


@torch.inference_mode()
def decode_frames(
    ctx: KeyClipContext,
    groundings: list[ClipGrounding],
    feats: FrameFeatures,
    pix: torch.Tensor,
    rows: list[int],
) -> list[torch.Tensor]:
    """``[n, S, S]`` logits of frames ``pix [n, 3, S, S]`` (engine features ``feats``) standing in for the key
    frames ``rows``, for each question (the frames are encoded once for all questions)."""
    model = ctx.model
    dense = ctx.dense_prompts(feats, pix, rows)
    inputs = ctx.pixel_inputs(pix, rows)
    pixel = None
    if inputs is not None:
        seg = torch.cat([g.seg_state for g in groundings])  # [B, D]
        question = None
        if groundings[0].question_state is not None:
            question = torch.cat([g.question_state for g in groundings])  # [B, D]
        index = torch.zeros(len(groundings), dtype=torch.long)
        pixel = model.pixel_mask_path(inputs, seg, ctx.grid[:, rows], index, question)  # [B, n, S, S]
    out = []
    for b, g in enumerate(groundings):
        logits = model.mask_engine.decode(feats, g.prompts[rows], dense)
        out.append(logits if pixel is None else logits + pixel[b].to(logits.device))
    return out
