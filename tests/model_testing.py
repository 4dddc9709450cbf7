"""Shared builders for the model tests: tiny models, processors and synthetic clips (no downloads)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from mora.constants import ANSWER_NO_SPAN, ANSWER_WITH_SPAN
from mora.model.modeling_mora import MoRAForVideoGrounding
from mora.presets import tiny
from mora.processing.processing_mora import MoRAProcessor
from mora.processing.tokenizer import build_tiny_tokenizer

NUM_FRAMES = 6
# The paper's model on the tiny sizes: Video-ChatGPT tokens + motion tokens, motion dense prompts, the token
# span head; none of the tiny default's video adapter, grounding reader, video dense prompt, pixel mask path.
PAPER_STYLE = dict(
    video_adapter_layers=0,
    grounding_reader_layers=0,
    use_video_dense_prompt=False,
    pixel_mask_dim=0,
    span_head="tokens",
    use_motion_tokens=True,
    use_motion_dense_prompt=True,
    video_pooling="videochatgpt",
)


@functools.cache
def tiny_config(backbone: str = "llava", engine: str = "sam2"):
    return tiny(backbone, engine, num_frames=NUM_FRAMES)


def tiny_model(
    backbone: str = "llava", engine: str = "sam2", seed: int = 0, **overrides
) -> MoRAForVideoGrounding:
    config = tiny_config(backbone, engine)
    torch.manual_seed(seed)
    model = MoRAForVideoGrounding(config.__class__.from_dict({**config.to_dict(), **overrides}))
    model.processor = MoRAProcessor.from_config(model.config, build_tiny_tokenizer())
    return model


def moving_square_clip(num_frames: int = NUM_FRAMES, height: int = 40, width: int = 56, seed: int = 0):
    """A noisy clip with a bright square moving right; returns frames [T,H,W,3] uint8 and masks [T,H,W]."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (num_frames, height, width, 3), dtype=np.uint8)
    masks = np.zeros((num_frames, height, width), dtype=bool)
    for t in range(num_frames):
        x = 4 + 6 * t
        masks[t, 10:22, x : x + 12] = True
        frames[t][masks[t]] = (230, 40, 40)
    return frames, masks


def training_batch(processor: MoRAProcessor, *, seed: int = 0):
    """Two samples: one with a span ([LOC]) and one without; both with mask targets."""
    clip_a, masks_a = moving_square_clip(seed=seed)
    clip_b, masks_b = moving_square_clip(seed=seed + 1)
    valid_b = np.array([True, True, False, True, True, False])
    return processor(
        [clip_a, clip_b],
        ["Which object moves right?", "What is the red square doing?"],
        answers=[ANSWER_WITH_SPAN, ANSWER_NO_SPAN],
        masks=[masks_a, masks_b],
        mask_valid=[np.ones(NUM_FRAMES, dtype=bool), valid_b],
        spans=[(1, 3), None],
    )
