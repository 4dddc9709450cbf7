"""What MoRA needs from a vision-language backbone, whatever its family.

An adapter wraps a transformers VLM (it holds no parameters of its own) and exposes:

* per-frame visual features for every frame given (for motion tokens and the temporal head);
* the video tokens the language model reads (the family's own video format);
* the language model (embeddings, decoder, head) and its position ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel


@dataclass
class VisualFeatures:
    """Per-frame visual features of a clip.

    Attributes:
        grid: ``[B, T, h, w, d]`` features on the vision tower's spatial grid, the input of motion tokens
            (d = ``motion_input_dim`` of the adapter).
        tokens: ``[B, T, n, D]`` the same frames projected to the language-model width (n = h * w).
    """

    grid: torch.Tensor
    tokens: torch.Tensor


class BackboneAdapter(ABC):
    """Family-specific glue around a transformers VLM held by the MoRA model as ``vlm``."""

    def __init__(self, vlm: PreTrainedModel, image_size: int) -> None:
        self.vlm = vlm
        self.image_size = image_size  # side of the square backbone frames

    @property
    @abstractmethod
    def motion_input_dim(self) -> int:
        """d: channel size of ``VisualFeatures.grid``."""

    @property
    def language_model(self) -> nn.Module:
        """The decoder stack (returns ``last_hidden_state``)."""
        return self.vlm.model.language_model

    @property
    def lm_head(self) -> nn.Module:
        return self.vlm.lm_head

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` -> ``[B, L, D]``."""
        return self.vlm.get_input_embeddings()(input_ids)

    @abstractmethod
    def vision_modules(self) -> list[nn.Module]:
        """The vision tower."""

    @abstractmethod
    def projector_modules(self) -> list[nn.Module]:
        """The multimodal projector (vision -> language width)."""

    @abstractmethod
    def frame_features(self, pixel_values: torch.Tensor) -> VisualFeatures:
        """Features of every frame of ``pixel_values`` ``[B, T, 3, I, I]``."""

    @abstractmethod
    def tokens_from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """``[B, T, h, w, d]`` grid features -> ``[B, T, h*w, D]`` tokens at the language-model width (how
        `frame_features` derives ``tokens``; used again after the video adapter changed the grid)."""

    @abstractmethod
    def video_tokens(self, pixel_values: torch.Tensor, features: VisualFeatures) -> torch.Tensor:
        """``[B, N_v, D]`` video tokens for the language model from the frames it sees.

        Args:
            pixel_values: ``[B, T_llm, 3, I, I]`` the sampled frames.
            features: their `VisualFeatures` (already computed for all frames, then indexed).
        """

    def video_inputs(
        self, pixel_values: torch.Tensor, features: VisualFeatures
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`video_tokens` and the per-layer visual features the language model adds to the hidden states of
        the video positions in its first layers (``[B, N_v, D]`` each; Qwen3-VL's DeepStack; empty for the
        other families), from one pass of the vision tower."""
        return self.video_tokens(pixel_values, features), []

    def language_model_kwargs(self, video_mask: torch.Tensor, layer_features: list[torch.Tensor]) -> dict:
        """Keyword arguments of the language model's prompt pass beside the embeddings.

        Args:
            video_mask: ``[B, L]`` bool, the video positions of ``input_ids``.
            layer_features: the second output of `video_inputs`, indexed to the B questions.
        """
        if layer_features:
            raise ValueError(f"{type(self).__name__} takes no per-layer visual features")
        return {}

    def position_ids(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_llm_frames: int
    ) -> torch.Tensor | None:
        """Position ids for the language model (None: the model's default 1-D positions)."""
        return None

    def next_position_ids(self, position_ids: torch.Tensor | None, step: int) -> torch.Tensor | None:
        """Position ids of the ``step``-th generated token (B = 1) after a prompt with ``position_ids``."""
        return None
