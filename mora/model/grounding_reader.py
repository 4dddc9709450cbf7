"""`GroundingReader`: the ``[SEG]`` and ``[LOC]`` states read every frame's full patch grid.

The language model sees the video through a budget of tokens (pooled grids of ``config.num_frames``
frames). Singling out the object a relation picks, and the frames where it moves, needs where everything
is on every frame: the reader lets the two query states attend to all ``T x n`` grid tokens of the clip
(after the video adapter), a few decoder layers of self-attention (over the queries and the language
model's states of the question's text, so each query can re-read the question), cross-attention to the
video and MLP, as DETR-style decoders read image features. Every residual branch ends in a zero-initialised projection, so
with a pretrained language model the reader starts as the identity.

Keys and values are projected once per video, and the queries of all questions about one video are packed
into one attention call over it (``video_index``), so the questions of a video share the work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mora.model.packing import slots_by_video
from mora.model.video_adapter import sinusoid


class _CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """queries ``[V, R, D]`` (every query row of a video's questions); memory ``[V, N, D]`` -> ``[V, R, D]``."""
        V, R, D = queries.shape
        h = self.heads
        k, v = self.kv(memory).view(V, -1, 2, h, D // h).permute(2, 0, 3, 1, 4)  # [V, h, N, D/h] each
        q = self.q(queries).view(V, R, h, D // h).transpose(1, 2)  # [V, h, R, D/h]
        attended = F.scaled_dot_product_attention(q, k, v)  # [V, h, R, D/h]
        return self.out(attended.transpose(1, 2).reshape(V, R, D))


class _ReaderLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_memory = nn.LayerNorm(dim)
        self.cross = _CrossAttention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def zero_outputs(self) -> None:
        for layer in (self.self_attn.out_proj, self.cross.out, self.mlp[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        rows: torch.Tensor,
        slots: int,
        text: torch.Tensor | None = None,
        text_pad: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x ``[B, Q, D]`` queries; memory ``[V, N, D]``; rows ``[B]`` flat index ``video * slots + slot`` of each
        question in the packed per-video query block; text ``[B, L, D]`` the question's token states (keys
        and values of the self-attention beside the queries), text_pad ``[B, L]`` True where padding."""
        B, Q, D = x.shape
        y = self.norm_self(x)
        if text is None:
            x = x + self.self_attn(y, y, y, need_weights=False)[0]
        else:
            keys = torch.cat([y, self.norm_self(text)], dim=1)  # [B, Q + L, D]
            pad = torch.cat([text_pad.new_zeros(B, Q), text_pad], dim=1)
            x = x + self.self_attn(y, keys, keys, key_padding_mask=pad, need_weights=False)[0]
        packed = x.new_zeros(memory.shape[0] * slots, Q, D)
        packed = packed.index_copy(0, rows, self.norm_cross(x)).view(memory.shape[0], slots * Q, D)
        read = self.cross(packed, self.norm_memory(memory)).view(-1, Q, D)[rows]  # [B, Q, D]
        x = x + read
        return x + self.mlp(self.norm_mlp(x))


class GroundingReader(nn.Module):
    """Query states ``[B, Q, D]`` refined by attention over their video's grid tokens.

    Args:
        hidden_size: D, the language model's width (queries and grid tokens).
        layers: number of decoder layers.
        heads: attention heads (must divide D).
    """

    def __init__(self, hidden_size: int, layers: int, heads: int) -> None:
        super().__init__()
        if layers < 1 or hidden_size % heads or hidden_size % 2:
            raise ValueError(
                f"GroundingReader needs layers >= 1 and heads dividing an even width, got {layers} layers, "
                f"{heads} heads, width {hidden_size}"
            )
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(_ReaderLayer(hidden_size, heads) for _ in range(layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.zero_outputs()

    def forward(
        self,
        queries: torch.Tensor,
        frame_tokens: torch.Tensor,
        video_index: torch.Tensor | None = None,
        text_states: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Refine the queries.

        Args:
            queries: ``[B, Q, D]`` (e.g. the ``[SEG]`` and ``[LOC]`` states, Q = 2).
            frame_tokens: ``[V, T, n, D]`` grid tokens of every frame of each video.
            video_index: ``[B]`` the video of each query row (default: row b reads video b).
            text_states: ``[B, L, D]`` the language model's states of each question's text (the queries also
                attend to them, as a decoder reads the question beside the video); None: queries only.
            text_mask: ``[B, L]`` bool, True at the text positions to read (default: all).

        Returns:
            ``[B, Q, D]``.
        """
        V, T, n, D = frame_tokens.shape
        if video_index is None:
            video_index = torch.arange(queries.shape[0], device=queries.device)
        dtype = self.layers[0].norm_self.weight.dtype
        times = torch.arange(T, device=frame_tokens.device).float() / max(1, T - 1)
        memory = frame_tokens.to(dtype) + sinusoid(times, D).to(dtype)[None, :, None, :]
        memory = memory.reshape(V, T * n, D)
        rows, slots = slots_by_video(video_index.to(queries.device), V)
        text = text_pad = None
        if text_states is not None:
            text = text_states.to(dtype)
            keep = (
                torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
                if text_mask is None
                else text_mask
            )
            text_pad = ~keep.to(text.device, torch.bool)
        x = queries.to(dtype)
        for layer in self.layers:
            x = layer(x, memory, rows, slots, text, text_pad)
        return x
