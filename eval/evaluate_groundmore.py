"""Evaluate on GroundMoRe with the official protocol (20 frames, span-gated ground truth).

python eval/evaluate_groundmore.py --model M --data-root D --meta D/test.json --out O
python eval/evaluate_groundmore.py --pred-dir P --data-root D --meta D/test.json --out O
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mora.evaluation import groundmore  # noqa: E402
from mora.evaluation.cli import add_common_args, options_from_args, run_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser)
    parser.add_argument("--meta", type=Path, required=True, help="meta JSON (test.json, test_v2.json, ...)")
    args = parser.parse_args(argv)

    def body():
        opts = options_from_args(args)
        scores = groundmore.evaluate(
            args.data_root,
            args.meta,
            opts.out,
            pred_dir=opts.pred_dir,
            model=opts.model,
            num_workers=opts.num_workers,
            strict=opts.strict,
            num_chunks=opts.num_chunks,
            chunk_idx=opts.chunk_idx,
            visualize=opts.visualize,
            predict_kwargs=opts.predict_kwargs,
            with_ungated=opts.with_ungated,
        )
        if scores is None:
            return (
                None,
                f"inference chunk {opts.chunk_idx}/{opts.num_chunks} done; score when all chunks finish",
            )
        return scores, f"GroundMoRe ({args.meta.name})"

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
