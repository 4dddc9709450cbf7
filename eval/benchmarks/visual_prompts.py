"""GroundMoRe J&F of one checkpoint under each MotionSight visual prompt, in one table.

    python eval/benchmarks/visual_prompts.py --model runs/tiny/export --data-root data/synthetic \\
        [--meta test.json] [--videos 100] [--prompts none spotlight blur auto] [--out runs/visual_prompts]

Each prompt runs the GroundMoRe evaluator (`eval/evaluate_groundmore.py --visual-prompt P`) on the same
questions (the first ``--videos`` videos of the meta file, all by default) and the table lists J&F overall and
per question type, temporal IoU and the inference time. Spotlight and crop cost two passes per question.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mora.constants import GROUNDMORE_Q_TYPES  # noqa: E402
from mora.utils.io import write_json_atomic  # noqa: E402
from mora.visual_prompts import VISUAL_PROMPTS  # noqa: E402


def subset_meta(meta: Path, videos: int | None, out: Path) -> Path:
    """A GroundMoRe meta file with the first ``videos`` videos of ``meta`` (``meta`` itself when None)."""
    if videos is None:
        return meta
    data = json.loads(meta.read_text())
    keep = dict(list(data["videos"].items())[:videos])
    path = out / f"{meta.stem}_first{videos}.json"
    write_json_atomic(path, {**data, "videos": keep})
    return path


def evaluate(model: str, data_root: Path, meta: Path, prompt: str, out: Path) -> tuple[dict, float]:
    """Scores of ``model`` with visual prompt ``prompt`` and the seconds the evaluator took."""
    cmd = [
        sys.executable,
        str(ROOT / "eval/evaluate_groundmore.py"),
        "--model",
        model,
        "--data-root",
        str(data_root),
        "--meta",
        str(meta),
        "--out",
        str(out),
        "--visual-prompt",
        prompt,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "scores.json").read_text()), time.perf_counter() - start


def table(rows: dict[str, tuple[dict, float]]) -> str:
    head = ["prompt", "J&F", *GROUNDMORE_Q_TYPES, "tIoU", "empty", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for prompt, (scores, seconds) in rows.items():
        cells = [prompt, f"{scores['overall']['JF']:.3f}"]
        cells += [f"{scores[t]['JF']:.3f}" if t in scores else "" for t in GROUNDMORE_Q_TYPES]
        cells += [f"{scores['overall'].get('tIoU', float('nan')):.2f}"]
        cells += [f"{scores['baseline_empty']['overall']['JF']:.3f}", f"{seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--meta", default="test.json", help="meta file under --data-root")
    parser.add_argument("--videos", type=int, default=None, help="score the first N videos only")
    parser.add_argument(
        "--prompts", nargs="+", choices=VISUAL_PROMPTS, default=["none", "spotlight", "blur", "auto"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs/visual_prompts")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = subset_meta(args.data_root / args.meta, args.videos, args.out)
    rows = {p: evaluate(args.model, args.data_root, meta, p, args.out / p) for p in args.prompts}
    text = table(rows)
    (args.out / "table.md").write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
