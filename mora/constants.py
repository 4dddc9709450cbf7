"""Special tokens, prompt templates and protocol constants shared by model, data and evaluation."""

from __future__ import annotations

SEG_TOKEN = "[SEG]"  # its hidden state prompts the mask engine
LOC_TOKEN = "[LOC]"  # its hidden state scores every frame for the motion span
VIDEO_TOKEN = "<video>"  # placeholder in prompts; the processor expands it to the visual tokens
IGNORE_INDEX = -100  # label value ignored by the cross-entropy

# The MoRA paper's instruction (Sec. 4.2) and answer templates.
SPATIOTEMPORAL_INSTRUCTION = (
    "Please output the spatiotemporal segmentation masks as the answer to the question "
    "according to both temporal and spatial motion clues."
)
ANSWER_WITH_SPAN = f"Sure, the target object is {SEG_TOKEN}, and the temporal boundary is {LOC_TOKEN}."
ANSWER_NO_SPAN = f"Sure, the target object is {SEG_TOKEN}."

# GroundMoRe protocol (its released evaluation script: 6 fps frames, 20 evaluated frames per clip).
GROUNDMORE_FPS = 6
GROUNDMORE_NUM_EVAL_FRAMES = 20
GROUNDMORE_Q_TYPES = ("Causal", "Sequential", "Counterfactual", "Descriptive")

# DAVIS boundary tolerance as a fraction of the image diagonal.
BOUNDARY_THRESHOLD = 0.008
