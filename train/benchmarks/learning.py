"""The learning benchmark: does the whole pipeline learn? Reports, for the tiny default trained by
``bash run.sh`` (its export and its scores.json):

* J&F overall and per question type against the empty-mask baseline (target: >= 0.75 overall and
  >= baseline + 0.20 on every type), and the temporal IoU of the predicted spans;
* the same model with ``[LOC]`` gating switched off (``predict(..., gate=False)``, the evaluator's
  ``--no-gate``);
* which object the ungated masks cover on in-span frames (the answer, the object the question names,
  another one, several at once: `which_object.py`), when the data is the seed-0 synthetic set run.sh
  writes (``--data-seed`` otherwise);
* optionally (``--ablate-motion``) a model trained with the same recipe but without motion tokens
  (``model.config_overrides.use_motion_tokens=false``), evaluated the same way.

    python train/benchmarks/learning.py [--run runs/tiny] [--export EXPORT] [--ablate-motion] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mora.constants import GROUNDMORE_Q_TYPES  # noqa: E402

TARGET_OVERALL = 0.75
TARGET_MARGIN = 0.20


def evaluate(model: Any, data_root: Path, out: Path, gate: bool = True) -> dict:
    from mora.evaluation import groundmore

    kwargs = {} if gate else {"gate": False}
    return groundmore.evaluate(data_root, data_root / "test.json", out, model=model, predict_kwargs=kwargs)


def verdict(scores: dict) -> dict:
    base = scores["baseline_empty"]
    types = [t for t in GROUNDMORE_Q_TYPES if t in scores]
    margins = {t: scores[t]["JF"] - base[t]["JF"] for t in types}
    return {
        "overall_JF": scores["overall"]["JF"],
        "baseline_JF": base["overall"]["JF"],
        "margins": margins,
        "tIoU": scores["overall"].get("tIoU"),
        "passed": scores["overall"]["JF"] >= TARGET_OVERALL
        and all(m >= TARGET_MARGIN for m in margins.values()),
    }


def which_object_report(pred_dir: Path, data_root: Path, seed: int) -> dict | None:
    """Fractions of in-span frames per category and question type (None when the scenes of ``seed`` do not
    match the data, e.g. a dataset generated with another seed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import which_object

    try:
        counts = which_object.diagnose(pred_dir, data_root, data_root / "test.json", seed, min_iou=0.3)
    except SystemExit as err:
        print(f"which-object diagnosis skipped: {err}")
        return None
    total: dict[str, int] = {}
    rows = {}
    for q_type, row in sorted(counts.items()):
        n = sum(row.values())
        rows[q_type] = {c: row[c] / max(n, 1) for c in which_object.CATEGORIES} | {"frames": n}
        for c in which_object.CATEGORIES:
            total[c] = total.get(c, 0) + row[c]
    n = sum(total.values())
    rows["overall"] = {c: total[c] / max(n, 1) for c in which_object.CATEGORIES} | {"frames": n}
    return rows


def train_ablation(run_dir: Path, overrides: list[str]) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, str(ROOT / "train/train.py"), "--config", str(ROOT / "train/configs/tiny.yaml")]
    subprocess.run(
        [*cmd, f"train.output_dir={run_dir}", "--resume", "auto", *overrides], check=True, cwd=ROOT
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=ROOT / "runs/tiny", help="run folder of the tiny default")
    parser.add_argument("--export", type=Path, default=None, help="model to score (default: <run>/export)")
    parser.add_argument("--data-root", type=Path, default=ROOT / "data/synthetic")
    parser.add_argument("--out", type=Path, default=None, help="default: <run>/benchmark")
    parser.add_argument(
        "--ablate-motion", action="store_true", help="also train + evaluate without motion tokens"
    )
    parser.add_argument("--data-seed", type=int, default=0, help="seed the synthetic data was generated with")
    args = parser.parse_args()
    out = args.out or args.run / "benchmark"

    import mora

    export = args.export or args.run / "export"
    model = mora.load_model(str(export))
    gated_file = args.run / "eval" / "scores.json"  # written by bash run.sh for <run>/export
    if args.export is None and gated_file.is_file():
        gated = json.loads(gated_file.read_text())
    else:
        gated = evaluate(model, args.data_root, out / "gated")
    report: dict[str, Any] = {"model": str(export), "gated": verdict(gated), "scores_gated": gated}
    ungated = evaluate(model, args.data_root, out / "ungated", gate=False)
    report["ungated"] = verdict(ungated)
    report["scores_ungated"] = ungated
    report["which_object"] = which_object_report(
        out / "ungated" / "predictions", args.data_root, args.data_seed
    )
    if args.ablate_motion:
        run_dir = args.run.parent / f"{args.run.name}_no_motion"
        seconds = train_ablation(run_dir, ["model.config_overrides.use_motion_tokens=false"])
        no_motion = evaluate(mora.load_model(str(run_dir / "export")), args.data_root, out / "no_motion")
        report["no_motion"] = verdict(no_motion) | {"train_seconds": seconds}
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    for name in ("gated", "ungated", "no_motion"):
        if name in report:
            r = report[name]
            margins = " ".join(f"{t}={m:+.3f}" for t, m in r["margins"].items())
            tiou = "n/a" if r["tIoU"] is None else f"{r['tIoU']:.3f}"
            print(
                f"{name:10s} J&F {r['overall_JF']:.3f} (empty {r['baseline_JF']:.3f}) tIoU {tiou} "
                f"margins {margins} -> {'PASS' if r['passed'] else 'FAIL'}"
            )
    if report["which_object"]:
        print("which object the ungated masks cover on in-span frames (fractions):")
        for q_type, row in report["which_object"].items():
            print(f"  {q_type:15s} " + " ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "frames"))
    return 0 if report["gated"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
