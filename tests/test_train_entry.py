"""The real entry script (train/train.py) on the tiny config: two optimizer steps with export, resume after
a kill equals an uninterrupted run, and a 2-process run through the DeepSpeed launcher (CPU, gloo) whose
ranks end with equal parameters. DeepSpeed JIT-compiles a CPU comm op on first use (~30 s), cached in
the repository's .torch_extensions (git-ignored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--config",
    str(REPO / "train/configs/tiny.yaml"),
    "train.micro_batch_size=2",
    "train.grad_accum_steps=1",
    "data.num_frames=4",
    "model.preset_kwargs.num_frames=4",
    "optim.warmup_steps=1",
    "log.progress_bar=false",
    "log.every_steps=1",
]


def _env() -> dict[str, str]:
    launcher_keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher_keys}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return env


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "data_prep.synthetic",
            "--out",
            str(root),
            "--num-videos",
            "12",
            "--seed",
            "0",
        ],
        check=True,
        cwd=REPO,
        env=_env(),
        capture_output=True,
        timeout=300,
    )
    return root


def _train_cmd(synthetic: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train/train.py"),
        *TINY,
        f"data.datasets.0.spec.root={synthetic}",
        f"train.output_dir={out}",
        *extra,
    ]


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _final(out: Path) -> dict:
    return json.loads((out / "final_state.json").read_text())


def test_two_steps_through_the_entry_script(synthetic, tmp_path):
    out = tmp_path / "run"
    _run(_train_cmd(synthetic, out, "train.max_steps=2", "checkpoint.every_steps=1"))
    final = _final(out)
    assert final["step"] == 2 and final["samples_consumed"] == 4
    assert all(v == v for v in final["final_losses"].values()) and "loss_mask_dice" in final["final_losses"]
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_00000001", "step_00000002"]
    info = json.loads((out / "run_info.json").read_text())
    assert info["packages"]["torch"] and info["packages"]["deepspeed"] and "sha" in info["git"]
    assert "lr: 0.0015" in (out / "config.yaml").read_text()  # train/configs/tiny.yaml
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    import torch

    from mora.model.modeling_mora import MoRAForVideoGrounding

    model = MoRAForVideoGrounding.from_pretrained(str(out / "export"))
    assert model.processor is not None and model.config.lora is None
    assert list((out / "export").glob("*.safetensors"))
    state = torch.load(out / "checkpoints/step_00000002/rng_rank0.pt", weights_only=True)
    assert set(state) >= {"python", "numpy", "torch"}


def _exported(out: Path) -> dict:
    from safetensors.torch import load_file

    tensors: dict = {}
    for f in sorted((out / "export").glob("*.safetensors")):
        tensors |= load_file(f)
    return tensors


def test_resume_after_kill_matches_uninterrupted_run(synthetic, tmp_path):
    steps = ["train.max_steps=4", "checkpoint.every_steps=1", "checkpoint.keep_last=2"]
    _run(_train_cmd(synthetic, tmp_path / "full", *steps))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(synthetic, killed, *steps), cwd=REPO, env=_env(), stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step_00000002").is_dir():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final_state.json").exists()
    resumed = _run(_train_cmd(synthetic, killed, *steps, "--resume"))
    assert "resumed from" in resumed.stderr, resumed.stderr[-3000:]
    assert _final(killed)["step"] == 4
    assert _final(killed)["final_losses"] == pytest.approx(
        _final(tmp_path / "full")["final_losses"], rel=1e-5
    )
    # Equal parameters. Bitwise equality (param_digests) holds in quiet runs; a tolerance far below one
    # optimizer step's change keeps the test robust to CPU kernels that are not bitwise reproducible.
    import torch

    full, again = _exported(tmp_path / "full"), _exported(killed)
    assert full.keys() == again.keys() and len(full) > 100
    for name, value in full.items():
        torch.testing.assert_close(again[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_two_processes_through_the_deepspeed_launcher(synthetic, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", "29533"]
    train = _train_cmd(
        synthetic,
        out,
        "train.max_steps=2",
        "checkpoint.every_steps=0",
        "train.deepspeed=train/ds/zero2_cpu.json",
    )[1:]
    _run([*cmd, *train])
    final = _final(out)
    assert final["world_size"] == 2 and final["samples_consumed"] == 2 * 2 * 2
    digests = final["param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    ckpt = out / "checkpoints" / "step_00000002"
    assert {p.name for p in ckpt.glob("rng_rank*.pt")} == {"rng_rank0.pt", "rng_rank1.pt"}
    assert len(list((ckpt / "deepspeed" / "state").glob("*optim_states.pt"))) == 2  # ZeRO-2 partitions


def test_zero3_checkpoint_and_export(synthetic, tmp_path):
    """ZeRO-3 partitions parameters: checkpoints hold partitions, the export gathers the full model; with the
    LoRA recipe the export holds merged weights and no LoRA layers."""
    out = tmp_path / "z3"
    _run(
        _train_cmd(
            synthetic,
            out,
            "train.max_steps=1",
            "train.deepspeed=train/ds/zero3.json",
            "model.trainable.recipe=default",
        )
    )
    assert json.loads((out / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    assert _final(out)["param_digests"] is None  # replicas are not comparable under ZeRO-3

    from mora.model.modeling_mora import MoRAForVideoGrounding

    model = MoRAForVideoGrounding.from_pretrained(str(out / "export"))
    assert all(p.numel() > 0 for p in model.parameters())  # full tensors, not empty ZeRO-3 partitions
    assert model.config.lora is None and not any("lora_" in n for n, _ in model.named_parameters())


def test_default_flow_of_run_sh(tmp_path, monkeypatch):
    """``bash run.sh`` without arguments (train/launch.py's ``main``): synthetic data -> train -> evaluate,
    here on 12 videos and 2 optimizer steps."""
    import train.launch as launch

    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CONFIG", raising=False)
    monkeypatch.setattr(launch, "SYNTHETIC_VIDEOS", 12)
    data, out = tmp_path / "synthetic", tmp_path / "run"
    args = [*TINY[2:], f"data.datasets.0.spec.root={data}", f"train.output_dir={out}", "train.max_steps=2"]
    monkeypatch.setattr(sys, "argv", ["train/launch.py", *args])
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    envs, cmds = [], []
    call = launch.subprocess.call

    def spy(cmd, **kwargs):
        envs.append(kwargs.get("env"))
        cmds.append(cmd)
        return call(cmd, **kwargs)

    monkeypatch.setattr(launch.subprocess, "call", spy)
    assert launch.main() == 0
    # the tiny default trains in train.cpu_processes = 2 processes of 2 videos each here (4 in the default)
    assert cmds[1][1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert _final(out)["world_size"] == 2 and _final(out)["samples_consumed"] == 2 * 2 * 2
    # training and evaluation run with glibc keeping freed memory (a user's own setting would win)
    assert (
        len(envs) == 3
        and [e and e.get("GLIBC_TUNABLES") for e in envs[1:]] == [launch.CPU_MALLOC_TUNABLES] * 2
    )
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert launch.cpu_env()["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    assert (data / "train.json").is_file() and (data / "test.json").is_file()
    assert _final(out)["step"] == 2 and (out / "export" / "config.json").is_file()
    scores = json.loads((out / "eval" / "scores.json").read_text())
    assert scores["overall"]["n"] > 0 and 0.0 <= scores["overall"]["JF"] <= 1.0
    assert "baseline_empty" in scores and (out / "eval" / "ungated" / "scores.json").is_file()


def test_cpu_flow_shares_the_cores_among_its_processes(monkeypatch):
    import train.launch as launch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert launch.cpu_env(2)["OMP_NUM_THREADS"] == "4" and launch.cpu_env(3)["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in launch.cpu_env(1)  # one process: torch's default, all cores
    monkeypatch.setattr(launch.os, "sched_getaffinity", lambda pid: {0})
    assert launch.cpu_env(2)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a user's own setting wins
    assert launch.cpu_env(2)["OMP_NUM_THREADS"] == "3"
    assert launch.cpu_train_command(1, ["a=1"])[1:] == [
        "train/train.py",
        "--config",
        launch.DEFAULT_CONFIG,
        "--resume",
        "auto",
        "a=1",
    ]
    two = launch.cpu_train_command(2, ["a=1"])
    assert two[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert two[6:] == launch.cpu_train_command(1, ["a=1"])[1:]


def test_two_cpu_processes_resume_to_the_uninterrupted_run(synthetic, tmp_path):
    """The default's CPU flow (train.cpu_processes = 2 through torch.distributed.run, balanced shares): a run cut
    after its first checkpoint and started again continues from it and ends where an uninterrupted run ends."""
    import train.launch as launch

    def train(out: Path, *extra: str) -> subprocess.CompletedProcess:
        args = [*TINY[2:], f"data.datasets.0.spec.root={synthetic}", f"train.output_dir={out}"]
        return _run(
            launch.cpu_train_command(
                2, [*args, "train.steps_per_epoch=4", "checkpoint.every_steps=2", *extra]
            )
        )

    train(tmp_path / "full")
    train(tmp_path / "cut", "train.max_steps=2")
    again = train(tmp_path / "cut")
    assert "resumed from" in again.stderr and "(step 2, 8 samples consumed)" in again.stderr
    full, cut = _final(tmp_path / "full"), _final(tmp_path / "cut")
    assert full["world_size"] == 2 and cut["step"] == full["step"] == 4
    assert cut["samples_consumed"] == full["samples_consumed"] == 4 * 2 * 2
    assert len(set(full["param_digests"])) == 1 and cut["param_digests"] == full["param_digests"]
