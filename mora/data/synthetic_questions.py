"""Questions about a synthetic scene, one family per GroundMoRe question type.

Every question is answerable from motion alone (colours and shapes are drawn independently of the
script) and unambiguous (a candidate is kept only when exactly one object fits). The answer is always
one object and its span is that object's motion.

- Descriptive: which object moves in a direction.
- Sequential: which object starts moving when another stops (or stops when another starts).
- Causal: which object made another move (its pusher or the leader it follows).
- Counterfactual: which object would have stayed still had another not moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mora.data.synthetic_scene import DIRECTIONS, Scene

DESCRIPTIVE = {
    "left": ("Which object moves to the left?", "Which object is moving leftward?"),
    "right": ("Which object moves to the right?", "Which object is moving rightward?"),
    "up": ("Which object moves up?", "Which object is moving upward?"),
    "down": ("Which object moves down?", "Which object is moving downward?"),
}
SEQUENTIAL_AFTER = (
    "Which object starts moving after the {x} stops?",
    "After the {x} stops, which object starts to move?",
)
SEQUENTIAL_BEFORE = ("Which object stops moving just before the {x} starts to move?",)
CAUSAL = ("What made the {x} move?", "Which object caused the {x} to move?")
COUNTERFACTUAL = (
    "Which object would have stayed still if the {x} had not moved?",
    "If the {x} had not moved, which object would have stayed still?",
)


def question_templates() -> list[str]:
    """Every question template (``{x}`` = the named object), e.g. for a tokenizer's training corpus."""
    out = [t for pair in DESCRIPTIVE.values() for t in pair]
    return out + [*SEQUENTIAL_AFTER, *SEQUENTIAL_BEFORE, *CAUSAL, *COUNTERFACTUAL]


@dataclass(frozen=True)
class SceneQuestion:
    q_type: str
    templates: tuple[str, ...]
    subject: int | None  # object the question names, if any
    answer: int  # object index of the answer
    start: int  # answer's motion, whole seconds (exclusive end)
    end: int

    def text(self, scene: Scene, choice: int) -> str:
        template = self.templates[choice % len(self.templates)]
        return template.format(x=scene.objects[self.subject].name) if self.subject is not None else template


def _only(candidates: list[int]) -> int | None:
    return candidates[0] if len(candidates) == 1 else None


def candidate_questions(scene: Scene) -> dict[str, list[SceneQuestion]]:
    """Every unambiguous question the scene supports, by question type."""
    objs = scene.objects
    motions = [o.motion for o in objs]
    movers = [i for i, m in enumerate(motions) if m is not None]
    out: dict[str, list[SceneQuestion]] = {
        "Descriptive": [],
        "Sequential": [],
        "Causal": [],
        "Counterfactual": [],
    }

    def q(q_type: str, templates: tuple[str, ...], subject: int | None, answer: int) -> SceneQuestion:
        m = motions[answer]
        return SceneQuestion(q_type, templates, subject, answer, m.start, m.end)

    for direction in DIRECTIONS:
        answer = _only([i for i in movers if motions[i].direction == direction])
        if answer is not None:
            out["Descriptive"].append(q("Descriptive", DESCRIPTIVE[direction], None, answer))
    for x in movers:
        mx = motions[x]
        after = _only([i for i in movers if i != x and motions[i].start == mx.end])
        if after is not None:
            out["Sequential"].append(q("Sequential", SEQUENTIAL_AFTER, x, after))
        before = _only([i for i in movers if i != x and motions[i].end == mx.start]) if mx.start > 0 else None
        if before is not None:
            out["Sequential"].append(q("Sequential", SEQUENTIAL_BEFORE, x, before))
        if mx.cause is not None:
            out["Causal"].append(q("Causal", CAUSAL, x, mx.cause))
        dependent = _only([i for i in movers if motions[i].cause == x])
        if dependent is not None:
            out["Counterfactual"].append(q("Counterfactual", COUNTERFACTUAL, x, dependent))
    return out


def pick_questions(rng: np.random.Generator, scene: Scene) -> list[tuple[SceneQuestion, str]]:
    """At most one question per type, each with its phrasing drawn at random."""
    picked = []
    for options in candidate_questions(scene).values():
        if options:
            question = options[int(rng.integers(len(options)))]
            picked.append((question, question.text(scene, int(rng.integers(len(question.templates))))))
    return picked
