"""SAM (v1) mask engine: transformers' ``SamModel`` driven by prompt embeddings, frame by frame.

This is LISA's and the original MoRA's setup: the projected ``[SEG]`` state is the only sparse prompt,
the dense prompt is the no-mask embedding, and the single-mask output (token 0) is used. There is no
memory: ``propagate`` decodes every frame with the same prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import SamConfig, SamModel
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mora.model.mask_engines.base import FrameFeatures, MaskEngine, eval_mode

_PROPAGATE_CHUNK = 8  # frames encoded and decoded together in ``propagate``


class SamMaskEngine(MaskEngine):
    """SAM v1 mask engine (see the module docstring).

    Args:
        config: a ``SamConfig`` (e.g. ``sam_vit_h_config()``).
        model: an already built ``SamModel`` for ``config`` (e.g. loaded with weights).
    """

    model_class = SamModel
    resize_mode = "longest_pad"  # SAM resizes the longest side to S and pads bottom/right

    def __init__(self, config: SamConfig, *, model: SamModel | None = None) -> None:
        super().__init__()
        if not isinstance(config, SamConfig):
            raise TypeError(f"expected a SamConfig, got {type(config).__name__}")
        _check_sam_config(config)
        self.model = model if model is not None else SamModel(config)
        self.prompt_dim = int(config.prompt_encoder_config.hidden_size)
        self.image_size = int(config.vision_config.image_size)
        self.embedding_size = self.image_size // int(config.vision_config.patch_size)
        self.image_mean = tuple(float(v) for v in IMAGENET_DEFAULT_MEAN)
        self.image_std = tuple(float(v) for v in IMAGENET_DEFAULT_STD)

    def encode(self, pixel_values: torch.Tensor) -> FrameFeatures:
        """Image embeddings ``[BT, C, h, w]`` (h = S/16 for real SAM) for ``pixel_values`` ``[BT, 3, S, S]``."""
        pixel_values = self._check_pixel_values(pixel_values)
        image_embeds = self.model.vision_encoder(pixel_values).last_hidden_state  # [BT, C, h, w]
        return FrameFeatures(maps=(image_embeds,))

    def decode(
        self,
        features: FrameFeatures,
        prompt_embeds: torch.Tensor,
        dense_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``[BT, S, S]`` float32 from ``features`` (BT frames) and ``prompt_embeds`` ``[BT, P, C]``.

        ``dense_embeds`` ``[BT, C, h, w]`` (optional) is added to the no-mask dense embedding.

        Gradients flow into ``prompt_embeds`` and every mask-decoder parameter (the IoU head, whose
        output the logits do not use, is tied in with weight 0 for distributed training).
        """
        prompts, image_pe, dense = self._decoder_inputs(features, prompt_embeds, dense_embeds)
        low_res, iou_scores = self.model.mask_decoder(
            image_embeddings=features.maps[-1],  # [BT, C, h, w]
            image_positional_embeddings=image_pe,
            sparse_prompt_embeddings=prompts.unsqueeze(1),  # [BT, 1, P, C]: one mask per frame
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        size = (self.image_size, self.image_size)
        logits = F.interpolate(low_res[:, 0].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
        return logits + 0.0 * iou_scores.sum()  # [BT, S, S]

    @torch.no_grad()
    def propagate(
        self,
        pixel_values: torch.Tensor,
        prompt_embeds: torch.Tensor,
        key_frames: Sequence[int],
        dense_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode every frame of ``[T, 3, S, S]`` with the prompt ``[P, C]``; ``[T, S, S]`` float32 logits.

        SAM has no memory, so ``key_frames`` (validated like SAM2's) do not change the result; every
        row of ``dense_embeds`` ``[T, C, h, w]`` (optional) is used.
        """
        pixel_values = self._check_pixel_values(pixel_values)
        prompts = self._check_prompts(prompt_embeds, None)
        self._check_key_frames(key_frames, pixel_values.shape[0])
        dense = self._check_dense(dense_embeds, pixel_values.shape[0])
        dense_chunks = (
            dense.split(_PROPAGATE_CHUNK)
            if dense is not None
            else [None] * len(pixel_values.split(_PROPAGATE_CHUNK))
        )
        chunks = []
        with eval_mode(self.model):
            for frames, extra in zip(pixel_values.split(_PROPAGATE_CHUNK), dense_chunks):
                features = self.encode(frames)
                chunks.append(self.decode(features, prompts.expand(frames.shape[0], -1, -1), extra))
        return torch.cat(chunks)


def _check_sam_config(config: SamConfig) -> None:
    """Consistency checks that would otherwise surface as shape errors deep inside the model."""
    vision, prompt = config.vision_config, config.prompt_encoder_config
    if vision.image_size != prompt.image_size or vision.patch_size != prompt.patch_size:
        raise ValueError(
            f"SAM vision ({vision.image_size}/{vision.patch_size}) and prompt encoder "
            f"({prompt.image_size}/{prompt.patch_size}) image_size/patch_size disagree"
        )
    dims = {
        "vision_config.output_channels": vision.output_channels,
        "vision_config.num_pos_feats * 2": 2 * vision.num_pos_feats,
        "prompt_encoder_config.hidden_size": prompt.hidden_size,
        "mask_decoder_config.hidden_size": config.mask_decoder_config.hidden_size,
    }
    if len(set(dims.values())) != 1:
        raise ValueError(f"SAM config hidden sizes disagree: {dims}")
