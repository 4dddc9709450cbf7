"""mora: pixel-grounded motion reasoning in video (MoRA, GroundMoRe CVPR 2025).

Shape legend (used in every docstring and shape comment of the package):
    B  batch                         T  frames (sampled clip length)
    O  objects                       K  [SEG] tokens
    L  text / sequence length        N  visual tokens
    D  language-model hidden size    C  mask-engine prompt / feature dim
    H, W  pixels                     h, w  feature-grid or low-resolution mask size
    S  mask-engine input side (square, after resize + pad)

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
