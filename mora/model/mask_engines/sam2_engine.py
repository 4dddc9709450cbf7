"""SAM2 mask engine: transformers' ``Sam2VideoModel`` driven by prompt embeddings, with memory propagation.

One ``Sam2VideoModel`` serves both paths, so a real SAM2.1 checkpoint (``facebook/sam2.1-hiera-*``,
key layout ``vision_encoder.*``, ``mask_decoder.*``, ``memory_attention.*`` ...) loads unchanged:

* ``decode``: the prompt embeddings go straight into the mask decoder as sparse prompts (no points),
  with the no-mask dense embedding and the no-memory embedding, as SAM2 does on an initial
  conditioning frame; the single-mask output token is used.
* ``propagate``: the prompt is decoded on the key frames, the binarised key-frame masks are added to a
  fresh ``Sam2VideoInferenceSession`` as mask inputs, and SAM2's memory attention tracks the object
  forward and backward over the clip. Key frames keep their directly decoded logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Sam2Config, Sam2VideoConfig, Sam2VideoInferenceSession, Sam2VideoModel
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mora.model.mask_engines.base import FrameFeatures, MaskEngine, eval_mode

_OBJECT_ID = 1  # the single tracked object in a propagation session


def as_sam2_video_config(config: Sam2VideoConfig | Sam2Config) -> Sam2VideoConfig:
    """A ``Sam2VideoConfig``; an image-only ``Sam2Config`` gets SAM2.1's default memory settings."""
    if isinstance(config, Sam2VideoConfig):
        return config
    if not isinstance(config, Sam2Config):
        raise TypeError(f"expected a Sam2VideoConfig or Sam2Config, got {type(config).__name__}")
    vision = config.vision_config
    hidden = vision.fpn_hidden_size
    return Sam2VideoConfig(
        vision_config=vision.to_dict(),
        prompt_encoder_config=_sub_config_kwargs(config.prompt_encoder_config),
        mask_decoder_config=_sub_config_kwargs(config.mask_decoder_config),
        initializer_range=config.initializer_range,
        image_size=config.prompt_encoder_config.image_size,
        memory_attention_hidden_size=hidden,
        memory_encoder_hidden_size=hidden,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_attention_rope_feat_sizes=list(vision.backbone_feature_sizes[-1]),
    )


class Sam2MaskEngine(MaskEngine):
    """SAM2 / SAM2.1 mask engine (see the module docstring).

    Args:
        config: a ``Sam2VideoConfig`` (or an image ``Sam2Config``, converted with SAM2.1 memory defaults).
        model: an already built ``Sam2VideoModel`` for ``config`` (e.g. loaded with weights).
    """

    model_class = Sam2VideoModel
    resize_mode = "squash"  # SAM2 resizes frames to S x S without keeping the aspect ratio

    def __init__(self, config: Sam2VideoConfig | Sam2Config, *, model: Sam2VideoModel | None = None) -> None:
        super().__init__()
        config = as_sam2_video_config(config)
        _check_sam2_config(config)
        self.model = model if model is not None else Sam2VideoModel(config)
        self.prompt_dim = int(config.mask_decoder_config.hidden_size)
        self.image_size = _side(config.image_size)
        self.embedding_size = self.image_size // _side(config.prompt_encoder_config.patch_size)
        self.image_mean = tuple(float(v) for v in IMAGENET_DEFAULT_MEAN)
        self.image_std = tuple(float(v) for v in IMAGENET_DEFAULT_STD)

    def encode(self, pixel_values: torch.Tensor) -> FrameFeatures:
        """Image-encoder (Hiera + FPN) features for ``pixel_values`` ``[BT, 3, S, S]``.

        Returns ``FrameFeatures`` with FPN maps ``[BT, C, 4h, 4w]``, ``[BT, C, 2h, 2w]``, ``[BT, C, h, w]``
        (h = S/16 for real SAM2) and their positional encodings. Only image-encoder modules run here,
        so callers may run ``encode`` under ``torch.no_grad`` when the encoder is frozen: the decoder's
        projections of the high-resolution maps (``conv_s0``/``conv_s1``) are applied in ``decode``.
        """
        pixel_values = self._check_pixel_values(pixel_values)
        outputs = self.model.vision_encoder(pixel_values, return_dict=True)
        return FrameFeatures(
            maps=tuple(outputs.fpn_hidden_states), positions=tuple(outputs.fpn_position_encoding)
        )

    def decode(
        self,
        features: FrameFeatures,
        prompt_embeds: torch.Tensor,
        dense_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``[BT, S, S]`` float32 from ``features`` (BT frames) and ``prompt_embeds`` ``[BT, P, C]``.

        ``dense_embeds`` ``[BT, C, h, w]`` (optional) is added to the no-mask dense embedding.

        Gradients flow into ``prompt_embeds`` and every mask-decoder parameter: the IoU and
        object-score heads, whose outputs the logits do not use, are tied in with weight 0 so that
        distributed training sees every trainable parameter in the graph.
        """
        logits, iou_scores, object_scores = self._decode_heads(features, prompt_embeds, dense_embeds)
        return logits + 0.0 * (iou_scores.sum() + object_scores.sum())

    def _decode_heads(
        self, features: FrameFeatures, prompt_embeds: torch.Tensor, dense_embeds: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``[BT, S, S]`` float32, IoU scores ``[BT, 1, 1]`` and object-score logits ``[BT, 1, 1]``."""
        prompts, image_pe, dense = self._decoder_inputs(features, prompt_embeds, dense_embeds)
        model = self.model
        high_res = self._project_high_res(features.maps[:-1])
        image_embeds = features.maps[-1] + model.no_memory_embedding.view(1, -1, 1, 1)  # [BT, C, h, w]
        with _first_mask_token(model.mask_decoder):
            low_res, iou_scores, _, object_scores = model.mask_decoder(
                image_embeddings=image_embeds,
                image_positional_embeddings=image_pe,
                sparse_prompt_embeddings=prompts.unsqueeze(1),  # [BT, 1, P, C]: one mask per frame
                dense_prompt_embeddings=dense,
                multimask_output=False,
                high_resolution_features=high_res,
            )
        logits = self._upsample(low_res[:, 0])  # [BT, 1, 4h, 4w] -> [BT, S, S]
        return logits, iou_scores, object_scores

    @torch.no_grad()
    def propagate(
        self,
        pixel_values: torch.Tensor,
        prompt_embeds: torch.Tensor,
        key_frames: Sequence[int],
        dense_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Track one prompted object through a clip with SAM2 memory (inference only, no gradients).

        Args:
            pixel_values: ``[T, 3, S, S]`` normalised frames.
            prompt_embeds: ``[P, C]`` prompt for the object.
            key_frames: frame indices where the prompt is decoded directly.
            dense_embeds: optional ``[T, C, h, w]`` dense prompts per clip frame; the key-frame rows are
                added to the key frames' no-mask dense embedding (memory tracking is unchanged).

        Returns:
            ``[T, S, S]`` float32 logits: decoded on key frames, propagated elsewhere (frames the
            tracker judges object-free get SAM2's large negative no-object score).
        """
        pixel_values = self._check_pixel_values(pixel_values)
        prompts = self._check_prompts(prompt_embeds, None)
        keys = self._check_key_frames(key_frames, pixel_values.shape[0])
        dense = self._check_dense(dense_embeds, pixel_values.shape[0])
        key_dense = dense[keys] if dense is not None else None  # [k, C, h, w]
        with eval_mode(self.model):
            features = self.encode(pixel_values)
            key_logits = self.decode(
                features.select(keys), prompts.expand(len(keys), -1, -1), key_dense
            )  # [k, S, S]
            session = self._new_session(pixel_values, features)
            tracked = self._track(session, keys, key_logits)  # frame index -> [1, 1, 4h, 4w]
        logits = torch.empty(pixel_values.shape[0], self.image_size, self.image_size, device=self.device)
        logits[keys] = key_logits
        for frame_idx, low_res in tracked.items():
            logits[frame_idx] = self._upsample(low_res)[0]
        return logits

    def _new_session(self, pixel_values: torch.Tensor, features: FrameFeatures) -> Sam2VideoInferenceSession:
        """A per-call inference session whose feature cache already holds every frame's features."""
        num_frames = pixel_values.shape[0]
        session = Sam2VideoInferenceSession(
            video=pixel_values,
            video_height=self.image_size,
            video_width=self.image_size,
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=self.dtype,  # explicit: the string default fails on CPU
            max_vision_features_cache_size=num_frames,
        )
        for frame_idx in range(num_frames):
            frame = features.select(slice(frame_idx, frame_idx + 1))
            maps = [*self._project_high_res(frame.maps[:-1]), frame.maps[-1]]  # as get_image_features
            session.cache.cache_vision_features(
                frame_idx,
                {
                    "vision_feats": [m.flatten(2).permute(2, 0, 1) for m in maps],  # [HW, 1, C_l]
                    "vision_pos_embeds": [p.flatten(2).permute(2, 0, 1) for p in frame.positions],
                },
            )
        return session

    def _track(
        self, session: Sam2VideoInferenceSession, keys: list[int], key_logits: torch.Tensor
    ) -> dict[int, torch.Tensor]:
        """Condition on the key-frame masks, propagate forward then backward; low-res logits of other frames."""
        obj_idx = session.obj_id_to_idx(_OBJECT_ID)
        for frame_idx, logits in zip(keys, key_logits):
            session.add_mask_inputs(obj_idx, frame_idx, (logits > 0)[None, None])  # [1, 1, S, S]
            session.obj_with_new_inputs = [_OBJECT_ID]
            self.model(session, frame_idx=frame_idx)
        tracked: dict[int, torch.Tensor] = {}
        key_set = set(keys)
        for reverse in (False, True):
            for output in self.model.propagate_in_video_iterator(
                session, start_frame_idx=keys[0], reverse=reverse
            ):
                if output.frame_idx not in key_set:
                    tracked[output.frame_idx] = output.pred_masks  # [1, 1, 4h, 4w]
        return tracked

    def _project_high_res(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder's projections of the two high-resolution FPN maps: ``[BT, C/8, 4h, 4w]``, ``[BT, C/4, 2h, 2w]``."""
        decoder = self.model.mask_decoder
        return [decoder.conv_s0(maps[0]), decoder.conv_s1(maps[1])]

    def _upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """``[BT, 1, h, w]`` low-resolution logits -> ``[BT, S, S]`` float32 (bilinear)."""
        size = (self.image_size, self.image_size)
        return F.interpolate(low_res.float(), size=size, mode="bilinear", align_corners=False)[:, 0]


@contextlib.contextmanager
def _first_mask_token(mask_decoder: nn.Module) -> Iterator[None]:
    """Use the single-mask token in eval mode too (no stability-based fallback to the multimask tokens).

    The [SEG] prompt is trained through token 0; SAM2's eval-time fallback would switch to the
    multimask tokens, which are not trained, whenever token 0's logits look unstable.
    """
    saved = mask_decoder.dynamic_multimask_via_stability
    mask_decoder.dynamic_multimask_via_stability = False
    try:
        yield
    finally:
        mask_decoder.dynamic_multimask_via_stability = saved


def _sub_config_kwargs(config) -> dict:
    values = config.to_dict()
    for key in ("model_type", "transformers_version"):
        values.pop(key, None)
    return values


def _side(size: int | Sequence[int]) -> int:
    if isinstance(size, int):
        return size
    height, width = size
    if height != width:
        raise ValueError(f"mask engines need a square input, got image_size {list(size)}")
    return int(height)


def _check_sam2_config(config: Sam2VideoConfig) -> None:
    """Consistency checks that would otherwise surface as shape errors deep inside the model."""
    vision = config.vision_config
    side = _side(config.image_size)
    sizes = {
        "image_size": side,
        "prompt_encoder_config.image_size": _side(config.prompt_encoder_config.image_size),
        "vision_config.backbone_config.image_size": _side(vision.backbone_config.image_size),
    }
    if len(set(sizes.values())) != 1:
        raise ValueError(f"SAM2 config image sizes disagree: {sizes}")
    top = list(vision.backbone_feature_sizes[-1])
    patch = _side(config.prompt_encoder_config.patch_size)
    if [side // patch] * 2 != top:
        raise ValueError(
            f"prompt encoder grid {side}/{patch} does not match the top backbone feature size {top}"
        )
    if list(config.memory_attention_rope_feat_sizes) != top:
        raise ValueError(
            f"memory_attention_rope_feat_sizes {config.memory_attention_rope_feat_sizes} must equal the top "
            f"backbone feature size {top}"
        )
    dims = {
        "vision_config.fpn_hidden_size": vision.fpn_hidden_size,
        "prompt_encoder_config.hidden_size": config.prompt_encoder_config.hidden_size,
        "mask_decoder_config.hidden_size": config.mask_decoder_config.hidden_size,
        "memory_attention_hidden_size": config.memory_attention_hidden_size,
    }
    if len(set(dims.values())) != 1:
        raise ValueError(f"SAM2 config hidden sizes disagree: {dims}")
