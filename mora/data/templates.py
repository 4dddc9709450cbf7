"""Question templates: referring expressions become questions; GroundMoRe questions stay as written."""

from __future__ import annotations

import numpy as np

from mora.data.schema import VideoSample

REFERRING_QUESTIONS = (
    "Can you segment {exp} in this video?",
    "Please segment {exp} in this video.",
    "What is {exp} in this video? Please respond with a segmentation mask.",
    "Where is {exp} in this video? Please output the segmentation mask.",
)


def normalise_expression(expression: str) -> str:
    """``"The dog running."`` -> ``"the dog running"`` (template-ready noun phrase)."""
    text = " ".join(expression.split()).rstrip(" .")
    return text if text[1:2].isupper() else text[:1].lower() + text[1:]


def question_for(sample: VideoSample, rng: np.random.Generator | None = None) -> str:
    """The question text fed to the model for ``sample``.

    Samples marked ``extra["expression"]`` (referring datasets) are wrapped in a random template,
    unless the expression is already a question; everything else is used as written.
    """
    text = sample.question
    if not sample.extra.get("expression") or text.rstrip().endswith("?"):
        return text
    choice = 0 if rng is None else int(rng.integers(len(REFERRING_QUESTIONS)))
    return REFERRING_QUESTIONS[choice].format(exp=normalise_expression(text))
