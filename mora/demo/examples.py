"""Bundled examples of the demo page: small synthetic mp4s of moving shapes with one of their questions.

They are rendered on first use into a cache folder (deterministic: the same seeds give the same scenes and
questions) instead of being committed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mora.data.synthetic_plan import SceneSettings, plan_scene
from mora.data.synthetic_questions import pick_questions
from mora.data.synthetic_scene import FPS, Scene, render
from mora.inference.writers import VideoWriter
from mora.utils.io import atomic_path

EXAMPLE_SEEDS = (0, 1, 2)
EXAMPLE_SETTINGS = SceneSettings(size=96, min_seconds=4, max_seconds=5, max_objects=3, max_object_size=24)


@dataclass(frozen=True)
class DemoExample:
    video: Path
    question: str


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mora/demo-examples`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mora" / "demo-examples"


def _scene(seed: int) -> tuple[Scene, str]:
    """A scene with at least one question, and its first question's text."""
    rng = np.random.default_rng([seed, 7])
    while True:
        scene = plan_scene(rng, EXAMPLE_SETTINGS)
        questions = pick_questions(rng, scene)
        if questions:
            return scene, questions[0][1]


def example_videos(cache_dir: str | os.PathLike | None = None) -> list[DemoExample]:
    """The bundled examples, rendering the mp4s missing from ``cache_dir`` (written atomically)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    examples = []
    for seed in EXAMPLE_SEEDS:
        scene, question = _scene(seed)
        path = folder / f"shapes_{seed}.mp4"
        if not path.is_file():
            frames, _ = render(scene)
            T, H, W, _ = frames.shape
            with atomic_path(path) as tmp:
                writer = VideoWriter(tmp, W, H, FPS)
                for frame in frames:
                    writer.write(frame)
                writer.close()
        examples.append(DemoExample(path, question))
    return examples
