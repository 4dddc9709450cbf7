"""The ``mora`` command: ``mora init-tiny``, ``mora predict``, ``mora convert {sam,sam2,lisa}`` and ``mora push``.

User errors (missing files, bad arguments) print one clear line naming the file or argument and exit
with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mora.convert.cli import add_convert_parser
from mora.hub_cli import add_push_parser
from mora.utils.io import atomic_path, write_json_atomic
from mora.utils.logging import get_logger, setup_cli_logging
from mora.visual_prompts import VISUAL_PROMPTS

logger = get_logger("cli")


class UserError(Exception):
    """A problem the user can fix (bad path or argument)."""


def build_tiny_model(backbone: str = "llava", mask_engine: str = "sam2", seed: int = 0):
    """A randomly initialised tiny MoRA with its processor attached (deterministic for a seed)."""
    import torch

    from mora.model.modeling_mora import MoRAForVideoGrounding
    from mora.presets import tiny
    from mora.processing.processing_mora import MoRAProcessor
    from mora.processing.tokenizer import build_tiny_tokenizer

    config = tiny(backbone, mask_engine)
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


def _read_frames(video: Path, num_frames: int | None) -> tuple[np.ndarray, list[str]]:
    from mora.data.video import list_frame_files, read_video

    if not video.exists():
        raise UserError(f"--video {video} does not exist")
    try:
        frames, indices, _ = read_video(video, num_frames=num_frames)
    except (ValueError, OSError) as err:
        raise UserError(f"--video {video}: {err}") from err
    if video.is_dir():
        files = list_frame_files(video)
        names = [files[i].stem for i in indices]
    else:
        names = [f"{i:05d}" for i in indices]
    return frames, names


def cmd_predict(args: argparse.Namespace) -> int:
    from PIL import Image

    from mora.hub import CheckpointNotFoundError, load_model

    if args.num_frames is not None and args.num_frames < 1:
        raise UserError(f"--num-frames must be >= 1, got {args.num_frames}")
    frames, names = _read_frames(Path(args.video), args.num_frames)
    try:
        model = load_model(args.model, device=args.device)
    except CheckpointNotFoundError as err:
        raise UserError(f"--model: {err}") from err
    pred = model.predict(
        frames, args.question, gate=not args.no_gate, mode=args.mode, visual_prompt=args.visual_prompt
    )
    out = Path(args.out)
    with atomic_path(out / "masks") as tmp:
        tmp.mkdir()
        for name, mask in zip(names, pred.masks):
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / f"{name}.png")
    scores = [None if np.isnan(s) else float(s) for s in pred.frame_scores]
    write_json_atomic(
        out / "prediction.json",
        {
            "span": list(pred.span) if pred.span else None,
            "frame_scores": scores,
            "text": pred.text,
            "frames": names,
            "question": args.question,
            "visual_prompt": args.visual_prompt,
        },
    )
    logger.info("span %s, text %r; wrote %s", pred.span, pred.text, out)
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
    pred = sub.add_parser("predict", help="masks, span and answer for one video and question")
    pred.add_argument("--model", required=True, help="checkpoint folder or Hugging Face Hub id")
    pred.add_argument("--video", required=True, help="mp4 file or folder of frames")
    pred.add_argument("--question", required=True)
    pred.add_argument("--out", required=True, help="output folder (masks/<frame>.png, prediction.json)")
    pred.add_argument("--num-frames", type=int, default=None, help="sample this many frames (default: all)")
    pred.add_argument("--mode", choices=("generate", "template"), default="generate")
    pred.add_argument("--no-gate", action="store_true", help="keep masks outside the predicted span")
    pred.add_argument(
        "--visual-prompt",
        choices=VISUAL_PROMPTS,
        default="none",
        help="MotionSight prompt on the language model's frames: spotlight / crop around a first pass's masks, "
        "blur (motion trails), auto (chosen per question)",
    )
    pred.add_argument("--device", default=None, help="torch device (default: CPU)")
    pred.set_defaults(func=cmd_predict)
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
