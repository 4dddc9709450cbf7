"""From per-question records to ``scores.json`` and the printed table.

RVOS convention (MeViS, ReVOS, GroundMoRe, ...): J and F are averaged over each question's frames,
then over questions; ``JF = (J + F) / 2``. ``baseline_empty`` holds the same numbers for empty masks
on every frame of the same questions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mora.utils.io import write_json_atomic, write_text_atomic

Summary = dict[str, Any]


def _summary(records: list[dict[str, Any]], j_key: str = "J", f_key: str = "F") -> Summary:
    j = float(np.mean([r[j_key] for r in records])) if records else float("nan")
    f = float(np.mean([r[f_key] for r in records])) if records else float("nan")
    out: Summary = {"J": j, "F": f, "JF": (j + f) / 2, "n": len(records)}
    if j_key == "J":
        out["missing_questions"] = sum(bool(r.get("missing")) for r in records)
        out["missing_frames"] = sum(int(r.get("missing_frames", 0)) for r in records)
        tiou = [r["tIoU"] for r in records if r.get("tIoU") is not None]
        jf_in = [r["JF_in"] for r in records if r.get("JF_in") is not None]
        if tiou:
            out["tIoU"] = float(np.mean(tiou))
        if jf_in:
            out["JF_in"] = float(np.mean(jf_in))
        true_span = [r["JF_true_span"] for r in records if r.get("JF_true_span") is not None]
        if true_span:
            out["JF_true_span"] = float(np.mean(true_span))
    return out


def mean_of_categories(per_category: dict[str, Summary], categories: Iterable[str]) -> Summary:
    """Overall as the plain mean of category means (ReVOS convention)."""
    chosen = [per_category[c] for c in categories if c in per_category]
    j = float(np.mean([s["J"] for s in chosen])) if chosen else float("nan")
    f = float(np.mean([s["F"] for s in chosen])) if chosen else float("nan")
    return {"J": j, "F": f, "JF": (j + f) / 2, "n": sum(s["n"] for s in chosen)}


def aggregate(
    records: list[dict[str, Any]],
    category_order: Iterable[str] = (),
    overall: Callable[[list[dict[str, Any]], dict[str, Summary]], Summary] | None = None,
) -> dict[str, Any]:
    """``scores.json`` content: ``overall``, one entry per category present, and ``baseline_empty``.

    Args:
        records: outputs of :func:`mora.evaluation.scoring.score_job`.
        category_order: preferred order of categories (others follow alphabetically).
        overall: custom overall rule ``(records, per_category) -> summary``; default: mean over records.
    """
    order = list(category_order)
    present = {r["category"] for r in records if r.get("category") is not None}
    cats = [c for c in order if c in present] + sorted(present - set(order))

    def build(j_key: str, f_key: str) -> dict[str, Summary]:
        per_cat = {c: _summary([r for r in records if r.get("category") == c], j_key, f_key) for c in cats}
        if overall is None:
            top = _summary(records, j_key, f_key)
        else:
            top = overall([dict(r, J=r[j_key], F=r[f_key]) for r in records], per_cat)
        return {"overall": top, **per_cat}

    scores: dict[str, Any] = build("J", "F")
    scores["baseline_empty"] = build("J_empty", "F_empty")
    return scores


def format_table(scores: dict[str, Any], title: str = "") -> str:
    """Plain-text table: J, F, J&F, n per category and overall, beside the empty-mask baseline (and, when
    scored, temporal IoU, J&F on in-span frames, the J&F of the masks before span gating and of the same
    masks gated by the true span)."""
    base = scores.get("baseline_empty", {})
    rows = [k for k in scores if k != "baseline_empty" and k != "overall"] + ["overall"]
    temporal = any("tIoU" in scores[k] for k in rows)
    ungated = any("JF_ungated" in scores[k] for k in rows)
    true_span = any("JF_true_span_ungated" in scores[k] for k in rows)
    head = f"{'':<16}{'J':>8}{'F':>8}{'J&F':>8}{'n':>7}  |{'empty J':>9}{'F':>8}{'J&F':>8}"
    if temporal:
        head += f"  |{'tIoU':>7}{'J&F in':>8}"
    if ungated:
        head += f"  |{'ungated':>8}"
    if true_span:
        head += f"{'true span':>10}"
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for k in rows:
        s, b = scores[k], base.get(k, {})
        line = f"{k:<16}{100 * s['J']:8.2f}{100 * s['F']:8.2f}{100 * s['JF']:8.2f}{s['n']:7d}  |"
        line += f"{100 * b.get('J', float('nan')):9.2f}{100 * b.get('F', float('nan')):8.2f}"
        line += f"{100 * b.get('JF', float('nan')):8.2f}"
        if temporal:
            line += f"  |{100 * s.get('tIoU', float('nan')):7.2f}{100 * s.get('JF_in', float('nan')):8.2f}"
        if ungated:
            line += f"  |{100 * s.get('JF_ungated', float('nan')):8.2f}"
        if true_span:
            line += f"{100 * s.get('JF_true_span_ungated', float('nan')):10.2f}"
        lines.append(line)
    missing = scores["overall"].get("missing_questions", 0)
    if missing:
        lines.append(f"({missing} questions had no prediction folder and were scored as empty masks)")
    return "\n".join(lines)


def write_outputs(
    out_dir: str | os.PathLike, records: list[dict[str, Any]], scores: dict[str, Any], table: str
):
    """``O/scores.json``, ``O/per_question.jsonl`` and ``O/table.txt``, each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "scores.json", scores)
    write_text_atomic(out / "per_question.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write_text_atomic(out / "table.txt", table + "\n")
