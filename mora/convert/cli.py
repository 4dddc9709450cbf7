"""``mora convert <kind>``: one sub-command per original checkpoint layout.

Each entry of ``CONVERTERS`` adds its own arguments and returns the output folder; ``ConversionError``
becomes a one-line user error in ``mora.cli``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

DTYPE_CHOICES = ("keep", "fp32", "bf16", "fp16")  # checkpoint_io.DTYPES, without importing torch here


def _common(parser: argparse.ArgumentParser, checkpoint_help: str) -> None:
    parser.add_argument("--checkpoint", required=True, help=checkpoint_help)
    parser.add_argument("--out", required=True, help="output folder (config.json + model.safetensors)")
    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="keep", help="weights dtype (default: as in the checkpoint)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")


def _run_sam(args: argparse.Namespace) -> Path:
    from mora.convert.checkpoint_io import check_out_folder
    from mora.convert.sam import convert_sam

    return convert_sam(args.checkpoint, check_out_folder(args.out, args.overwrite), dtype=args.dtype)


def _run_sam2(args: argparse.Namespace) -> Path:
    from mora.convert.checkpoint_io import check_out_folder
    from mora.convert.sam2 import convert_sam2

    return convert_sam2(args.checkpoint, check_out_folder(args.out, args.overwrite), dtype=args.dtype)


def _run_lisa(args: argparse.Namespace) -> Path:
    from mora.convert.checkpoint_io import check_out_folder
    from mora.convert.lisa import convert_lisa

    out = check_out_folder(args.out, args.overwrite)
    return convert_lisa(args.checkpoint, out, clip=args.clip, sam=args.sam, dtype=args.dtype)


def _lisa_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clip",
        default=None,
        help="CLIP vision tower when the checkpoint has none (LISA's released weights do not): a transformers "
        "CLIPVisionModel/CLIPModel folder or Hub id (default: openai/clip-vit-large-patch14)",
    )
    parser.add_argument(
        "--sam",
        default=None,
        help="use this SAM instead of LISA's (as the released MoRA training did): Meta's sam_vit_h_4b8939.pth or "
        "a transformers SamModel folder / Hub id (facebook/sam-vit-huge); LISA's [SEG] projector is kept",
    )


# name -> (help, checkpoint help, runner)
CONVERTERS: dict[str, tuple[str, str, Callable[[argparse.Namespace], Path]]] = {
    "sam": (
        "Meta's segment-anything checkpoint (ViT-B/L/H .pth) -> transformers SamModel folder",
        "sam_vit_{b,l,h}_*.pth (or .bin/.safetensors/.index.json)",
        _run_sam,
    ),
    "sam2": (
        "Meta's SAM2 / SAM2.1 checkpoint (Hiera tiny/small/base+/large .pt) -> transformers Sam2VideoModel folder",
        "sam2[.1]_hiera_*.pt (or .bin/.safetensors/.index.json)",
        _run_sam2,
    ),
    "lisa": (
        "LISA / MoRA-original checkpoint (xinlai/LISA-7B-v1, groundmore/mora-zs-lisa7b) -> mora checkpoint "
        "folder (preset lisa_7b_sam_vit_h, with processor and tokenizer)",
        "folder (.bin shards + index, safetensors) or Hub id of the LISA-layout checkpoint, with its "
        "config.json and tokenizer",
        _run_lisa,
    ),
}
# name -> function adding the sub-command's own arguments
EXTRA_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {"lisa": _lisa_arguments}


def add_convert_parser(sub: argparse._SubParsersAction, handler: Callable[[argparse.Namespace], int]) -> None:
    """Add ``convert`` with one sub-command per ``CONVERTERS`` entry; ``handler`` runs the chosen one."""
    convert = sub.add_parser("convert", help="convert an original checkpoint into a folder mora loads")
    kinds = convert.add_subparsers(dest="kind", required=True)
    for name, (help_text, checkpoint_help, _) in CONVERTERS.items():
        parser = kinds.add_parser(name, help=help_text, description=help_text)
        _common(parser, checkpoint_help)
        if name in EXTRA_ARGUMENTS:
            EXTRA_ARGUMENTS[name](parser)
        parser.set_defaults(func=handler)


def run_converter(args: argparse.Namespace) -> Path:
    """Run the converter chosen by ``args.kind``."""
    return CONVERTERS[args.kind][2](args)
