"""The training loop on a small torch module, in-process with DeepSpeed (a world of one, gloo):
exact resume (model, optimizer, scheduler, RNG, data position), atomic checkpoints, keep-last-N, NaN guard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mora.training import checkpointing
from mora.training.checkpointing import complete_checkpoints, latest_checkpoint
from mora.training.config_io import load_run_config
from mora.training.ds_config import resolve_deepspeed_config
from mora.training.trainer import NonFiniteLossError, TrainingComponents, parameter_digest, train
from tests.train_toy import ToyDataset, ToyRegressor, toy_collate

REPO = Path(__file__).resolve().parents[1]
ZERO2 = {"zero_optimization": {"stage": 2, "contiguous_gradients": True, "reduce_scatter": True}}
ZERO0 = json.loads((REPO / "train/ds/zero0.json").read_text())  # the tiny default: one process


@pytest.fixture(scope="module")
def dist_info():
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    saved = {k: os.environ.get(k) for k in keys}
    from mora.training.distributed import init_distributed

    info = init_distributed()
    yield info
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _run_config(out: Path, *extra: str):
    return load_run_config(
        None,
        [
            "train.precision=fp32",
            "train.micro_batch_size=2",
            "train.grad_accum_steps=2",
            "train.steps_per_epoch=8",
            "train.epochs=1",
            "optim.lr=1e-2",
            "optim.warmup_steps=2",
            "checkpoint.every_steps=3",
            "checkpoint.keep_last=2",
            "log.every_steps=1",
            "log.progress_bar=false",
            f"train.output_dir={out}",
            *extra,
        ],
    )


def _train(run, dist_info, resume_from=None, model=None, zero=ZERO2):
    torch.manual_seed(0)
    model = model or ToyRegressor()
    ds = resolve_deepspeed_config(zero, run)
    components = TrainingComponents(model=model, dataset=ToyDataset(), collate_fn=toy_collate)
    result = train(
        run,
        components,
        dist_info=dist_info,
        ds_config=ds,
        run_dir=Path(run.train.output_dir),
        resume_from=resume_from,
    )
    return result, model


@pytest.mark.parametrize("zero", [ZERO2, ZERO0], ids=["zero2", "zero0"])
def test_resume_matches_uninterrupted_run(tmp_path, dist_info, zero):
    full, full_model = _train(_run_config(tmp_path / "full"), dist_info, zero=zero)
    assert full.state.step == 8 and full.state.samples_consumed == 8 * 2 * 2
    assert [p.name for p in complete_checkpoints(tmp_path / "full")] == ["step_00000006", "step_00000008"]

    # the same run stopped after 3 steps, then resumed in a fresh engine with the full length
    _train(_run_config(tmp_path / "part", "train.max_steps=3"), dist_info, zero=zero)
    resume = latest_checkpoint(tmp_path / "part")
    assert resume is not None and resume.name == "step_00000003"
    torch.manual_seed(1234)  # the resumed run must not depend on the process's RNG state
    resumed, resumed_model = _train(_run_config(tmp_path / "part"), dist_info, resume_from=resume, zero=zero)
    assert resumed.state.step == 8 and resumed.state.samples_consumed == full.state.samples_consumed
    for (name, a), (_, b) in zip(full_model.named_parameters(), resumed_model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert parameter_digest(full_model) == parameter_digest(resumed_model)
    assert full.final_losses == pytest.approx(resumed.final_losses)


def test_resume_without_rng_restore_differs(tmp_path, dist_info, monkeypatch):
    """The exactness above relies on the RNG restore (dropout and the dataset's noise use it)."""
    full, full_model = _train(_run_config(tmp_path / "full"), dist_info)
    _train(_run_config(tmp_path / "part", "train.max_steps=3"), dist_info)
    monkeypatch.setattr(checkpointing, "load_rng_state", lambda path: None)
    torch.manual_seed(1234)
    _, resumed_model = _train(
        _run_config(tmp_path / "part"), dist_info, resume_from=latest_checkpoint(tmp_path / "part")
    )
    assert parameter_digest(full_model) != parameter_digest(resumed_model)


def test_crash_while_writing_leaves_no_resumable_checkpoint(tmp_path, dist_info, monkeypatch):
    run = _run_config(tmp_path / "run", "checkpoint.every_steps=2")
    calls = {"n": 0}
    real = checkpointing.save_rng_state

    def crash_on_second(path):
        calls["n"] += 1
        if calls["n"] == 2:  # the DeepSpeed files of step 4 are written, the folder is not complete
            raise OSError("disk full")
        real(path)

    monkeypatch.setattr(checkpointing, "save_rng_state", crash_on_second)
    with pytest.raises(OSError, match="disk full"):
        _train(run, dist_info)
    ckpts = tmp_path / "run" / "checkpoints"
    assert [p.name for p in complete_checkpoints(tmp_path / "run")] == ["step_00000002"]
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    assert not (ckpts / "step_00000004").exists()

    # a kill leaves the temporary folder behind (no cleanup runs); it is never taken and removed on restart
    partial = ckpts / ".step_00000004.tmp-killed" / "step_00000004"
    (partial / "deepspeed").mkdir(parents=True)
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    monkeypatch.setattr(checkpointing, "save_rng_state", real)
    resumed, _ = _train(
        _run_config(tmp_path / "run"), dist_info, resume_from=latest_checkpoint(tmp_path / "run")
    )
    assert resumed.state.step == 8
    assert not any(p.name.startswith(".") for p in ckpts.iterdir())


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, dist_info):
    run = _run_config(tmp_path / "run")
    # 2 micro-batches per step: call 15 is the first micro-batch of step 8; checkpoints at 3 and 6
    with pytest.raises(NonFiniteLossError, match=r"step 8 .*loss_mse=nan.*step_00000006"):
        _train(run, dist_info, model=ToyRegressor(nan_at_call=15))
    assert [p.name for p in complete_checkpoints(tmp_path / "run")] == ["step_00000003", "step_00000006"]


@pytest.mark.parametrize("zero", [ZERO2, ZERO0], ids=["zero2", "zero0"])
def test_checkpoints_load_with_weights_only(tmp_path, dist_info, zero):
    _train(_run_config(tmp_path / "run", "train.max_steps=3"), dist_info, zero=zero)
    ckpt = latest_checkpoint(tmp_path / "run")
    with torch.serialization.safe_globals(checkpointing._deepspeed_safe_globals()):
        for f in ckpt.rglob("*.pt"):
            torch.load(f, weights_only=True)
    assert (ckpt / "trainer_state.json").is_file()


def test_fused_adamw_takes_the_steps_of_the_loop(tmp_path):
    """``optim.fused`` (the default; the DeepSpeed runs above use it) updates the weights as the per-parameter
    loop does, up to rounding."""
    from mora.training.trainer import build_optimizer

    models = {}
    for fused in (True, False):
        torch.manual_seed(0)
        model = ToyRegressor().eval()
        optimizer = build_optimizer(model, _run_config(tmp_path, f"optim.fused={str(fused).lower()}"))
        assert optimizer.defaults["fused"] is fused
        x, y = torch.randn(16, 4), torch.randn(16)
        for _ in range(8):
            optimizer.zero_grad()
            model(x, y).loss.backward()
            optimizer.step()
        models[fused] = model
    torch.manual_seed(0)
    initial = ToyRegressor()
    for (name, a), (_, b), p0 in zip(
        models[True].named_parameters(), models[False].named_parameters(), initial.parameters()
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.equal(a, p0)  # eight steps at lr 1e-2 moved every tensor
