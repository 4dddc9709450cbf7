"""What ``bash run.sh`` runs after set-up.

    bash run.sh [key.sub=value ...]
        the embedded default, on CPU: generate the synthetic dataset if missing, train the tiny config
        (continuing an interrupted run), evaluate the export on the synthetic test split and print the
        J&F table (written to <run>/eval/scores.json with the empty-mask baseline).
    CONFIG=train/configs/<name>.yaml NGPU=8 [NNODES=2 HOSTFILE=hosts MASTER_ADDR=.. MASTER_PORT=..] \
        bash run.sh [--resume [CKPT]] [key.sub=value ...]
        the same entry (train/train.py) through the DeepSpeed launcher on one or many GPUs and nodes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mora.training.config import ConfigError  # noqa: E402
from mora.training.config_io import load_run_config  # noqa: E402
from mora.utils.logging import get_logger, setup_cli_logging  # noqa: E402

logger = get_logger("launch")

DEFAULT_CONFIG = "train/configs/tiny.yaml"
SYNTHETIC_ROOT = "data/synthetic"  # data.datasets[0] of DEFAULT_CONFIG
# 1,000 videos: 600 train (about 1,700 questions), 50 val, 350 test (about 1,000 questions, at least 150 of
# each type, so per-type scores are stable)
SYNTHETIC_VIDEOS = 1000
SYNTHETIC_VAL_FRACTION = 0.05
SYNTHETIC_TEST_FRACTION = 0.35


# glibc hands every freed buffer above its mmap threshold back to the kernel and the next training step faults it
# in again page by page: about a fifth of a tiny-default step on 2 CPU cores (train/README.md, session 16). The
# CPU flow's processes keep freed memory instead (read by glibc at start-up, ignored elsewhere).
CPU_MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"


def cpu_env(processes: int = 1) -> dict[str, str]:
    """The environment of the CPU default flow's processes: this one's, with `CPU_MALLOC_TUNABLES` as
    ``GLIBC_TUNABLES`` and, for ``processes`` > 1, the machine's cores shared out as ``OMP_NUM_THREADS``
    (cores // processes, at least 1), each unless already set."""
    env = dict(os.environ)
    env.setdefault("GLIBC_TUNABLES", CPU_MALLOC_TUNABLES)
    if processes > 1:
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // processes)))
    return env


def cpu_train_command(processes: int, args: list[str]) -> list[str]:
    """The training command of the default flow: ``train/train.py`` on the default config (continuing an
    interrupted run), in one process or in ``processes`` through ``torch.distributed.run`` on this machine."""
    entry = ["train/train.py", "--config", DEFAULT_CONFIG, "--resume", "auto", *args]
    if processes == 1:
        return [sys.executable, *entry]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return [sys.executable, *launcher, *entry]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    logger.info("$ %s", shlex.join(cmd))
    return subprocess.call(cmd, cwd=ROOT, env=env)


def ensure_synthetic_data(root: Path, num_videos: int, seed: int = 0) -> int:
    """Generate the default synthetic set (drawn with ``seed``) into ``root`` unless it is there."""
    if (root / "test.json").is_file() and (root / "train.json").is_file():
        return 0
    return _run(
        [
            sys.executable,
            "-m",
            "data_prep.synthetic",
            "--out",
            str(root),
            "--num-videos",
            str(num_videos),
            "--seed",
            str(seed),
            "--val-fraction",
            str(SYNTHETIC_VAL_FRACTION),
            "--test-fraction",
            str(SYNTHETIC_TEST_FRACTION),
        ]
    )


def default_flow(args: list[str]) -> int:
    """Data (if missing) -> train (resuming) -> evaluate -> J&F table."""
    try:
        run = load_run_config(ROOT / DEFAULT_CONFIG, [a for a in args if "=" in a])
    except ConfigError as err:
        logger.error("bad configuration: %s", err)
        return 2
    # the training set's root (SYNTHETIC_ROOT unless overridden): generated, trained on and evaluated
    synthetic = ROOT / run.data.datasets[0].spec["root"]
    rc = ensure_synthetic_data(synthetic, SYNTHETIC_VIDEOS)
    if rc:
        return rc
    processes = run.train.cpu_processes
    rc = _run(cpu_train_command(processes, args), cpu_env(processes))
    if rc:
        return rc
    run_dir = ROOT / run.train.output_dir
    export = run_dir / "export"
    if not export.is_dir():
        logger.error("training finished without an export in %s (checkpoint.export=false?)", export)
        return 1
    rc = _run(
        [
            sys.executable,
            "eval/evaluate_groundmore.py",
            "--model",
            str(export),
            "--data-root",
            str(synthetic),
            "--meta",
            str(synthetic / "test.json"),
            "--out",
            str(run_dir / "eval"),
            "--with-ungated",
        ],
        cpu_env(),
    )
    if rc == 0:
        logger.info("scores: %s", run_dir / "eval" / "scores.json")
    return rc


def deepspeed_command(env: dict[str, str], args: list[str]) -> list[str]:
    """The DeepSpeed launcher command for ``CONFIG``/``NGPU``/``NNODES``/``HOSTFILE``."""
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner"]
    if "HOSTFILE" in env:
        cmd += ["--hostfile", env["HOSTFILE"]]
    else:
        cmd += ["--hostfile", "/dev/null"]  # single node: never pick up /job/hostfile by accident
    if "NNODES" in env:
        cmd += ["--num_nodes", env["NNODES"]]
    if "NGPU" in env:
        cmd += ["--num_gpus", env["NGPU"]]
    if "MASTER_ADDR" in env:
        cmd += ["--master_addr", env["MASTER_ADDR"]]
    if "MASTER_PORT" in env:
        cmd += ["--master_port", env["MASTER_PORT"]]
    return [*cmd, "train/train.py", "--config", env["CONFIG"], *args]


def main() -> int:
    setup_cli_logging()
    args = sys.argv[1:]
    env = dict(os.environ)
    if "CONFIG" not in env:
        if "NGPU" in env or "NNODES" in env:
            logger.error("NGPU/NNODES need CONFIG=train/configs/<name>.yaml")
            return 2
        return default_flow(args)
    if not (ROOT / env["CONFIG"]).is_file() and not Path(env["CONFIG"]).is_file():
        logger.error("CONFIG: config file not found: %s", env["CONFIG"])
        return 2
    for name in ("NGPU", "NNODES"):
        if name in env and not env[name].isdigit():
            logger.error("%s must be a positive integer, got %r", name, env[name])
            return 2
    if "HOSTFILE" in env and not Path(env["HOSTFILE"]).is_file():
        logger.error("HOSTFILE: file not found: %s", env["HOSTFILE"])
        return 2
    try:  # fail on a bad config here, before the launcher starts any process
        load_run_config(env["CONFIG"], [a for a in args if "=" in a and not a.startswith("-")])
    except ConfigError as err:
        logger.error("bad configuration: %s", err)
        return 2
    cmd = deepspeed_command(env, args)
    logger.info("$ %s", shlex.join(cmd))
    os.chdir(ROOT)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
