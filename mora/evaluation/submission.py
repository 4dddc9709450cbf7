"""Submission archives for server-scored splits (MeViS valid, Ref-YouTube-VOS valid)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from mora.evaluation.inference import InferenceItem
from mora.evaluation.predictions import question_dir
from mora.evaluation.runner import EvaluationError, RunOptions, predict_all
from mora.utils.io import atomic_path
from mora.utils.logging import get_logger

logger = get_logger("evaluation")


def write_submission(
    items: Sequence[InferenceItem], pred_dir: str | os.PathLike, archive: str | os.PathLike, prefix: str = ""
) -> Path:
    """Zip ``<prefix><video>/<expression>/<frame>.png`` for every item; every PNG must exist.

    Args:
        items: the split's expressions (their ``frame_stems`` are the frames the server expects).
        pred_dir: prediction folder.
        archive: output ``.zip`` path (written atomically).
        prefix: folder inside the archive (``"Annotations/"`` for Ref-YouTube-VOS, ``""`` for MeViS).
    """
    archive = Path(archive)
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for item in items:
            folder = question_dir(pred_dir, item.video_id, item.question_id)
            for stem in item.frame_stems:
                png = folder / f"{stem}.png"
                if not png.is_file():
                    raise EvaluationError(f"submission incomplete: {png} is missing")
                zf.write(png, f"{prefix}{item.video_id}/{item.question_id}/{stem}.png")
    logger.info("wrote submission archive %s (%d expressions)", archive, len(items))
    return archive


def package_submission(
    items: Sequence[InferenceItem], opts: RunOptions, name: str, prefix: str
) -> tuple[None, str]:
    """Predict ``items`` when ``opts`` has a model, then pack ``opts.predictions`` into ``opts.out / name``
    for a split without public ground truth; returns (no scores, a message for the user)."""
    if opts.model is not None and not predict_all(items, opts):
        return (
            None,
            f"inference chunk {opts.chunk_idx}/{opts.num_chunks} done; package when all chunks finish",
        )
    archive = write_submission(items, opts.predictions, Path(opts.out) / name, prefix=prefix)
    return None, f"no ground truth for this split; submission archive written to {archive}"
