"""The mask-engine contract: encode frames once, decode masks from prompt embeddings, propagate over a clip.

A mask engine wraps a transformers SAM-family model. The language model's ``[SEG]`` hidden state,
projected to ``prompt_dim`` (C), is fed to the mask decoder as sparse prompt embeddings (no points,
no boxes, the no-mask dense embedding), as LISA does with SAM. Optional dense prompt embeddings on the
image-embedding grid (``dense_shape``) are added to the no-mask dense embedding (e.g. motion features).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FrameFeatures:
    """Per-frame image features produced by ``MaskEngine.encode``; pass them back to ``decode``.

    ``maps`` holds image-encoder outputs ``[BT, C_l, h_l, w_l]`` from high to low resolution: the last one
    is the image embedding the mask decoder attends to (``[BT, C, h, w]``), the others are SAM2's
    high-resolution FPN maps. No mask-decoder parameter is involved in producing them, so ``encode``
    may run under ``torch.no_grad`` when the image encoder is frozen. ``positions`` holds the matching
    positional encodings where the engine has them (SAM2), else it is empty.
    """

    maps: tuple[torch.Tensor, ...]
    positions: tuple[torch.Tensor, ...] = ()

    def __len__(self) -> int:
        return self.maps[-1].shape[0]

    def select(self, index: torch.Tensor | Sequence[int] | slice) -> FrameFeatures:
        """Features of a subset of frames (index along BT), e.g. the frames that carry a mask target."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.maps[-1].device)
        return FrameFeatures(
            maps=tuple(m[index] for m in self.maps),
            positions=tuple(p[index] for p in self.positions),
        )


class MaskEngine(nn.Module, ABC):
    """A SAM-family mask decoder driven by prompt embeddings.

    Attributes:
        prompt_dim: C, the size of one prompt embedding (256 for real SAM/SAM2).
        image_size: S, the square input side.
        image_mean, image_std: RGB normalisation constants in 0..1 units (for ``image_ops``).
        resize_mode: how frames are fitted to the canvas in the original preprocessing
            (``"longest_pad"`` for SAM, ``"squash"`` for SAM2).
        embedding_size: h = w, the side of the image-embedding grid the decoder attends to (S/16 for
            real SAM/SAM2); its channels are ``prompt_dim``.
    """

    prompt_dim: int
    image_size: int
    embedding_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    resize_mode: str

    # The wrapped transformers model (``SamModel`` / ``Sam2VideoModel``); both name their parts
    # ``vision_encoder`` and ``mask_decoder``.
    model: nn.Module
    model_class: type

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs):
        """Wrap ``cls.model_class.from_pretrained(name_or_path, **kwargs)`` (e.g. facebook/sam2.1-hiera-large,
        facebook/sam-vit-huge)."""
        model = cls.model_class.from_pretrained(name_or_path, **kwargs)
        return cls(model.config, model=model)

    @property
    def config(self):
        return self.model.config

    @property
    def all_tied_weights_keys(self) -> dict[str, str]:
        """The wrapped model's tied parameters (``{target: source}``, e.g. SAM's prompt-encoder positional
        embedding, tied to the image one), under this module's names. ``PreTrainedModel.post_init`` of the
        MoRA model collects tied keys from its direct children only, so without this the tie would be lost:
        the target is not saved (it shares storage with the source) and would be initialised at random
        when the checkpoint is loaded."""
        keys = getattr(self.model, "all_tied_weights_keys", None) or {}
        return {f"model.{target}": f"model.{source}" for target, source in keys.items()}

    def image_encoder_modules(self) -> list[nn.Module]:
        """Modules frozen by ``freeze_image_encoder`` (the image encoder)."""
        return [self.model.vision_encoder]

    def mask_decoder_modules(self) -> list[nn.Module]:
        return [self.model.mask_decoder]

    @abstractmethod
    def encode(self, pixel_values: torch.Tensor) -> FrameFeatures:
        """Image features for ``pixel_values`` ``[BT, 3, S, S]`` (normalised, on any device/dtype)."""

    @abstractmethod
    def decode(
        self,
        features: FrameFeatures,
        prompt_embeds: torch.Tensor,
        dense_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``[BT, S, S]`` float32 for frames ``features`` prompted by ``prompt_embeds`` ``[BT, P, C]``.

        ``dense_embeds`` ``[BT, C, h, w]`` (``dense_shape``), when given, is added to the no-mask dense
        prompt embedding of each frame.
        """

    @abstractmethod
    def propagate(
        self,
        pixel_values: torch.Tensor,
        prompt_embeds: torch.Tensor,
        key_frames: Sequence[int],
        dense_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``[T, S, S]`` float32 for a clip ``[T, 3, S, S]`` from one prompt ``[P, C]``.

        ``dense_embeds`` ``[T, C, h, w]``, when given, holds a dense prompt per clip frame; the rows of the
        frames decoded from the prompt (key frames for SAM2, every frame for SAM) are used.
        """

    # ------------------------------------------------------------------ shared helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def dense_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)``: the per-frame shape of ``dense_embeds`` (the image-embedding grid)."""
        return (self.prompt_dim, self.embedding_size, self.embedding_size)

    def freeze_image_encoder(self) -> None:
        """Stop gradients into the image encoder (the default training setup)."""
        for module in self.image_encoder_modules():
            module.requires_grad_(False)

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Validate ``[BT, 3, S, S]`` and move to the engine's device and dtype."""
        if not torch.is_tensor(pixel_values) or not pixel_values.is_floating_point():
            raise TypeError("pixel_values must be a floating-point torch.Tensor")
        expected = (3, self.image_size, self.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must be [BT, {expected[0]}, {expected[1]}, {expected[2]}], "
                f"got {tuple(pixel_values.shape)}"
            )
        if pixel_values.shape[0] == 0:
            raise ValueError("pixel_values holds no frames")
        return pixel_values.to(device=self.device, dtype=self.dtype)

    def _check_prompts(self, prompt_embeds: torch.Tensor, num_frames: int | None) -> torch.Tensor:
        """Validate ``[BT, P, C]`` (or ``[P, C]`` when ``num_frames`` is None) and cast to the engine dtype."""
        if not torch.is_tensor(prompt_embeds) or not prompt_embeds.is_floating_point():
            raise TypeError("prompt_embeds must be a floating-point torch.Tensor")
        if num_frames is None:
            if prompt_embeds.ndim != 2:
                raise ValueError(f"prompt_embeds must be [P, C], got {tuple(prompt_embeds.shape)}")
        elif prompt_embeds.ndim != 3 or prompt_embeds.shape[0] != num_frames:
            raise ValueError(
                f"prompt_embeds must be [BT={num_frames}, P, C], got {tuple(prompt_embeds.shape)}"
            )
        if prompt_embeds.shape[-1] != self.prompt_dim:
            raise ValueError(
                f"prompt_embeds has C={prompt_embeds.shape[-1]}, the engine expects {self.prompt_dim}"
            )
        if prompt_embeds.shape[-2] == 0:
            raise ValueError("prompt_embeds holds no prompt tokens (P=0)")
        return prompt_embeds.to(device=self.device, dtype=self.dtype)

    def _check_dense(self, dense_embeds: torch.Tensor | None, num_frames: int) -> torch.Tensor | None:
        """Validate optional ``[BT, C, h, w]`` dense prompt embeddings and cast to the engine dtype."""
        if dense_embeds is None:
            return None
        if not torch.is_tensor(dense_embeds) or not dense_embeds.is_floating_point():
            raise TypeError("dense_embeds must be a floating-point torch.Tensor")
        expected = (num_frames, *self.dense_shape)
        if tuple(dense_embeds.shape) != expected:
            raise ValueError(f"dense_embeds must be {list(expected)}, got {list(dense_embeds.shape)}")
        return dense_embeds.to(device=self.device, dtype=self.dtype)

    def _decoder_inputs(
        self, features: FrameFeatures, prompt_embeds: torch.Tensor, dense_embeds: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decode inputs both engines share, checked: sparse prompts ``[BT, P, C]``, the image positional
        embeddings ``[BT, C, h, w]`` and the dense prompt ``[BT, C, h, w]`` (the no-mask embedding plus
        ``dense_embeds`` when given), for BT = ``len(features)`` frames."""
        if not isinstance(features, FrameFeatures):
            raise TypeError(f"features must come from encode(), got {type(features).__name__}")
        prompts = self._check_prompts(prompt_embeds, len(features))  # [BT, P, C]
        extra = self._check_dense(dense_embeds, len(features))  # [BT, C, h, w] | None
        num_frames, _, height, width = features.maps[-1].shape
        image_pe = self.model.get_image_wide_positional_embeddings().expand(num_frames, -1, -1, -1)
        dense = self.model.prompt_encoder.no_mask_embed.weight.view(1, -1, 1, 1).expand(
            num_frames, -1, height, width
        )  # [BT, C, h, w]
        if extra is not None:
            dense = dense + extra
        return prompts, image_pe, dense

    @staticmethod
    def _check_key_frames(key_frames: Sequence[int], num_frames: int) -> list[int]:
        """Sorted, unique key-frame indices within ``[0, num_frames)``."""
        keys = [int(k) for k in key_frames]
        if not keys:
            raise ValueError("key_frames must name at least one frame")
        bad = [k for k in keys if not 0 <= k < num_frames]
        if bad:
            raise ValueError(f"key_frames {bad} are outside the clip of {num_frames} frames")
        if len(set(keys)) != len(keys):
            raise ValueError(f"key_frames has duplicates: {keys}")
        return sorted(keys)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for the block, then restore every submodule's own training flag."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training
