"""Converters from original checkpoints to folders that transformers and mora load (``mora convert ...``).

* ``convert_sam``: Meta's segment-anything ``.pth`` (ViT-B/L/H) -> transformers ``SamModel``.
* ``convert_sam2``: Meta's SAM2 / SAM2.1 ``.pt`` (Hiera tiny/small/base+/large) -> ``Sam2VideoModel``.
* ``convert_lisa``: LISA / MoRA-original checkpoints -> a mora ``MoRAForVideoGrounding`` folder (preset
  ``lisa_7b_sam_vit_h``) with its processor and tokenizer.

All read sizes from the tensors, consume every source key (or ignore it by an explicit list), and write
the output folder atomically; ``checkpoint_io`` holds the shared loading rules. The names below are
imported on first use, so ``mora --help`` does not load transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConversionError": "mora.convert.checkpoint_io",
    "load_state_dict": "mora.convert.checkpoint_io",
    "convert_sam": "mora.convert.sam",
    "convert_sam_state_dict": "mora.convert.sam",
    "convert_sam2": "mora.convert.sam2",
    "convert_sam2_state_dict": "mora.convert.sam2",
    "HieraLayout": "mora.convert.sam2",
    "convert_lisa": "mora.convert.lisa",
    "convert_lisa_state_dict": "mora.convert.lisa",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mora.convert' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
