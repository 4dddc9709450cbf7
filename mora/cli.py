"""The ``mora`` command: ``mora init-tiny``, ``mora predict``, ``mora demo``, ``mora convert {sam,sam2,lisa}`` and ``mora push``.

User errors (missing files, bad arguments) print one clear line naming the file or argument and exit
with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from mora.convert.cli import add_convert_parser
from mora.hub_cli import add_push_parser
from mora.utils.io import atomic_path
from mora.utils.logging import get_logger, setup_cli_logging
from mora.visual_prompts import VISUAL_PROMPTS

logger = get_logger("cli")


class UserError(Exception):
    """A problem the user can fix (bad path or argument)."""


def build_tiny_model(backbone: str = "llava", mask_engine: str = "sam2", seed: int = 0):
    """A randomly initialised tiny MoRA with its processor attached (deterministic for a seed)."""
    from mora.presets import tiny

    return build_random_model(tiny(backbone, mask_engine), seed)


def build_random_model(config, seed: int = 0):
    """A randomly initialised MoRA of a preset ``config`` using the offline tiny tokenizer (`mora.presets.tiny`,
    `mora.presets.small`), with its processor attached (deterministic for a seed)."""
    import torch

    from mora.model.modeling_mora import MoRAForVideoGrounding
    from mora.processing.processing_mora import MoRAProcessor
    from mora.processing.tokenizer import build_tiny_tokenizer

    torch.manual_seed(seed)
    model = MoRAForVideoGrounding(config)
    model.processor = MoRAProcessor.from_config(config, build_tiny_tokenizer())
    return model


def cmd_init_tiny(args: argparse.Namespace) -> int:
    model = build_tiny_model(args.backbone, args.mask_engine, args.seed)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
    logger.info("wrote a tiny %s + %s model to %s", args.backbone, args.mask_engine, out)
    return 0


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def read_questions(args: argparse.Namespace) -> list[str] | str:
    """``--question`` (one string) or ``--questions FILE`` (a JSON list of strings, or one question a line)."""
    if args.questions is None:
        return args.question
    path = Path(args.questions)
    if not path.is_file():
        raise UserError(f"--questions {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            questions = json.loads(text)
        except ValueError as err:
            raise UserError(f"--questions {path}: not valid JSON ({err})") from None
        if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
            raise UserError(f"--questions {path}: expected a JSON list of strings")
    else:
        questions = [line.strip() for line in text.splitlines() if line.strip()]
    if not questions:
        raise UserError(f"--questions {path} holds no question")
    return questions


def _check_device(device: str | None) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: the Apple MPS backend is not available here")


class _ProgressBar:
    """A tqdm bar per stage of `predict_video` (segment, render)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bars = enabled, {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="frame", leave=True)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def cmd_predict(args: argparse.Namespace) -> int:
    from mora.hub import CheckpointNotFoundError, load_model
    from mora.inference import PredictOptions, QuestionError, VideoInputError, VideoSource, predict_video

    questions = read_questions(args)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} exists and is not a folder")
    max_frames = args.max_frames if args.max_frames is not None else args.num_frames
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {max_frames}")
    options = PredictOptions(
        mode=args.mode,
        gate=not args.no_gate,
        visual_prompt=args.visual_prompt,
        propagation=args.propagation,
        fps=args.fps,
        start=args.start,
        end=args.end,
        max_frames=max_frames,
        key_frames=args.key_frames,
        folder_fps=args.folder_fps,
        overlay=not args.no_overlay,
        gif=args.gif,
    )
    try:
        VideoSource(args.video, args.folder_fps)  # bad video: fail before loading the model
    except VideoInputError as err:
        raise UserError(f"--video {err}") from None
    _check_device(args.device)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr keeps our progress bar and, on failure, one error line
    try:
        model = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    except CheckpointNotFoundError as err:
        raise UserError(f"--model: {err}") from None
    progress = _ProgressBar(not args.quiet)
    try:
        result = predict_video(
            model, args.video, questions, args.out, options, progress=progress, model_id=args.model
        )
    except VideoInputError as err:
        raise UserError(f"--video {err}") from None
    except QuestionError as err:
        raise UserError(f"--question: {err}") from None
    except ValueError as err:
        if str(err).startswith("--"):  # an option the video cannot satisfy (window, fps, frames)
            raise UserError(str(err)) from None
        raise
    finally:
        progress.close()
    for q in result.questions:
        logger.info(
            "%s: span %s (%s s), text %r -> %s", q.question, q.span_frames, q.span_seconds, q.text, q.folder
        )
    logger.info("seconds per stage: %s", ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mora.demo import DemoConfig
    from mora.hub import CheckpointNotFoundError, load_model

    try:
        config = DemoConfig(
            model=args.model,
            host=args.host,
            port=args.port,
            device=args.device,
            dtype=DTYPES[args.dtype],
            mode=args.mode,
            max_file_size_mb=args.max_file_size_mb,
            max_frames=args.max_frames,
            key_frames=args.key_frames,
            examples_dir=args.examples_dir,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    if importlib.util.find_spec("gradio") is None:
        raise UserError("the demo needs Gradio: pip install -e '.[demo]' (see the README)")
    _check_device(args.device)
    try:
        model = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    except CheckpointNotFoundError as err:
        raise UserError(f"--model: {err}") from None
    from mora.demo.app import run_demo

    run_demo(model, config)
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    from mora.assemble import AssembleError, assemble

    out = Path(args.out)
    if out.exists() and not (out.is_dir() and args.overwrite):
        raise UserError(f"--out {out} exists (pass --overwrite to replace a folder)")
    try:
        assemble(args.preset, args.vlm, args.mask_engine, out, dtype=args.dtype)
    except (AssembleError, OSError) as err:
        raise UserError(str(err).splitlines()[0]) from None
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from mora.convert import ConversionError
    from mora.convert.cli import run_converter

    try:
        out = run_converter(args)
    except ConversionError as err:
        raise UserError(str(err)) from None
    logger.info("converted %s into %s", args.checkpoint, out)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from mora.hub import PushError
    from mora.hub_cli import run_push

    try:
        url = run_push(args)
    except (PushError, HfHubHTTPError) as err:
        raise UserError(str(err).strip().splitlines()[0]) from None
    logger.info("pushed %s to %s", args.model, url)
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options ``mora predict`` and ``mora demo`` share."""
    parser.add_argument("--model", required=True, help="checkpoint folder or Hugging Face Hub id")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None, help="default: cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--mode", choices=("generate", "template"), default="generate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mora", description="MoRA: pixel-grounded motion reasoning in video"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init-tiny", help="write a randomly initialised tiny model + processor")
    init.add_argument("--out", required=True, help="output folder")
    init.add_argument("--backbone", choices=("llava", "qwen2_5_vl", "qwen3_vl"), default="llava")
    init.add_argument("--mask-engine", choices=("sam2", "sam"), default="sam2")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(func=cmd_init_tiny)
    asm = sub.add_parser(
        "assemble",
        help="a real preset's MoRA folder from transformers-format base checkpoints (e.g. Qwen3-VL + SAM2.1)",
    )
    asm.add_argument("--preset", required=True, help="e.g. qwen3_vl_8b_sam2_1_large")
    asm.add_argument("--vlm", required=True, help="VLM checkpoint folder or Hub id (with its tokenizer)")
    asm.add_argument("--mask-engine", required=True, help="SAM2 / SAM checkpoint folder or Hub id")
    asm.add_argument("--out", required=True, help="output folder")
    asm.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    asm.add_argument("--overwrite", action="store_true")
    asm.set_defaults(func=cmd_assemble)
    pred = sub.add_parser(
        "predict",
        help="masks of every frame, span, answer and an overlay video for a video and question(s)",
    )
    _add_model_arguments(pred)
    pred.add_argument("--video", required=True, help="video file (mp4, ...) or folder of frames")
    which = pred.add_mutually_exclusive_group(required=True)
    which.add_argument("--question")
    which.add_argument(
        "--questions",
        metavar="FILE",
        help="several questions about the video (.json list, or one a line); the video is encoded once and "
        "each question gets a subfolder q001, q002, ... of --out",
    )
    pred.add_argument(
        "--out", required=True, help="output folder (prediction.json, masks/<frame>.png, overlay.mp4)"
    )
    pred.add_argument("--fps", type=float, default=None, help="resample the frames to this rate")
    pred.add_argument("--start", type=float, default=None, help="first second of the window")
    pred.add_argument("--end", type=float, default=None, help="end of the window in seconds (exclusive)")
    pred.add_argument(
        "--max-frames", type=int, default=None, help="at most this many frames (spread evenly; default: all)"
    )
    pred.add_argument(
        "--num-frames", type=int, default=None, help=argparse.SUPPRESS
    )  # older name of --max-frames
    pred.add_argument(
        "--key-frames",
        type=int,
        default=None,
        help="frames the model reasons over (default: 20, or the model's num_frames when larger)",
    )
    pred.add_argument("--folder-fps", type=float, default=None, help="frame rate of a frame folder")
    pred.add_argument("--no-gate", action="store_true", help="keep masks outside the predicted span")
    pred.add_argument(
        "--visual-prompt",
        choices=VISUAL_PROMPTS,
        default="none",
        help="MotionSight prompt on the language model's frames: spotlight / crop around a first pass's masks, "
        "blur (motion trails), auto (chosen per question)",
    )
    pred.add_argument(
        "--propagation",
        choices=("memory", "per_frame"),
        default=None,
        help="SAM2 masks by memory propagation from the key frame or per frame (default: the checkpoint's)",
    )
    pred.add_argument("--gif", action="store_true", help="also write overlay.gif")
    pred.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4")
    pred.add_argument("--quiet", action="store_true", help="no progress bar")
    pred.set_defaults(func=cmd_predict)
    demo = sub.add_parser(
        "demo", help="a local web page: upload a video, ask a question, see the grounded answer"
    )
    _add_model_arguments(demo)
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    demo.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    demo.add_argument("--max-file-size-mb", type=float, default=100.0, help="largest upload accepted")
    demo.add_argument(
        "--max-frames",
        type=int,
        default=300,
        help="at most this many frames of a video get masks (spread evenly)",
    )
    demo.add_argument(
        "--key-frames", type=int, default=None, help="frames the model reasons over (default: 20)"
    )
    demo.add_argument("--examples-dir", default=None, help="where the synthetic examples are rendered")
    demo.set_defaults(func=cmd_demo)
    add_convert_parser(sub, cmd_convert)
    add_push_parser(sub, cmd_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_cli_logging()
    try:
        return args.func(args)
    except UserError as err:
        print(f"mora {args.command}: error: {err}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
