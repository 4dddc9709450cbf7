"""Run a model over benchmark questions and write prediction folders (resumable, chunkable).

The model is anything with ``predict(frames [T, H, W, 3] uint8, question) -> Prediction``
(``mora.load_model`` returns one). A question whose folder already exists is skipped, so an
interrupted run resumes where it stopped; ``num_chunks`` / ``chunk_idx`` split the questions into
contiguous parts, one per process or GPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mora.data.video import read_frame_files
from mora.evaluation.predictions import is_complete, write_question
from mora.utils.logging import get_logger

logger = get_logger("evaluation")


@dataclass
class InferenceItem:
    """One question to run.

    Attributes:
        frame_paths: image files given to the model, in order.
        frame_stems: PNG names written for them (``<stem>.png``).
        frame_indices: index of each given frame in the clip's full frame list (span conversion).
    """

    video_id: str
    question_id: str
    question: str
    frame_paths: list[Path]
    frame_stems: list[str]
    frame_indices: list[int]


def chunk(items: Sequence[Any], num_chunks: int, chunk_idx: int) -> list[Any]:
    """Contiguous part ``chunk_idx`` of ``num_chunks`` (sizes differ by at most one)."""
    if num_chunks < 1 or not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"--chunk-idx must be in [0, {num_chunks}); got {chunk_idx}")
    bounds = np.linspace(0, len(items), num_chunks + 1).astype(int)
    return list(items[bounds[chunk_idx] : bounds[chunk_idx + 1]])


def predict_item(
    model: Any,
    item: InferenceItem,
    pred_dir: str | os.PathLike,
    predict_kwargs: dict[str, Any] | None = None,
    ungated_dir: str | os.PathLike | None = None,
) -> None:
    """Run one question and write its prediction folder (masks + span / text / frame scores).

    ``predict_kwargs`` go to ``model.predict`` (e.g. ``gate=False`` for ungated masks). With ``ungated_dir``,
    the masks before span gating of the same pass (``predict(..., with_ungated=True)``) are written there.
    """
    frames = read_frame_files(item.frame_paths)
    kwargs = dict(predict_kwargs or {})
    if ungated_dir is not None:
        kwargs["with_ungated"] = True
    pred = model.predict(frames, item.question, **kwargs)
    masks = _checked_masks(pred.masks, frames, item)
    span = None
    if pred.span is not None:
        span = [item.frame_indices[int(pred.span[0])], item.frame_indices[int(pred.span[1])]]
    info = {
        "span": span,
        "span_sampled": None if pred.span is None else [int(pred.span[0]), int(pred.span[1])],
        "text": pred.text,
        "frame_scores": [None if np.isnan(s) else float(s) for s in np.asarray(pred.frame_scores, float)],
        "frames": item.frame_stems,
        "frame_indices": item.frame_indices,
    }
    if ungated_dir is not None:  # first: the gated folder is what marks the question as done
        ungated = masks if pred.ungated_masks is None else _checked_masks(pred.ungated_masks, frames, item)
        write_question(ungated_dir, item.video_id, item.question_id, item.frame_stems, ungated, info)
    write_question(pred_dir, item.video_id, item.question_id, item.frame_stems, masks, info)


def _checked_masks(masks: np.ndarray, frames: np.ndarray, item: InferenceItem) -> np.ndarray:
    masks = np.asarray(masks).astype(bool)
    if masks.shape != frames.shape[:3]:
        raise ValueError(
            f"model returned masks {masks.shape} for frames {frames.shape[:3]} ({item.video_id}/{item.question_id})"
        )
    return masks


def run_inference(
    model: Any,
    items: Sequence[InferenceItem],
    pred_dir: str | os.PathLike,
    *,
    num_chunks: int = 1,
    chunk_idx: int = 0,
    predict_kwargs: dict[str, Any] | None = None,
    ungated_dir: str | os.PathLike | None = None,
) -> dict[str, int]:
    """Predict every not-yet-written question of this chunk; returns ``{"done", "skipped"}`` counts.

    With ``ungated_dir``, each question's masks before span gating are written there as well (same pass).
    """
    mine = chunk(items, num_chunks, chunk_idx)
    done = skipped = 0
    for item in tqdm(mine, desc="predict", unit="question", mininterval=5):
        if is_complete(pred_dir, item.video_id, item.question_id) and (
            ungated_dir is None or is_complete(ungated_dir, item.video_id, item.question_id)
        ):
            skipped += 1
            continue
        predict_item(model, item, pred_dir, predict_kwargs, ungated_dir)
        done += 1
    logger.info("chunk %d/%d: %d predicted, %d already present", chunk_idx, num_chunks, done, skipped)
    return {"done": done, "skipped": skipped}


def all_complete(items: Sequence[InferenceItem], pred_dir: str | os.PathLike) -> bool:
    return all(is_complete(pred_dir, it.video_id, it.question_id) for it in items)
