"""Evaluate on ReVOS (referring, reasoning, overall; no-target reported apart).

python eval/evaluate_revos.py --pred-dir P --data-root D --split valid --out O
python eval/evaluate_revos.py --model M --data-root D --split valid --out O
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mora.evaluation.cli import benchmark_main  # noqa: E402
from mora.evaluation.mevis import evaluate_revos  # noqa: E402

if __name__ == "__main__":
    sys.exit(benchmark_main(evaluate_revos, __doc__, "valid"))
