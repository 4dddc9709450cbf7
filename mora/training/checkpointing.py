"""Resumable training checkpoints, written atomically, the last N kept.

Layout of one checkpoint (``<run>/checkpoints/step_00000120/``)::

    deepspeed/state/...       DeepSpeed's own files: module, optimizer and scheduler state; with ZeRO every
                              rank writes its own partition, so ZeRO-2 and ZeRO-3 are both covered
    rng_rank{r}.pt            each rank's Python/NumPy/torch RNG state (tensors and lists only)
    trainer_state.json        step, samples consumed (the data position), world size; written last

The folder is assembled under a hidden temporary name (``.step_00000120.tmp-*``, `mora.utils.io.atomic_path`)
on a filesystem all ranks share and renamed into place by rank 0 after every rank has finished writing, so a
folder named ``step_*`` is always complete; `latest_checkpoint` only considers those, and left-over
temporary folders of a crashed write are removed on the next start.

Loading never unpickles arbitrary objects: DeepSpeed's files are read through `SafeTorchCheckpointEngine`,
which calls ``torch.load(weights_only=True)`` with DeepSpeed's few enum/config classes allow-listed.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mora.training.rng import load_rng_state, save_rng_state
from mora.utils.io import atomic_path, write_json_atomic
from mora.utils.logging import get_logger

logger = get_logger("training")

CHECKPOINT_DIR = "checkpoints"
DEEPSPEED_SUBDIR = "deepspeed"
DEEPSPEED_TAG = "state"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step_(\d{8})$")


@dataclass
class TrainerState:
    """Where a run stands; saved with every checkpoint."""

    step: int = 0  # optimizer steps done
    samples_consumed: int = 0  # global count of training samples drawn (the data position)
    world_size: int = 1

    @classmethod
    def from_json(cls, path: Path) -> TrainerState:
        data = json.loads(path.read_text())
        return cls(**{k: data[k] for k in ("step", "samples_consumed", "world_size")})


def _deepspeed_safe_globals() -> list[Any]:
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, DynamicLossScaler, fragment_address]


def make_safe_checkpoint_engine(config_params: Any = None) -> Any:
    """DeepSpeed's torch checkpoint engine, loading with ``weights_only=True``.

    DeepSpeed 0.19 calls ``torch.load(..., weights_only=False)``; its files hold only tensors, plain
    containers and the classes allow-listed in `_deepspeed_safe_globals`.
    """
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    class SafeTorchCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location: Any = None) -> Any:
            with torch.serialization.safe_globals(_deepspeed_safe_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)

    return SafeTorchCheckpointEngine(config_params)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _broadcast_path(path: Path | None) -> Path:
    if not dist.is_initialized():
        assert path is not None
        return path
    box = [str(path) if path is not None else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def is_complete_checkpoint(path: Path) -> bool:
    return path.is_dir() and bool(_NAME.match(path.name)) and (path / STATE_FILE).is_file()


def remove_partial_checkpoints(run_dir: Path) -> list[Path]:
    """Delete temporary folders left by a write that crashed (call on rank 0 before training)."""
    root = checkpoint_root(run_dir)
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".step_"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    for p in removed:
        logger.warning("removed the incomplete checkpoint %s left by an interrupted write", p)
    return removed


class CheckpointManager:
    """Save, prune and load the checkpoints of one run (collective calls: every rank calls them)."""

    def __init__(self, run_dir: Path, keep_last: int) -> None:
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last

    def save(self, engine: Any, state: TrainerState, extra: dict[str, Any] | None = None) -> Path:
        final = checkpoint_root(self.run_dir) / f"step_{state.step:08d}"
        rank = _rank()
        if rank == 0:
            with atomic_path(final) as tmp:
                tmp.mkdir()
                _broadcast_path(tmp)
                self._write(engine, tmp, state, extra)
        else:
            tmp = _broadcast_path(None)
            self._write(engine, tmp, state, extra)
        _barrier()  # the rename happened on rank 0
        if rank == 0:
            self._prune()
            logger.info("saved checkpoint %s", final)
        _barrier()
        return final

    def _write(self, engine: Any, tmp: Path, state: TrainerState, extra: dict[str, Any] | None) -> None:
        engine.save_checkpoint(str(tmp / DEEPSPEED_SUBDIR), tag=DEEPSPEED_TAG, save_latest=False)
        save_rng_state(tmp / f"rng_rank{_rank()}.pt")
        _barrier()  # every rank's files are in place before the state file marks the folder complete
        if _rank() == 0:
            write_json_atomic(tmp / STATE_FILE, {**asdict(state), **(extra or {})})

    def _prune(self) -> None:
        for old in complete_checkpoints(self.run_dir)[: -self.keep_last]:
            trash = old.parent / f".{old.name}.deleting"
            old.rename(trash)  # never visible as a complete checkpoint while half deleted
            shutil.rmtree(trash, ignore_errors=True)

    def load(self, engine: Any, path: Path) -> TrainerState:
        """Restore model, optimizer, scheduler and RNG from ``path``; return where the run stood."""
        path = Path(path)
        if not is_complete_checkpoint(path):
            raise FileNotFoundError(
                f"{path} is not a complete checkpoint (no {STATE_FILE} in a step_* folder)"
            )
        state = TrainerState.from_json(path / STATE_FILE)
        load_path, _ = engine.load_checkpoint(
            str(path / DEEPSPEED_SUBDIR),
            tag=DEEPSPEED_TAG,
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if load_path is None:
            raise FileNotFoundError(f"DeepSpeed found no state under {path / DEEPSPEED_SUBDIR}")
        rng_file = path / f"rng_rank{_rank()}.pt"
        if state.world_size != _world():
            logger.warning(
                "checkpoint written by %d processes, resuming with %d: the data order continues from the "
                "same sample, but random streams differ from an uninterrupted run",
                state.world_size,
                _world(),
            )
        if rng_file.is_file():
            load_rng_state(rng_file)
        logger.info(
            "resumed from %s (step %d, %d samples consumed)", path, state.step, state.samples_consumed
        )
        return state
