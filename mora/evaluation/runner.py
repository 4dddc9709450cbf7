"""The part every evaluator shares: optional inference, scoring pool, aggregation, outputs, table."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mora
from mora.evaluation.aggregate import aggregate, format_table, write_outputs
from mora.evaluation.inference import InferenceItem, all_complete, run_inference
from mora.evaluation.scoring import ScoreJob, score_jobs
from mora.evaluation.visualize import visualize_worst
from mora.utils.logging import get_logger

logger = get_logger("evaluation")


class EvaluationError(ValueError):
    """A user-facing problem (missing file, missing predictions under --strict, bad arguments)."""


@dataclass
class RunOptions:
    """Options common to every evaluator (the shared command-line flags)."""

    out: Path
    pred_dir: Path | None = None
    model: Any = None  # a model object or a checkpoint path / Hub id for mora.load_model
    num_workers: int = 1
    strict: bool = False
    num_chunks: int = 1
    chunk_idx: int = 0
    visualize: int = 0
    predict_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to model.predict
    with_ungated: bool = False  # also write and score the masks before span gating (same inference pass)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> Path:
        return Path(self.pred_dir) if self.pred_dir is not None else Path(self.out) / "predictions"

    @property
    def ungated_predictions(self) -> Path:
        """Where ``with_ungated`` writes the masks before span gating: ``<predictions>_ungated``."""
        return self.predictions.with_name(self.predictions.name + "_ungated")


def load_model_if_needed(model: Any) -> Any:
    if model is None or hasattr(model, "predict"):
        return model

    logger.info("loading model %s", model)
    return mora.load_model(str(model))


def predict_all(items: Sequence[InferenceItem], opts: RunOptions) -> bool:
    """Inference for this chunk; True when every question of the benchmark now has a prediction."""
    model = load_model_if_needed(opts.model)
    run_inference(
        model,
        items,
        opts.predictions,
        num_chunks=opts.num_chunks,
        chunk_idx=opts.chunk_idx,
        predict_kwargs=opts.predict_kwargs,
        ungated_dir=opts.ungated_predictions if opts.with_ungated else None,
    )
    complete = all_complete(items, opts.predictions)
    return complete and (not opts.with_ungated or all_complete(items, opts.ungated_predictions))


def score_and_report(
    jobs: list[ScoreJob],
    opts: RunOptions,
    *,
    title: str,
    category_order: Sequence[str] = (),
    overall: Callable | None = None,
    ungated: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """Score ``jobs`` against ``opts.predictions``, write ``scores.json`` etc. to ``opts.out``.

    ``ungated``: the scores of the same predictions before span gating; each row then also carries their
    J&F as ``JF_ungated`` and, where the benchmark has spans, their J&F gated by the true span as
    ``JF_true_span_ungated`` (the score with a perfect span: what the span costs against what the masks cost).
    """
    pred_dir = opts.predictions
    if not pred_dir.is_dir():
        raise EvaluationError(f"prediction folder {pred_dir} does not exist")
    records = list(score_jobs(jobs, pred_dir, opts.num_workers))
    missing = [f"{r['video_id']}/{r['question_id']}" for r in records if r["missing"]]
    if missing:
        msg = f"{len(missing)} of {len(records)} questions have no prediction in {pred_dir} (first: {missing[0]})"
        if opts.strict:
            raise EvaluationError(msg + "; --strict makes this fatal")
        logger.warning("%s; scored as empty masks", msg)
    partial = sum(1 for r in records if not r["missing"] and r["missing_frames"])
    if partial:
        logger.warning("%d questions lack some frame PNGs; those frames are scored as empty masks", partial)
    scores = aggregate(records, category_order, overall)
    for key, row in (ungated or {}).items():
        if key != "baseline_empty" and key in scores:
            scores[key]["JF_ungated"] = row["JF"]
            if "JF_true_span" in row:
                scores[key]["JF_true_span_ungated"] = row["JF_true_span"]
    table = format_table(scores, title)
    write_outputs(opts.out, records, scores, table)
    if opts.visualize > 0:
        visualize_worst(jobs, records, pred_dir, Path(opts.out) / "visualizations", opts.visualize)
    return scores, table


def evaluate_benchmark(
    jobs: list[ScoreJob],
    items: Sequence[InferenceItem] | None,
    opts: RunOptions,
    **report_kwargs: Any,
) -> tuple[dict[str, Any] | None, str]:
    """Inference (when ``opts.model`` is set), then scoring unless other chunks are still missing."""
    if opts.model is not None:
        if items is None:
            raise EvaluationError("this benchmark split has no inference items")
        complete = predict_all(items, opts)
        if not complete:
            msg = (
                f"chunk {opts.chunk_idx}/{opts.num_chunks} written to {opts.predictions}; score with --pred-dir "
                "once every chunk has finished"
            )
            logger.info(msg)
            return None, msg
    if not jobs:
        raise EvaluationError("nothing to score: the split has no ground truth questions")
    ungated = None
    if opts.with_ungated:  # the same predictions before span gating, scored into <out>/ungated
        where = replace(opts, out=Path(opts.out) / "ungated", pred_dir=opts.ungated_predictions, visualize=0)
        title = f"{report_kwargs.get('title', '')} without span gating".strip()
        ungated, _ = score_and_report(jobs, where, **{**report_kwargs, "title": title})
    return score_and_report(jobs, opts, **report_kwargs, ungated=ungated)


def ensure_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{what} {path} does not exist")
    return path
