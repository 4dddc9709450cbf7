"""mora: pixel-grounded motion reasoning in video (MoRA, GroundMoRe CVPR 2025).

Shape legend (used in every docstring and shape comment of the package):
    B  batch (questions)             V  videos of a batch (questions of one video share its encoding)
    T  frames (sampled clip length)  BT frames handled together by a per-frame module (mask engine,
                                        pixel MLP): any set of frames, e.g. all B*T of a batch
    k  key frames of a propagation   s  stride between the two frames of a difference
    O  objects                       K  [SEG] tokens
    L  text / sequence length        N  visual tokens (of a video)
    n  patch tokens per frame        d  vision-tower width
    D  language-model hidden size    C  mask-engine prompt / feature dim
    P  prompt tokens per frame       Q  query states per question ([SEG], [LOC], ...)
    R  query rows of a video (its questions' queries)
    M  supervised masks (frames with a target)
    g  motion grid side (g*g motion tokens per difference)   m  motion tokens per frame pair
    e  pixel-embedding width of the pixel mask path          c  input channels of a frame (3)
    H, W  pixels of the input video  h, w  feature-grid or low-resolution mask size
    I  side of the square backbone frames  S  mask-engine input side (square, after resize + pad)
    vocab  vocabulary size
Subscripts name a part: T_llm frames the language model sees, N_v / N_m its video / motion tokens.

Public objects are imported lazily so that ``import mora.metrics`` does not pull in the model.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "MoRAConfig": "mora.configuration_mora",
    "MoRAForVideoGrounding": "mora.model.modeling_mora",
    "MoRAProcessor": "mora.processing.processing_mora",
    "Prediction": "mora.model.prediction",
    "load_model": "mora.hub",
    "presets": "mora.presets",
    "metrics": "mora.metrics",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith(name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mora' has no attribute {name!r}")
