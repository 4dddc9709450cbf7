"""Command-line plumbing shared by the ``eval/evaluate_*.py`` scripts.

User errors (missing files, bad arguments, unusable predictions) end with one clear message on stderr
and exit status 2, never a traceback. The score table goes to stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from mora.data.errors import DatasetFormatError
from mora.evaluation.aggregate import format_table
from mora.evaluation.predictions import PredictionError
from mora.evaluation.runner import EvaluationError, RunOptions
from mora.evaluation.scoring import default_workers
from mora.utils.io import UnsafePathError
from mora.utils.logging import setup_cli_logging
from mora.visual_prompts import VISUAL_PROMPTS

USER_ERRORS = (
    DatasetFormatError,
    EvaluationError,
    PredictionError,
    UnsafePathError,
    FileNotFoundError,
    NotADirectoryError,
)


def add_common_args(parser: argparse.ArgumentParser, *, out_required: bool = True) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint folder or Hub id: run inference, then score")
    src.add_argument(
        "--pred-dir", type=Path, help="score this prediction folder (<video>/<question>/<frame>.png)"
    )
    parser.add_argument("--data-root", type=Path, required=True, help="dataset root folder")
    parser.add_argument("--out", type=Path, required=out_required, help="output folder (scores.json, ...)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="scoring processes")
    parser.add_argument("--strict", action="store_true", help="a missing prediction is an error")
    parser.add_argument("--num-chunks", type=int, default=1, help="split inference into this many parts")
    parser.add_argument("--chunk-idx", type=int, default=0, help="which inference part this process runs")
    parser.add_argument("--visualize", type=int, default=0, metavar="K", help="overlay strips of the K worst")
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="--model mode: keep masks outside the predicted span ([LOC] ablation)",
    )
    parser.add_argument(
        "--with-ungated",
        action="store_true",
        help="--model mode: also write the masks before span gating (same inference pass) to "
        "<predictions>_ungated and score them into <out>/ungated ([LOC] ablation without a second run)",
    )
    parser.add_argument(
        "--predict-mode",
        choices=("generate", "template"),
        default="generate",
        help="--model mode: generate the answer, or teacher-force the answer template",
    )
    parser.add_argument(
        "--visual-prompt",
        choices=VISUAL_PROMPTS,
        default="none",
        help="--model mode: a MotionSight prompt on the language model's frames (spotlight / crop: a first "
        "pass's masks, aggregated into boxes; blur: motion trails; auto: chosen per question)",
    )


def predict_kwargs_from_args(args: argparse.Namespace) -> dict:
    """Only the options the user changed, so any ``predict(frames, question)`` model keeps working."""
    kwargs: dict = {}
    if args.no_gate:
        kwargs["gate"] = False
    if args.predict_mode != "generate":
        kwargs["mode"] = args.predict_mode
    if args.visual_prompt != "none":
        kwargs["visual_prompt"] = args.visual_prompt
    return kwargs


def options_from_args(args: argparse.Namespace, pred_dir: Path | None = None) -> RunOptions:
    if args.num_chunks < 1 or not 0 <= args.chunk_idx < args.num_chunks:
        raise EvaluationError(
            f"--chunk-idx must be in [0, --num-chunks={args.num_chunks}); got {args.chunk_idx}"
        )
    if not args.data_root.is_dir():
        raise EvaluationError(f"--data-root {args.data_root} is not a folder")
    if args.pred_dir is not None and not args.pred_dir.is_dir():
        raise EvaluationError(f"--pred-dir {args.pred_dir} is not a folder")
    return RunOptions(
        out=args.out,
        pred_dir=pred_dir or args.pred_dir,
        model=args.model,
        num_workers=max(1, args.workers),
        strict=args.strict,
        num_chunks=args.num_chunks,
        chunk_idx=args.chunk_idx,
        visualize=args.visualize,
        predict_kwargs=predict_kwargs_from_args(args),
        with_ungated=args.with_ungated,
    )


def run_main(body: Callable[[], tuple[dict | None, str]]) -> int:
    """Run ``body`` (returns scores and a title), print the table, map user errors to exit status 2."""
    setup_cli_logging()
    try:
        scores, title = body()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if scores is not None:
        print(format_table(scores, title))  # noqa: T201
    else:
        print(title)  # noqa: T201
    return 0


def benchmark_main(
    evaluate: Callable[[Path, str, RunOptions], tuple[dict | None, str]],
    description: str,
    default_split: str,
    argv: list[str] | None = None,
) -> int:
    """Entry point of the per-benchmark scripts: common flags + ``--split``, then ``evaluate``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser)
    parser.add_argument("--split", default=default_split, help=f"dataset split (default {default_split})")
    args = parser.parse_args(argv)
    return run_main(lambda: evaluate(args.data_root, args.split, options_from_args(args)))
