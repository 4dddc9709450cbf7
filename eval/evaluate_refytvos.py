"""Evaluate on Ref-YouTube-VOS (valid packed as a server submission).

python eval/evaluate_refytvos.py --pred-dir P --data-root D --split valid --out O
python eval/evaluate_refytvos.py --model M --data-root D --split valid --out O
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mora.evaluation.cli import benchmark_main  # noqa: E402
from mora.evaluation.refytvos import evaluate_refytvos  # noqa: E402

if __name__ == "__main__":
    sys.exit(benchmark_main(evaluate_refytvos, __doc__, "valid"))
