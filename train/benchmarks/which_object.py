"""Which object does the model segment? A diagnosis of the learning benchmark on the synthetic set.

J&F says how wrong masks are, not why. On the synthetic test split every object of every scene is
known (the scenes are regenerated from the dataset seed), so each predicted in-span frame can be
attributed to the object it overlaps best:

* ``answer``: the right object;
* ``subject``: the object the question names ("What made *the red circle* move?"): the model found
  the words' referent but not the relation;
* ``mover``: another object that moves somewhere in the clip; ``still``: one that never moves;
* ``several``: the mask covers two or more objects at IoU-ish overlap (at least half of each);
* ``none``: empty, or overlapping no object by at least ``--min-iou``.

Read the prediction folder of an *ungated* evaluation (``--no-gate``: masks on every frame), e.g.

    python eval/evaluate_groundmore.py --model runs/tiny/export --data-root data/synthetic \\
        --meta test.json --out runs/tiny/eval_nogate --no-gate
    python train/benchmarks/which_object.py --pred-dir runs/tiny/eval_nogate/predictions
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from data_prep.synthetic import generate_video  # noqa: E402
from mora.constants import GROUNDMORE_FPS  # noqa: E402
from mora.data.readers.groundmore import parse_mmss  # noqa: E402
from mora.data.synthetic_plan import SceneSettings  # noqa: E402

CATEGORIES = ("answer", "subject", "mover", "still", "several", "none")


def classify(
    pred: np.ndarray, labels: np.ndarray, answer: int, subject: int | None, movers: set[int], min_iou: float
):
    """Category of one predicted frame: ``pred [H, W]`` bool against ``labels [H, W]`` (i + 1 = object i)."""
    if not pred.any():
        return "none"
    ious, covered = {}, []
    for i in np.unique(labels[labels > 0]) - 1:
        obj = labels == i + 1
        inter = np.logical_and(pred, obj).sum()
        ious[int(i)] = inter / np.logical_or(pred, obj).sum()
        if inter >= 0.5 * obj.sum():
            covered.append(int(i))
    if len(covered) >= 2:
        return "several"
    best = max(ious, key=ious.get) if ious else None
    if best is None or ious[best] < min_iou:
        return "none"
    if best == answer:
        return "answer"
    if best == subject:
        return "subject"
    return "mover" if best in movers else "still"


def diagnose(pred_dir: Path, data_root: Path, meta: Path, seed: int, min_iou: float) -> dict:
    videos = json.loads(meta.read_text())["videos"]
    counts: dict[str, Counter] = defaultdict(Counter)
    settings = SceneSettings()
    for video_id, entry in sorted(videos.items()):
        scene = generate_video(seed, int(video_id[5:10]), settings).scene
        names = [o.name for o in scene.objects]
        movers = {i for i, o in enumerate(scene.objects) if o.motion is not None}
        clip_start = parse_mmss(video_id.split("_")[1][:2] + ":" + video_id.split("_")[1][2:])
        for qid, q in entry["questions"].items():
            answer = int(q["obj_id"]) - 1
            if names[answer] not in q["answer"]:
                raise SystemExit(
                    f"{video_id}: regenerated scene does not match the dataset (seed {seed}?): "
                    f"object {answer} is {names[answer]!r}, the dataset says {q['answer']!r}"
                )
            named = [i for i, n in enumerate(names) if n in q["question"]]
            subject = named[0] if named else None
            first = (parse_mmss(q["action_start"]) - clip_start) * GROUNDMORE_FPS
            last = (parse_mmss(q["action_end"]) - clip_start) * GROUNDMORE_FPS - 1
            qdir = pred_dir / video_id / qid
            for png in sorted(qdir.glob("frame_*.png")):
                t = int(png.stem.split("_")[1])
                label_file = data_root / "annotations" / video_id / "masks" / png.name
                if not first <= t <= last or not label_file.exists():
                    continue
                labels = np.array(Image.open(label_file))
                pred = np.array(Image.open(png)) > 0
                counts[q["q_type"]][classify(pred, labels, answer, subject, movers, min_iou)] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pred-dir", type=Path, required=True, help="predictions of an ungated evaluation")
    parser.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--meta", default="test.json")
    parser.add_argument("--seed", type=int, default=0, help="seed the synthetic dataset was generated with")
    parser.add_argument("--min-iou", type=float, default=0.3)
    args = parser.parse_args(argv)
    counts = diagnose(args.pred_dir, args.data_root, args.data_root / args.meta, args.seed, args.min_iou)
    total = Counter()
    print(f"{'in-span frames':16s}" + "".join(f"{c:>9s}" for c in CATEGORIES) + "        n")
    for q_type in sorted(counts) + ["overall"]:
        row = total if q_type == "overall" else counts[q_type]
        if q_type != "overall":
            total.update(row)
        n = sum(row.values())
        print(f"{q_type:16s}" + "".join(f"{row[c] / max(n, 1):9.2f}" for c in CATEGORIES) + f"{n:9d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
