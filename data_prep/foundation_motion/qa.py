"""Stage 5 (rule-based backend and the checks every backend's output goes through).

A ``QA`` names its answer object and carries *claims*: machine-checkable statements about the facts
that make the question and answer true ("the red square moves left and no other object does"). The
rule-based backend writes claims as it builds each question; LLM backends are asked for them in their
JSON. ``verify`` re-checks every claim (and the answer text, span and choices) against the facts; a QA
with any failed check, or without claims, is dropped.

Types: GroundMoRe's four (Causal, Sequential, Counterfactual, Descriptive; answer = an object, span =
its motion) and FoundationMotion's multiple-choice types (options inline in the question and in
``choices``; ``correct_choice`` is the letter).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from data_prep.foundation_motion.facts import REGIONS_X, ClipFacts, ObjectFacts

GROUNDMORE_TYPES = ("Causal", "Sequential", "Counterfactual", "Descriptive")
MC_TYPES = (
    "Motion Recognition",
    "Action Order",
    "Motion-related Objects",
    "Location-related Motion",
    "Repetition Count",
    "Direction and Speed",
    "Spatial Relationship",
)
LETTERS = "ABCDEFGH"
DIRECTIONS = ("left", "right", "up", "down")
SEQUENCE_TOLERANCE_S = 0.5  # "starts after X stops": within this many seconds of X's last motion frame
FASTEST_MARGIN = 1.2


@dataclass
class QA:
    question: str
    answer: str
    q_type: str
    obj_id: int  # the answer object (whose masks the sample carries)
    span: list[int] | None  # its motion span, inclusive frames
    claims: list[dict]
    choices: list[str] | None = None
    correct_choice: str | None = None
    backend: str = "rule-based"
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> QA:
        return cls(**d)


# ---------------------------------------------------------------- claims


def _first_start(o: ObjectFacts) -> int | None:
    return o.spans[0].start if o.spans else None


def _follows(facts: ClipFacts, a: ObjectFacts, b: ObjectFacts) -> bool:
    if not a.spans or not b.spans or a.obj_id == b.obj_id:
        return False
    tol = max(2, int(round(SEQUENCE_TOLERANCE_S * facts.fps)))
    return a.spans[-1].end - 1 <= b.spans[0].start <= a.spans[-1].end + tol


def _end_relation(a: ObjectFacts, b: ObjectFacts) -> str | None:
    if a.end_position is None or b.end_position is None:
        return None
    dx, dy = a.end_position[0] - b.end_position[0], a.end_position[1] - b.end_position[1]
    if abs(dx) >= 2 * abs(dy):
        return "left of" if dx < 0 else "right of"
    if abs(dy) >= 2 * abs(dx):
        return "above" if dy < 0 else "below"
    return None


def check_claim(claim: dict, facts: ClipFacts) -> str | None:
    """None when the claim holds, else what is wrong."""
    try:
        kind = claim["kind"]
        ids = {o.obj_id: o for o in facts.objects}
        movers = [o for o in facts.objects if o.moving]
        o = ids[claim["obj"]] if "obj" in claim else None
        if kind == "direction":
            ok = any(s.direction == claim["direction"] for s in o.spans)
        elif kind == "unique_direction":
            ok = [m.obj_id for m in movers if any(s.direction == claim["direction"] for s in m.spans)] == [
                o.obj_id
            ]
        elif kind == "static":
            ok = not o.moving
        elif kind == "moving":
            ok = o.moving
        elif kind == "only_mover":
            ok = [m.obj_id for m in movers] == [o.obj_id]
        elif kind == "starts_after":
            a, b = ids[claim["first"]], ids[claim["second"]]
            ok = _follows(facts, a, b) and [m.obj_id for m in movers if _follows(facts, a, m)] == [b.obj_id]
        elif kind == "pushes":
            ok = any(p.pusher == claim["pusher"] and p.pushed == claim["pushed"] for p in facts.pushes)
            ok = ok and [p.pusher for p in facts.pushes if p.pushed == claim["pushed"]] == [claim["pusher"]]
        elif kind == "first_to_move":
            starts = sorted(_first_start(m) for m in movers)
            ok = o.moving and _first_start(o) == starts[0] and (len(starts) == 1 or starts[1] > starts[0])
        elif kind == "repetitions":
            ok = o.repetitions == int(claim["count"])
        elif kind == "end_region":
            ok = o.end_region == claim["region"] and o.start_region != o.end_region
        elif kind == "fastest":
            others = [m.mean_speed for m in movers if m.obj_id != o.obj_id]
            ok = o.moving and bool(others) and o.mean_speed >= FASTEST_MARGIN * max(others)
        elif kind == "relative_position":
            ok = _end_relation(o, ids[claim["ref"]]) == claim["relation"]
        else:
            return f"unknown claim kind {kind!r}"
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return f"malformed claim {claim} ({exc})"
    return None if ok else f"claim does not hold: {claim}"


def verify(qa: QA, facts: ClipFacts) -> list[str]:
    """Every problem of a QA against the facts (empty = keep it)."""
    problems = []
    ids = {o.obj_id: o for o in facts.objects}
    if qa.q_type not in GROUNDMORE_TYPES + MC_TYPES:
        problems.append(f"unknown q_type {qa.q_type!r}")
    if qa.obj_id not in ids:
        return [*problems, f"answer object {qa.obj_id} is not in the clip"]
    obj = ids[qa.obj_id]
    if not qa.claims:
        problems.append("no claims to check")
    problems.extend(p for p in (check_claim(c, facts) for c in qa.claims) if p)
    if qa.span is not None:
        span = list(qa.span)
        if not 0 <= span[0] <= span[1] < facts.num_frames:
            problems.append(f"span {span} outside the clip's {facts.num_frames} frames")
        if span not in [[s.start, s.end] for s in obj.spans]:
            problems.append(f"span {span} is not a motion span of object {qa.obj_id}")
    if qa.choices is None:
        if qa.q_type not in GROUNDMORE_TYPES:
            problems.append("a multiple-choice type without choices")
        if obj.name.lower() not in qa.answer.lower():
            problems.append(f"answer {qa.answer!r} does not name the answer object {obj.name!r}")
    else:
        letters = LETTERS[: len(qa.choices)]
        if len(set(qa.choices)) != len(qa.choices) or len(qa.choices) < 2:
            problems.append("choices are not distinct")
        if qa.correct_choice not in letters:
            problems.append(f"correct_choice {qa.correct_choice!r} not in {letters}")
        elif qa.choices[letters.index(qa.correct_choice)].lower() not in qa.answer.lower():
            problems.append("the answer is not the correct choice")
    return problems


# ---------------------------------------------------------------- rule-based generation


def _the(o: ObjectFacts) -> str:
    return f"the {o.name}"


def _span(o: ObjectFacts) -> list[int] | None:
    s = o.main_span
    return None if s is None else [s.start, s.end]


def _unique_names(facts: ClipFacts) -> list[ObjectFacts]:
    """Objects whose name is unique in the clip (others cannot be named unambiguously)."""
    names = [o.name for o in facts.objects]
    return [o for o in facts.objects if names.count(o.name) == 1]


def groundmore_questions(facts: ClipFacts) -> list[QA]:
    objs = _unique_names(facts)
    movers = [o for o in objs if o.moving]
    out: list[QA] = []
    for d in DIRECTIONS:
        cand = [o for o in movers if any(s.direction == d for s in o.spans)]
        if len(cand) == 1:
            o = cand[0]
            span = next([s.start, s.end] for s in o.spans if s.direction == d)
            text = f"Which object moves {'to the ' + d if d in ('left', 'right') else d}?"
            claims = [{"kind": "unique_direction", "obj": o.obj_id, "direction": d}]
            out.append(QA(text, _the(o).capitalize() + ".", "Descriptive", o.obj_id, span, claims))
    for x in movers:
        after = [o for o in movers if _follows(facts, x, o)]
        if len(after) == 1:
            b = after[0]
            claims = [{"kind": "starts_after", "first": x.obj_id, "second": b.obj_id}]
            q = f"Which object starts moving after {_the(x)} stops?"
            out.append(
                QA(
                    q,
                    _the(b).capitalize() + ".",
                    "Sequential",
                    b.obj_id,
                    [b.spans[0].start, b.spans[0].end],
                    claims,
                )
            )
    by_id = {o.obj_id: o for o in objs}
    for p in facts.pushes:
        if p.pusher not in by_id or p.pushed not in by_id:
            continue
        a, b = by_id[p.pusher], by_id[p.pushed]
        claims = [{"kind": "pushes", "pusher": a.obj_id, "pushed": b.obj_id}]
        a_span = next([s.start, s.end] for s in a.spans if s.start <= p.frame <= s.end + 1)
        out.append(
            QA(f"What made {_the(b)} move?", _the(a).capitalize() + ".", "Causal", a.obj_id, a_span, claims)
        )
        q = f"Which object would have stayed still if {_the(a)} had not moved?"
        out.append(
            QA(
                q,
                _the(b).capitalize() + ".",
                "Counterfactual",
                b.obj_id,
                [b.spans[0].start, b.spans[0].end],
                claims,
            )
        )
    return out


def _mc(
    stem: str, correct: str, distractors: list[str], rng, num_choices: int
) -> tuple[str, list[str], str, str]:
    options = [correct] + [d for d in dict.fromkeys(distractors) if d != correct][: num_choices - 1]
    order = rng.permutation(len(options))
    choices = [options[i] for i in order]
    letter = LETTERS[choices.index(correct)]
    text = stem + "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return text, choices, letter, f"{letter}. {correct}"


def _motion_phrase(o: ObjectFacts) -> str:
    return f"moves {o.main_span.direction}" if o.moving else "stays still"


def multiple_choice_questions(facts: ClipFacts, rng: np.random.Generator, num_choices: int) -> list[QA]:
    objs = _unique_names(facts)
    movers = [o for o in objs if o.moving]
    out: list[QA] = []

    def add(q_type, stem, correct, distractors, obj, claims, span="motion"):
        if len(set(distractors) - {correct}) < 1:
            return
        text, choices, letter, answer = _mc(stem, correct, distractors, rng, num_choices)
        out.append(
            QA(
                text,
                answer,
                q_type,
                obj.obj_id,
                _span(obj) if span == "motion" else None,
                claims,
                choices,
                letter,
            )
        )

    phrases = ["moves left", "moves right", "moves up", "moves down", "stays still"]
    for o in objs:
        if o.moving and len(o.spans) == 1 and o.main_span.direction in DIRECTIONS:
            claims = [{"kind": "direction", "obj": o.obj_id, "direction": o.main_span.direction}]
        elif not o.moving:
            claims = [{"kind": "static", "obj": o.obj_id}]
        else:
            continue
        add("Motion Recognition", f"What does {_the(o)} do?", _motion_phrase(o), phrases, o, claims)
    names = [o.name for o in objs]
    if movers:
        first = min(movers, key=lambda m: m.spans[0].start)
        claims = [{"kind": "first_to_move", "obj": first.obj_id}]
        if check_claim(claims[0], facts) is None and len(movers) > 1:
            add(
                "Action Order",
                "Which object starts moving first?",
                first.name,
                [m.name for m in movers],
                first,
                claims,
            )
    if len(movers) == 1 and len(objs) > 1:
        o = movers[0]
        add(
            "Motion-related Objects",
            "Which object moves in the video?",
            o.name,
            names,
            o,
            [{"kind": "only_mover", "obj": o.obj_id}],
        )
    for o in movers:
        if o.end_region and o.start_region != o.end_region:
            regions = [f"{r} {c}" for r in ("top", "bottom") for c in REGIONS_X if c != "centre"] + ["centre"]
            claims = [{"kind": "end_region", "obj": o.obj_id, "region": o.end_region}]
            add(
                "Location-related Motion",
                f"Where does {_the(o)} end up?",
                o.end_region,
                [o.start_region, *regions],
                o,
                claims,
            )
        counts = [str(n) for n in range(4)]
        if o.repetitions < 4:
            claims = [{"kind": "repetitions", "obj": o.obj_id, "count": o.repetitions}]
            stem = f"How many times does {_the(o)} reverse its direction of motion?"
            add("Repetition Count", stem, str(o.repetitions), counts, o, claims)
    if len(movers) > 1:
        fast = max(movers, key=lambda m: m.mean_speed)
        claims = [{"kind": "fastest", "obj": fast.obj_id}]
        if check_claim(claims[0], facts) is None:
            add(
                "Direction and Speed",
                "Which object moves the fastest?",
                fast.name,
                [m.name for m in movers],
                fast,
                claims,
            )
    relations = ["left of", "right of", "above", "below"]
    for a in movers:
        for b in objs:
            rel = _end_relation(a, b) if b is not a else None
            if rel:
                claims = [{"kind": "relative_position", "obj": a.obj_id, "ref": b.obj_id, "relation": rel}]
                stem = f"At the end of the video, where is {_the(a)} relative to {_the(b)}?"
                add("Spatial Relationship", stem, rel, relations, a, claims)
                break
    return out


def rule_based_qas(
    facts: ClipFacts, *, multiple_choice: bool, num_choices: int, seed: int, limit: int
) -> list[QA]:
    """Every question the facts support (GroundMoRe types first), at most ``limit``."""
    rng = np.random.default_rng([seed, zlib.crc32(facts.clip_id.encode("utf-8"))])
    qas = groundmore_questions(facts)
    if multiple_choice:
        qas += multiple_choice_questions(facts, rng, num_choices)
    return qas[:limit]
