"""Packing the questions of a batch by video, for attention or products computed once per video."""

from __future__ import annotations

import torch


def slots_by_video(video_index: torch.Tensor, num_videos: int) -> tuple[torch.Tensor, int]:
    """Where each question sits in a ``[V, slots, ...]`` block of its video's questions.

    Args:
        video_index: ``[B]`` long, the video of each question.
        num_videos: V.

    Returns:
        rows ``[B]`` (``video * slots + rank among that video's questions``) and slots (the most questions
        any video has; at least 1). ``x.new_zeros(V * slots, ...).index_copy(0, rows, x)`` packs ``x [B, ...]``
        and ``packed.view(V * slots, ...)[rows]`` unpacks it.
    """
    B = video_index.shape[0]
    counts = torch.bincount(video_index, minlength=num_videos)
    slots = max(1, int(counts.max())) if B else 1
    order = torch.argsort(video_index, stable=True)
    first = torch.cumsum(counts, 0) - counts  # position of each video's first question in ``order``
    rank = torch.empty_like(video_index)
    rank[order] = torch.arange(B, device=video_index.device) - first[video_index[order]]
    return video_index * slots + rank, slots
