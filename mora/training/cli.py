"""Command line of ``train/train.py``.

    python train/train.py --config train/configs/tiny.yaml [--resume [auto|CKPT]] [key.sub=value ...]
    deepspeed --num_gpus 8 train/train.py --config train/configs/mora_zs_lisa7b.yaml [overrides]

Exit codes: 0 done, 2 user error (bad config value, missing file; reported before any heavy work),
3 non-finite loss (the last good checkpoint is kept).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mora.training.config import ConfigError, RunConfig
from mora.utils.logging import get_logger, setup_cli_logging

logger = get_logger("training")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIT_USER_ERROR = 2
EXIT_NONFINITE = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train/train.py",
        description="Train MoRA with DeepSpeed from a YAML run config plus key.sub=value overrides.",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML run config (train/configs/*.yaml)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue a run: 'auto' (default when given without a value) takes the latest complete "
        "checkpoint of train.output_dir, or name a checkpoint folder",
    )
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="with --resume: write the from_pretrained export of that checkpoint (<run>/export_step_N) and stop",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by deepspeed
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, applied after the YAML")
    return parser


def preflight(run: RunConfig, resume: str | None) -> None:
    """Cheap checks of files the run needs, before any model is built."""
    from mora.training.checkpointing import is_complete_checkpoint

    pretrained = run.model.pretrained
    if pretrained and (pretrained.startswith((".", "/", "~")) or Path(pretrained).exists()):
        if not Path(pretrained).expanduser().is_dir():
            raise ConfigError("model.pretrained", f"checkpoint folder not found: {pretrained}")
    if resume not in (None, "auto") and not is_complete_checkpoint(Path(resume)):
        raise ConfigError(
            "--resume", f"{resume} is not a complete checkpoint folder (step_*/trainer_state.json)"
        )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_intermixed_args(argv)
    # ranks other than 0 of a multi-process launch report warnings and errors only (their info repeats rank 0's)
    setup_cli_logging(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
    try:
        from mora.training.config_io import dump_config_yaml, load_run_config
        from mora.training.ds_config import load_deepspeed_config

        run = load_run_config(args.config, args.overrides)
        ds_config = load_deepspeed_config(run, REPO_ROOT)
        if args.print_config:
            sys.stdout.write(dump_config_yaml(run))
            return 0
        if args.export_only and args.resume is None:
            raise ConfigError("--export-only", "needs --resume [auto|CKPT] to name the checkpoint to export")
        preflight(run, args.resume)
        from mora.training.components import check_settings

        check_settings(run)
    except ConfigError as err:
        logger.error("bad configuration: %s", err)
        return EXIT_USER_ERROR
    return _train(run, ds_config, args, argv)


def _train(run: RunConfig, ds_config: dict, args: argparse.Namespace, argv: list[str]) -> int:
    from mora.training.components import build_mora_components
    from mora.training.distributed import init_distributed
    from mora.training.run_info import write_run_info
    from mora.training.trainer import NonFiniteLossError, resolve_resume, train
    from mora.utils.io import write_json_atomic

    dist_info = init_distributed()
    if (
        dist_info.is_main
        and dist_info.device.type == "cpu"
        and dist_info.world_size != run.train.cpu_processes
    ):
        logger.warning(
            "train.cpu_processes=%d but %d process(es) run on CPU: a global batch of %d instead of %d "
            "(bash run.sh starts train.cpu_processes processes)",
            run.train.cpu_processes,
            dist_info.world_size,
            run.train.micro_batch_size * run.train.grad_accum_steps * dist_info.world_size,
            run.train.micro_batch_size * run.train.grad_accum_steps * run.train.cpu_processes,
        )
    run_dir = Path(run.train.output_dir)
    resume_from = resolve_resume(args.resume, run_dir)
    if args.resume == "auto" and resume_from is None:
        logger.info("no complete checkpoint in %s yet: starting from scratch", run_dir)
    if dist_info.is_main and not args.export_only:
        write_run_info(run_dir, run, ds_config, argv, REPO_ROOT, dist_info.world_size)
    try:
        components = build_mora_components(run, seed=run.train.seed)
        result = train(
            run,
            components,
            dist_info=dist_info,
            ds_config=ds_config,
            run_dir=run_dir,
            resume_from=resume_from,
            export_only=args.export_only,
        )
    except NonFiniteLossError as err:
        logger.error("%s", err)
        return EXIT_NONFINITE
    except ConfigError as err:
        logger.error("bad configuration: %s", err)
        return EXIT_USER_ERROR
    if dist_info.is_main and not args.export_only:
        write_json_atomic(
            run_dir / "final_state.json",
            {
                "step": result.state.step,
                "samples_consumed": result.state.samples_consumed,
                "world_size": result.state.world_size,
                "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
                "export_dir": str(result.export_dir) if result.export_dir else None,
                "final_losses": result.final_losses,
                "param_digests": result.param_digests,
            },
        )
        logger.info(
            "done: %d steps, last checkpoint %s, export %s",
            result.state.step,
            result.last_checkpoint,
            result.export_dir,
        )
    return 0
