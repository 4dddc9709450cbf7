"""Benchmark evaluation: prediction folders, scoring pool, aggregation, per-benchmark protocols.

* ``mora.evaluation.groundmore.evaluate(data_root, meta, out, pred_dir=..., model=...)`` -> scores dict
* ``mora.evaluation.rle_benchmarks``: MeViS, ReVOS; ``mora.evaluation.palette_benchmarks``:
  Ref-YouTube-VOS, Ref-DAVIS17; all built on ``scoring`` / ``aggregate`` / ``runner``.
Submodules are imported on use so that ``import mora.evaluation`` stays light.
"""
