"""Benchmark evaluation: prediction folders, scoring pool, aggregation, per-benchmark protocols.

* ``mora.evaluation.groundmore.evaluate(data_root, meta, out, pred_dir=..., model=...)`` -> scores dict
* ``mora.evaluation.mevis``: MeViS, ReVOS; ``mora.evaluation.refytvos``:
  Ref-YouTube-VOS, Ref-DAVIS17; all built on ``scoring`` / ``aggregate`` / ``runner``.
Submodules are imported on use so that ``import mora.evaluation`` stays light.
"""
