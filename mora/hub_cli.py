"""``mora push``: upload a MoRA checkpoint folder to the Hugging Face Hub with a generated model card.

The token comes from ``HF_TOKEN`` or the cached ``hf auth login`` (never from the command line, where other
users of the machine could read it, and never logged). Errors (`mora.hub.PushError`, Hub errors) become one
line in ``mora.cli``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_push_parser(sub: argparse._SubParsersAction, handler: Callable[[argparse.Namespace], int]) -> None:
    push = sub.add_parser(
        "push",
        help="upload a checkpoint folder (safetensors, config, processor, tokenizer) with a generated model card",
        description="Upload a MoRA checkpoint folder to the Hugging Face Hub in one commit, with a README.md "
        "model card generated from the folder (architecture, base weights, training data, the scores.json "
        "table beside its empty-mask baseline, usage, license). Token: HF_TOKEN or the cached login.",
    )
    push.add_argument(
        "--model", required=True, help="checkpoint folder (e.g. runs/<name>/export, a converted folder)"
    )
    push.add_argument("--repo-id", required=True, help="owner/name on the Hub (created when missing)")
    push.add_argument("--revision", default=None, help="branch to push to (created from main when missing)")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument(
        "--scores", default=None, help="an evaluator's scores.json, shown as a table in the card"
    )
    push.add_argument(
        "--scores-name", default="evaluation", help="what the scores are (e.g. 'GroundMoRe test')"
    )
    push.add_argument(
        "--base-model",
        action="append",
        default=[],
        help="Hub id of a base model (repeatable); a converted folder's conversion.json adds its source",
    )
    push.add_argument(
        "--dataset", action="append", default=[], help="Hub id of a training dataset (repeatable)"
    )
    push.add_argument("--training-data", default=None, help="a sentence on the training data for the card")
    push.add_argument("--license", default=None, help="license id for the card metadata (default apache-2.0)")
    push.add_argument("--commit-message", default=None)
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push.set_defaults(func=handler)


def run_push(args: argparse.Namespace) -> str:
    """Upload as ``args`` say; returns the commit URL."""
    from mora.hub import push_folder

    info = push_folder(
        args.model,
        args.repo_id,
        revision=args.revision,
        private=True if args.private else None,
        scores=args.scores,
        scores_name=args.scores_name,
        base_models=args.base_model,
        training_data=args.training_data,
        datasets=args.dataset,
        license=args.license,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
    )
    return str(getattr(info, "commit_url", info))
