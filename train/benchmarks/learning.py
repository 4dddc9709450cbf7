"""The learning benchmark: does the tiny default trained by ``bash run.sh`` learn the synthetic motion questions?

Reads ``<run>/eval/scores.json`` (written by ``bash run.sh``: J&F per question type, the empty-mask baseline,
temporal IoU, J&F on in-span frames and, from the same inference pass, the J&F of the masks before span
gating) and checks the targets: J&F >= 0.80 overall and every question type >= 0.20 above empty masks.

    python train/benchmarks/learning.py [--run runs/tiny] [--seeds 1 2] [--ablate NAME ...] [--which-object]

* ``--seeds``: held-out test sets drawn with other seeds (generated like the default set into
  ``data/synthetic_seed<S>``), scored with the same export: the model must hold the targets there too.
* ``--ablate``: train the default with one element removed (same seed, steps and data) and score it on the
  default test split; names: ``ABLATIONS``. Each run takes as long as the default's training.
* ``--which-object``: which object the ungated masks cover on in-span frames (`which_object.py`).

Prints one line per model and writes ``<out>/benchmark.json`` (default ``<run>/benchmark``).
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
from mora.training.config_io import load_run_config  # noqa: E402
from train.launch import (  # noqa: E402
    DEFAULT_CONFIG,
    SYNTHETIC_ROOT,
    SYNTHETIC_VIDEOS,
    cpu_env,
    cpu_train_command,
    ensure_synthetic_data,
)

TARGET_OVERALL = 0.80
TARGET_MARGIN = 0.20
# element of the tiny default -> the run-config overrides that remove it
ABLATIONS = {
    "video_adapter": ["model.config_overrides.video_adapter_layers=0"],
    "grounding_reader": ["model.config_overrides.grounding_reader_layers=0"],
    "video_dense_prompt": ["model.config_overrides.use_video_dense_prompt=false"],
    "pixel_mask_path": ["model.config_overrides.pixel_mask_dim=0"],
    "mask_pooled_span": ["model.config_overrides.span_head=tokens"],
    "masks_outside_span": ["data.datasets.0.spec.mask_outside_span=false"],
    "adapter_differences": ["model.config_overrides.video_adapter_differences=false"],
    "span_loss_weight": ["model.config_overrides.temporal_loss_weight=1.0"],
}


def verdict(scores: dict) -> dict:
    base = scores["baseline_empty"]
    types = [t for t in GROUNDMORE_Q_TYPES if t in scores]
    margins = {t: scores[t]["JF"] - base[t]["JF"] for t in types}
    return {
        "overall_JF": scores["overall"]["JF"],
        "baseline_JF": base["overall"]["JF"],
        "ungated_JF": scores["overall"].get("JF_ungated"),
        "tIoU": scores["overall"].get("tIoU"),
        "JF_in_span": scores["overall"].get("JF_in"),
        "true_span_JF": scores["overall"].get("JF_true_span_ungated"),
        "per_type": {t: scores[t]["JF"] for t in types},
        "margins": margins,
        "passed": scores["overall"]["JF"] >= TARGET_OVERALL
        and all(m >= TARGET_MARGIN for m in margins.values()),
    }


def evaluate(model: Path, data_root: Path, out: Path) -> dict:
    """Score ``model`` on ``data_root/test.json`` with the evaluator's CLI (gated + ungated, one pass)."""
    cmd = [
        sys.executable,
        str(ROOT / "eval/evaluate_groundmore.py"),
        "--model",
        str(model),
        "--data-root",
        str(data_root),
        "--meta",
        str(data_root / "test.json"),
        "--out",
        str(out),
        "--with-ungated",
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "scores.json").read_text())


def held_out_set(seed: int) -> Path:
    """The synthetic set drawn with ``seed`` (same sizes as the default set), generated if missing."""
    root = ROOT / f"{SYNTHETIC_ROOT}_seed{seed}"
    if ensure_synthetic_data(root, SYNTHETIC_VIDEOS, seed):
        raise SystemExit(f"could not generate the synthetic set of seed {seed} into {root}")
    return root


def train_ablation(run_dir: Path, overrides: list[str]) -> float:
    """Train the default config with ``overrides`` into ``run_dir`` (resuming) as `bash run.sh` trains it (its
    ``train.cpu_processes``); returns the seconds taken."""
    processes = load_run_config(ROOT / DEFAULT_CONFIG, overrides).train.cpu_processes
    start = time.perf_counter()
    cmd = cpu_train_command(processes, [f"train.output_dir={run_dir}", *overrides])
    subprocess.run(cmd, check=True, cwd=ROOT, env=cpu_env(processes))
    return time.perf_counter() - start


def which_object_report(pred_dir: Path, data_root: Path, seed: int) -> dict | None:
    """Fractions of in-span frames per category and question type (None when the scenes of ``seed`` do not
    match the data)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import which_object

    try:
        counts = which_object.diagnose(pred_dir, data_root, data_root / "test.json", seed, min_iou=0.3)
    except SystemExit as err:
        print(f"which-object diagnosis skipped: {err}")  # noqa: T201
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


def line(name: str, r: dict) -> str:
    types = " ".join(f"{t[:5]} {r['per_type'][t]:.3f} ({r['margins'][t]:+.3f})" for t in r["per_type"])
    extra = []
    for key, label in (
        ("ungated_JF", "ungated"),
        ("tIoU", "tIoU"),
        ("JF_in_span", "in-span"),
        ("true_span_JF", "true span"),
    ):
        if r.get(key) is not None:
            extra.append(f"{label} {r[key]:.3f}")
    return (
        f"{name:22s} J&F {r['overall_JF']:.3f} (empty {r['baseline_JF']:.3f}) {' '.join(extra)} | {types} "
        f"-> {'PASS' if r['passed'] else 'FAIL'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=ROOT / "runs/tiny", help="run folder of the tiny default")
    parser.add_argument("--data-root", type=Path, default=ROOT / SYNTHETIC_ROOT)
    parser.add_argument("--out", type=Path, default=None, help="default: <run>/benchmark")
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="held-out synthetic sets to score")
    parser.add_argument(
        "--ablate", nargs="*", default=[], choices=sorted(ABLATIONS), help="elements to remove"
    )
    parser.add_argument("--which-object", action="store_true", help="which object the ungated masks cover")
    parser.add_argument("--data-seed", type=int, default=0, help="seed the default data was generated with")
    args = parser.parse_args()
    out = args.out or args.run / "benchmark"
    export = args.run / "export"
    if not export.is_dir():
        print(f"error: no export in {args.run}; run `bash run.sh` first", file=sys.stderr)  # noqa: T201
        return 2
    scores_file = args.run / "eval" / "scores.json"
    default = json.loads(scores_file.read_text()) if scores_file.is_file() else None
    if default is None or "JF_ungated" not in default["overall"]:
        default = evaluate(export, args.data_root, args.run / "eval")
    report: dict[str, Any] = {"model": str(export), "default": verdict(default)}
    for seed in args.seeds:
        report[f"seed{seed}"] = verdict(evaluate(export, held_out_set(seed), out / f"seed{seed}"))
    for name in args.ablate:
        run_dir = args.run.parent / f"{args.run.name}_no_{name}"
        seconds = train_ablation(run_dir, ABLATIONS[name])
        scores = evaluate(run_dir / "export", args.data_root, out / f"no_{name}")
        report[f"no_{name}"] = verdict(scores) | {"train_seconds": seconds}
    if args.which_object:
        ungated = args.run / "eval" / "predictions_ungated"
        report["which_object"] = which_object_report(ungated, args.data_root, args.data_seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, r in report.items():
        if isinstance(r, dict) and "overall_JF" in r:
            print(line(name, r))  # noqa: T201
    if report.get("which_object"):
        print("which object the ungated masks cover on in-span frames (fractions):")  # noqa: T201
        for q_type, row in report["which_object"].items():
            print(f"  {q_type:15s} " + " ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "frames"))  # noqa: T201
    held = [r for k, r in report.items() if k == "default" or k.startswith("seed")]
    return 0 if all(r["passed"] for r in held) else 1


if __name__ == "__main__":
    sys.exit(main())
