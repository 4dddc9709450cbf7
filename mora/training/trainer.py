"""The training loop: DeepSpeed engine, resumable data order, periodic atomic checkpoints, NaN guard,
progress/TensorBoard logging and the final ``from_pretrained`` export.

`train` is model-agnostic: it takes `TrainingComponents` (a module whose forward takes the collated
batch as keyword arguments and returns an output with ``loss`` and ``loss_*`` tensors, a dataset, a
collate function and an export function). `mora.training.components` builds them for MoRA.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mora.data.decoded_cache import configure_decoded_cache
from mora.training.checkpointing import (
    CheckpointManager,
    TrainerState,
    latest_checkpoint,
    make_safe_checkpoint_engine,
    remove_partial_checkpoints,
)
from mora.training.config import RunConfig
from mora.training.distributed import DistInfo, all_ranks_true, mean_over_ranks
from mora.training.ds_config import zero_stage
from mora.training.progress import LossMeter, ProgressReporter
from mora.training.sampler import PassIndexedDataset, ResumableBatchSampler
from mora.training.schedule import build_scheduler
from mora.utils.logging import get_logger

logger = get_logger("training")

# batch entries cast to the engine's compute dtype (targets such as gt_masks stay float32)
PIXEL_INPUTS = ("pixel_values", "mask_pixel_values")
EXPORT_DIR = "export"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped without writing a checkpoint of the bad state."""


@dataclass
class TrainingComponents:
    model: torch.nn.Module
    dataset: Dataset
    collate_fn: Callable[[list[Any]], Mapping[str, Any]]
    # rank 0 only: write a from_pretrained folder at the given path from a full (gathered) state dict
    export_fn: Callable[[Mapping[str, torch.Tensor], Path], None] | None = None


@dataclass
class TrainResult:
    state: TrainerState
    last_checkpoint: Path | None
    export_dir: Path | None
    final_losses: dict[str, float]
    param_digests: list[str] | None  # per rank (ZeRO-0/1/2: replicated parameters); None under ZeRO-3


def build_optimizer(model: torch.nn.Module, run: RunConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; check model.trainable")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases and norms are never decayed
    groups = [
        {"params": decay, "weight_decay": run.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(
            [g for g in groups if g["params"]],
            lr=run.optim.lr,
            betas=run.optim.betas,
            eps=run.optim.eps,
            fused=run.optim.fused,
        )
    except RuntimeError as exc:  # fused kernels exist for CPU, CUDA, XPU and MPS floating-point tensors
        devices = sorted({f"{p.device.type}/{p.dtype}" for p in params})
        raise ValueError(
            f"optim.fused=true: torch has no fused AdamW for parameters on {devices} ({exc}); set optim.fused=false"
        ) from exc


def _to_device(batch: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, dtype=dtype) if k in PIXEL_INPUTS and v.is_floating_point() else v.to(device)
        out[k] = v
    return out


def _loss_values(output: Any) -> dict[str, float]:
    items = output.items() if isinstance(output, Mapping) else vars(output).items()
    return {
        k: float(v.detach().float())
        for k, v in items
        if (k == "loss" or k.startswith("loss_")) and isinstance(v, torch.Tensor) and v.numel() == 1
    }


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """``None`` (fresh start), ``"auto"`` (latest complete checkpoint of the run, if any) or a path."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    return Path(resume)


@dataclass
class _Session:
    """What `train` sets up before the first step: the DeepSpeed engine and the resumable data order."""

    engine: Any
    scheduler: Any
    manager: CheckpointManager
    state: TrainerState
    last_checkpoint: Path | None
    sampler: ResumableBatchSampler
    loader: DataLoader
    dtype: torch.dtype


def train(
    run: RunConfig,
    components: TrainingComponents,
    *,
    dist_info: DistInfo,
    ds_config: dict[str, Any],
    run_dir: Path,
    resume_from: Path | None = None,
    export_only: bool = False,
) -> TrainResult:
    """Train to ``run.train.total_steps`` (continuing from ``resume_from``), then export. With
    ``export_only`` the loaded state is exported without training, to ``<run>/export_step_XXXXXXXX``."""
    run_dir = Path(run_dir)
    try:
        session = _set_up(run, components, dist_info, ds_config, run_dir, resume_from)
        last_losses = _run_steps(run, session, dist_info, run_dir, take_steps=not export_only)
        return _finish(run, components, session, dist_info, ds_config, run_dir, export_only, last_losses)
    finally:
        configure_decoded_cache(0)  # the decoded frames are the training set's: release them


def _set_up(
    run: RunConfig,
    components: TrainingComponents,
    dist_info: DistInfo,
    ds_config: dict[str, Any],
    run_dir: Path,
    resume_from: Path | None,
) -> _Session:
    """Optimizer, schedule and DeepSpeed engine; the state of ``resume_from``; the data loader from there."""
    import deepspeed

    model = components.model
    optimizer = build_optimizer(model, run)
    scheduler = build_scheduler(optimizer, run.optim, run.train.schedule_steps)
    if dist_info.is_main:
        remove_partial_checkpoints(run_dir)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, dist_init_required=False
    )
    engine.checkpoint_engine = make_safe_checkpoint_engine(engine._config)
    dtype = torch.bfloat16 if run.train.precision == "bf16" else torch.float32
    manager = CheckpointManager(run_dir, keep_last=run.checkpoint.keep_last)

    state = TrainerState(world_size=dist_info.world_size)
    last_ckpt: Path | None = None
    if resume_from is not None:
        state = manager.load(engine, resume_from)
        state.world_size = dist_info.world_size
        last_ckpt = resume_from

    sampler = ResumableBatchSampler(
        len(components.dataset),
        batch_size=run.train.micro_batch_size,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        seed=run.train.seed,
        start_sample=state.samples_consumed,
        # video groups hold 1-4 questions: ranks get equal shares of them, not equal counts of videos
        sizes=components.dataset.item_sizes() if hasattr(components.dataset, "item_sizes") else None,
    )
    configure_decoded_cache(run.data.decoded_cache_mb)
    loader = DataLoader(
        PassIndexedDataset(components.dataset),
        batch_sampler=sampler,
        collate_fn=components.collate_fn,
        num_workers=run.data.num_workers,
        # each worker process keeps its own decoded-file cache (also under the spawn start method)
        worker_init_fn=functools.partial(_worker_cache, run.data.decoded_cache_mb)
        if run.data.num_workers
        else None,
        # its own generator: creating the iterator must not draw from the global RNG that checkpoints restore
        generator=torch.Generator().manual_seed(run.train.seed),
    )
    return _Session(engine, scheduler, manager, state, last_ckpt, sampler, loader, dtype)


def _worker_cache(max_mb: int, worker_id: int) -> None:
    configure_decoded_cache(max_mb)


def _run_steps(
    run: RunConfig, session: _Session, dist_info: DistInfo, run_dir: Path, *, take_steps: bool
) -> dict[str, float]:
    """Optimizer steps up to ``run.train.total_steps`` (none without ``take_steps``), logging and
    checkpointing on the way (updates ``session.state`` and ``session.last_checkpoint``); returns the
    losses last logged."""
    total = run.train.total_steps
    engine, state = session.engine, session.state
    reporter = ProgressReporter(
        total_steps=total,
        start_step=state.step,
        enabled=dist_info.is_main,
        progress_bar=run.log.progress_bar,
        tensorboard_dir=run_dir / "tensorboard" if run.log.tensorboard else None,
    )
    reporter.start(state.samples_consumed)
    meter = LossMeter()
    last_losses: dict[str, float] = {}
    questions = 0  # rows of the batches (questions; a video-group item holds several), for the rate
    engine.train()
    batches = iter(session.loader)
    try:
        while state.step < total and take_steps:
            batch = _to_device(next(batches), dist_info.device, session.dtype)
            boundary = engine.is_gradient_accumulation_boundary()
            output = engine(**batch)
            losses = _loss_values(output)
            if not all_ranks_true(all(math.isfinite(v) for v in losses.values()), dist_info.device):
                raise NonFiniteLossError(_nan_message(state, losses, session.last_checkpoint))
            engine.backward(output.loss if not isinstance(output, Mapping) else output["loss"])
            engine.step()
            state.samples_consumed += session.sampler.samples_per_step
            questions += _batch_rows(batch) * dist_info.world_size
            meter.add(losses)
            if not boundary:
                continue
            state.step += 1
            reporter.step()
            if state.step % run.log.every_steps == 0 or state.step == total:
                last_losses = mean_over_ranks(meter.pop(), dist_info.device)
                reporter.log(
                    state.step,
                    last_losses,
                    session.scheduler.get_last_lr()[0],
                    state.samples_consumed,
                    questions,
                )
            every = run.checkpoint.every_steps
            if state.step == total or (every and state.step % every == 0):
                session.last_checkpoint = session.manager.save(engine, state)
    finally:
        reporter.close()
    return last_losses


def _finish(
    run: RunConfig,
    components: TrainingComponents,
    session: _Session,
    dist_info: DistInfo,
    ds_config: dict[str, Any],
    run_dir: Path,
    export_only: bool,
    last_losses: dict[str, float],
) -> TrainResult:
    """Check that the replicas agree, export the model when asked, and report."""
    digests = check_replicas_agree(session.engine.module, ds_config, dist_info)
    export_dir = None
    if (run.checkpoint.export or export_only) and components.export_fn is not None:
        step = session.state.step
        name = f"{EXPORT_DIR}_step_{step:08d}" if export_only else EXPORT_DIR
        export_dir = export_model(session.engine, components.export_fn, run_dir / name, ds_config, dist_info)
    return TrainResult(
        state=session.state,
        last_checkpoint=session.last_checkpoint,
        export_dir=export_dir,
        final_losses=last_losses,
        param_digests=digests,
    )


def _batch_rows(batch: Mapping[str, Any]) -> int:
    """Questions in a collated batch (rows of ``input_ids``; 0 for batches without it)."""
    ids = batch.get("input_ids") if isinstance(batch, Mapping) else None
    return int(ids.shape[0]) if ids is not None else 0


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in name order."""
    h = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def check_replicas_agree(
    module: torch.nn.Module, ds_config: dict[str, Any], dist_info: DistInfo
) -> list[str] | None:
    """Compare the parameters of all data-parallel replicas (not under ZeRO-3, where they are partitioned);
    raise if they diverged."""
    if zero_stage(ds_config) == 3:
        return None
    digests: list[str | None] = [None] * dist_info.world_size
    torch.distributed.all_gather_object(digests, parameter_digest(module))
    if len(set(digests)) != 1:
        raise RuntimeError(f"data-parallel replicas hold different parameters after training: {digests}")
    if dist_info.is_main:
        logger.info("parameters identical on all %d ranks (sha256 %s)", dist_info.world_size, digests[0][:16])
    return digests


def _nan_message(state: TrainerState, losses: dict[str, float], last_ckpt: Path | None) -> str:
    parts = ", ".join(f"{k}={v}" for k, v in losses.items())
    keep = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint had been written yet"
    return (
        f"non-finite loss at optimizer step {state.step + 1} ({parts}); training stopped and {keep}. "
        "Lower optim.lr, check the data, or resume with --resume to retry from it."
    )


def full_state_dict(engine: Any, ds_config: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The complete module state dict on rank 0 (gathered from all ranks under ZeRO-3), else None."""
    if zero_stage(ds_config) == 3:
        state = engine._zero3_consolidated_16bit_state_dict()  # collective; full dict on rank 0
        return state if torch.distributed.get_rank() == 0 else None
    if torch.distributed.get_rank() != 0:
        return None
    return {k: v.detach().to("cpu") for k, v in engine.module.state_dict().items()}


def export_model(
    engine: Any,
    export_fn: Callable[[Mapping[str, torch.Tensor], Path], None],
    out_dir: Path,
    ds_config: dict[str, Any],
    dist_info: DistInfo,
) -> Path:
    state = full_state_dict(engine, ds_config)
    if dist_info.is_main:
        export_fn(state, out_dir)
        logger.info("exported a from_pretrained checkpoint to %s", out_dir)
    torch.distributed.barrier()
    return out_dir
