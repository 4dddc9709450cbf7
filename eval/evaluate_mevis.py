"""Evaluate on MeViS (valid_u scored locally; valid packed for CodaLab).

python eval/evaluate_mevis.py --pred-dir P --data-root D --split valid_u --out O
python eval/evaluate_mevis.py --model M --data-root D --split valid_u --out O
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mora.evaluation.cli import benchmark_main  # noqa: E402
from mora.evaluation.mevis import evaluate_mevis  # noqa: E402

if __name__ == "__main__":
    sys.exit(benchmark_main(evaluate_mevis, __doc__, "valid_u"))
