"""LLaVA/LISA family: CLIP vision tower + MLP projector + Llama-type language model.

The VLM is transformers' ``LlavaForConditionalGeneration`` so that LLaVA/LISA weights convert by key
renaming. Video reaches the language model as in Video-ChatGPT (the pooling MoRA's paper names):
per-frame patch features are averaged over time (one token per spatial position, h * w tokens) and
over space (one token per frame, T tokens); both sets go through the projector. With
``video_pooling="frame_grid"`` each frame's patch grid is instead average-pooled to p x p tokens
(T * p * p tokens), keeping where everything is in every frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mora.model.backbones.base import BackboneAdapter, VisualFeatures


class LlavaAdapter(BackboneAdapter):
    """Adapter for ``LlavaForConditionalGeneration``."""

    def __init__(
        self, vlm, image_size: int, video_pooling: str = "videochatgpt", video_pool_grid: int = 4
    ) -> None:
        super().__init__(vlm, image_size)
        self.video_pooling, self.video_pool_grid = video_pooling, video_pool_grid

    @property
    def _config(self):
        return self.vlm.config

    @property
    def motion_input_dim(self) -> int:
        layers = self._config.vision_feature_layer
        num_layers = 1 if isinstance(layers, int) else len(layers)
        return self._config.vision_config.hidden_size * num_layers

    def vision_modules(self) -> list[nn.Module]:
        """The parts of the CLIP tower that reach the selected feature layer(s).

        Later layers and ``post_layernorm`` never reach a loss, so they are left out (training them
        would leave parameters without gradients, which ZeRO rejects).
        """
        vision = self.vlm.model.vision_tower
        layers = self._config.vision_feature_layer
        layers = [layers] if isinstance(layers, int) else list(layers)
        num_states = len(vision.encoder.layers) + 1  # hidden_states: embeddings + one per layer
        used = max(i % num_states for i in layers)  # hidden_states[i] is the output of layer i - 1
        return [vision.embeddings, vision.pre_layrnorm, *vision.encoder.layers[:used]]

    def projector_modules(self) -> list[nn.Module]:
        return [self.vlm.model.multi_modal_projector]

    def _patch_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[BT, 3, I, I]`` -> ``[BT, n, d]`` patch features of the selected vision layer(s)."""
        tower = self.vlm.model.vision_tower
        out = tower(pixel_values, output_hidden_states=True, return_dict=True)
        layers = self._config.vision_feature_layer
        layers = [layers] if isinstance(layers, int) else list(layers)
        feats = torch.cat([out.hidden_states[i] for i in layers], dim=-1)  # [BT, 1 + n, d]
        if self._config.vision_feature_select_strategy == "default":
            feats = feats[:, 1:]  # drop CLS
        return feats

    def frame_features(self, pixel_values: torch.Tensor) -> VisualFeatures:
        B, T, _, _, _ = pixel_values.shape
        dtype = self.vlm.model.vision_tower.dtype
        feats = self._patch_features(pixel_values.flatten(0, 1).to(dtype))  # [B*T, n, d]
        n = feats.shape[1]
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"vision tower gave {n} patch tokens per frame, not a square grid")
        grid = feats.view(B, T, side, side, -1)  # [B, T, h, w, d]
        return VisualFeatures(grid=grid, tokens=self.tokens_from_grid(grid))

    def tokens_from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        return self.vlm.model.multi_modal_projector(grid.flatten(2, 3))  # [B, T, n, D]

    def video_tokens(self, pixel_values: torch.Tensor, features: VisualFeatures) -> torch.Tensor:
        if self.video_pooling == "frame_grid":
            B, T, h, w, d = features.grid.shape
            p = min(self.video_pool_grid, h)
            frames = features.grid.permute(0, 1, 4, 2, 3).flatten(0, 1)  # [B*T, d, h, w]
            pooled = F.adaptive_avg_pool2d(frames, p).flatten(2).transpose(1, 2)  # [B*T, p*p, d]
            return self.vlm.model.multi_modal_projector(pooled.reshape(B, T * p * p, d))  # [B, T*p*p, D]
        grid = features.grid.flatten(2, 3)  # [B, T, n, d]
        temporal_mean = grid.mean(dim=1)  # [B, n, d]
        spatial_mean = grid.mean(dim=2)  # [B, T, d]
        pooled = torch.cat([temporal_mean, spatial_mean], dim=1)  # [B, n + T, d]
        return self.vlm.model.multi_modal_projector(pooled)  # [B, n + T, D]
