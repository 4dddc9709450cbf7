"""Evaluate on Ref-DAVIS17 (DAVIS protocol, one line per annotator).

python eval/evaluate_davis17.py --pred-dir P --data-root D --split valid --out O
python eval/evaluate_davis17.py --model M --data-root D --split valid --out O
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mora.evaluation.cli import benchmark_main  # noqa: E402
from mora.evaluation.refytvos import evaluate_davis17  # noqa: E402

if __name__ == "__main__":
    sys.exit(benchmark_main(evaluate_davis17, __doc__, "valid"))
