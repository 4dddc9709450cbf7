"""J (region similarity) and F (boundary F-measure), exact DAVIS-2017 definitions, vectorised.

``jaccard(annotation, segmentation)`` and ``boundary_f(annotation, segmentation, bound_th=0.008)`` take
``[H, W]`` or ``[T, H, W]`` arrays (any non-zero value is foreground) and return float64 per frame.
``jaccard_and_boundary_f`` computes both from one bit-packing of the masks.
"""

from mora.metrics.boundary import boundary_tolerance
from mora.metrics.region import (
    boundary_f,
    empty_prediction_scores,
    jaccard,
    jaccard_and_boundary_f,
    jaccard_and_boundary_f_with_baseline,
)

__all__ = [
    "boundary_f",
    "boundary_tolerance",
    "empty_prediction_scores",
    "jaccard",
    "jaccard_and_boundary_f",
    "jaccard_and_boundary_f_with_baseline",
]
