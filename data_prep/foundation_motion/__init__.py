"""FoundationMotion-style auto-labelling: raw videos -> mask- and time-grounded motion QA (samples.jsonl).

Stages, one module each: clips (selection + camera-motion gate), detect (proposals + OWLv2), track
(SAM2 masks as RLE), facts (trajectory facts), qa + llm (questions, checked against the facts),
pipeline (per-clip outputs, resume, manifest), executors/ray_stages (process pool, Ray). See
data_prep/README.md.
"""
