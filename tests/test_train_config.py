"""Run configs: YAML + base chain + overrides, validation naming the field, DeepSpeed JSON resolution,
learning-rate schedules, the resumable sampler, and the CLI's user-error path (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mora.training.config import ConfigError, RunConfig
from mora.training.config_io import dump_config_yaml, load_run_config
from mora.training.ds_config import load_deepspeed_config, resolve_deepspeed_config
from mora.training.sampler import PassIndexedDataset, ResumableBatchSampler
from mora.training.schedule import lr_multiplier

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "train" / "configs").glob("*.yaml"))


def test_defaults_are_the_paper_recipe():
    run = RunConfig()
    assert (run.optim.lr, run.optim.betas, run.optim.weight_decay, run.optim.grad_clip) == (
        3e-4,
        (0.9, 0.95),
        0.0,
        1.0,
    )
    assert (run.optim.schedule, run.optim.warmup_steps) == ("warmup_decay", 100)
    assert (
        run.train.micro_batch_size,
        run.train.grad_accum_steps,
        run.train.steps_per_epoch,
        run.train.epochs,
    ) == (
        1,
        10,
        500,
        20,
    )
    assert run.train.precision == "bf16" and run.train.deepspeed == "train/ds/zero2.json"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_resolves(path):
    run = load_run_config(path)
    ds = load_deepspeed_config(run, REPO)
    assert ds["train_micro_batch_size_per_gpu"] == run.train.micro_batch_size
    assert ds["gradient_accumulation_steps"] == run.train.grad_accum_steps
    assert ds["gradient_clipping"] == run.optim.grad_clip
    assert ds["bf16"]["enabled"] == (run.train.precision == "bf16")


def test_real_recipes_match_the_paper():
    zs = load_run_config(REPO / "train/configs/mora_zs_lisa7b.yaml")
    assert zs.model.pretrained and zs.model.trainable == {"recipe": "default"}
    formats = [d.spec["format"] for d in zs.data.datasets]
    assert formats[:2] == ["refytvos", "mevis"] and not any(
        d.spec.get("use_span", True) for d in zs.data.datasets
    )
    ds = load_deepspeed_config(zs, REPO)
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"] is True
    ft = load_run_config(REPO / "train/configs/mora_ft_lisa7b.yaml")  # base: chain
    assert [d.spec["format"] for d in ft.data.datasets] == ["groundmore"]
    assert ft.optim == zs.optim and ft.train.schedule_steps == 10_000
    z3 = load_run_config(REPO / "train/configs/mora_zs_lisa7b.yaml", ["train.deepspeed=train/ds/zero3.json"])
    assert load_deepspeed_config(z3, REPO)["zero_optimization"]["stage"] == 3


def test_qwen_recipes_share_the_mixture_and_optimisation():
    qwen25 = load_run_config(REPO / "train/configs/qwen2_5_vl_7b_sam2_1_large.yaml")
    qwen3 = load_run_config(REPO / "train/configs/qwen3_vl_8b_sam2_1_large.yaml")
    assert qwen3.model.pretrained == "pretrain_weights/mora_qwen3_vl_8b_sam2_1_large"
    assert qwen3.model.preset is None and qwen3.model.trainable == {"recipe": "default"}
    assert qwen3.data == qwen25.data and qwen3.optim == qwen25.optim
    assert [d.spec["format"] for d in qwen3.data.datasets][:3] == ["refytvos", "mevis", "groundmore"]
    assert qwen3.train.output_dir == "runs/qwen3_vl_8b_sam2_1_large"
    assert load_deepspeed_config(qwen3, REPO)["bf16"]["enabled"] is True


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("optim: {lr: 1e-3, warmup_steps: 5}\ntrain: {epochs: 2}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\noptim: {warmup_steps: 7}\n")
    run = load_run_config(
        tmp_path / "child.yaml", ["train.epochs=3", "optim.betas=[0.8, 0.9]", "data.datasets.0.spec.ratio=2"]
    )
    assert run.optim.lr == 1e-3 and run.optim.warmup_steps == 7  # 1e-3 without a dot: still a number
    assert run.train.epochs == 3 and run.optim.betas == (0.8, 0.9)
    assert run.data.datasets[0].spec["ratio"] == 2
    (tmp_path / "resolved.yaml").write_text(dump_config_yaml(run))  # what each run folder records
    assert load_run_config(tmp_path / "resolved.yaml") == run


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("optim.lr=-1", "optim.lr"),
        ("optim.lrr=1", "optim.lrr"),
        ("train.precision=fp16", "train.precision"),
        ("train.micro_batch_size=two", "train.micro_batch_size"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("model.pretrained=some/folder", "model.preset"),
        ("data.datasets.5.spec.ratio=1", "data.datasets.5"),
        ("optim.warmup_steps=20000", "optim.warmup_steps"),
        ("checkpoint.keep_last=0", "checkpoint.keep_last"),
        ("train.cpu_processes=0", "train.cpu_processes"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        load_run_config(None, [override])
    assert err.value.field_path == field


def test_deepspeed_json_may_not_contradict_the_run_config():
    run = RunConfig()
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=4"):
        resolve_deepspeed_config({"gradient_accumulation_steps": 4}, run)
    with pytest.raises(ConfigError, match="optimizer"):
        resolve_deepspeed_config({"optimizer": {"type": "Adam"}}, run)


def test_schedules():
    kw = dict(warmup_steps=100, total_steps=1000, min_lr_ratio=0.0)
    wd = [lr_multiplier(s, schedule="warmup_decay", **kw) for s in (0, 49, 99, 100, 550, 999, 1000)]
    assert wd == pytest.approx([0.01, 0.5, 1.0, 1.0, 0.5, 1 / 900, 0.0])
    cos = [
        lr_multiplier(s, schedule="cosine", warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
        for s in (9, 60, 110)
    ]
    assert cos == pytest.approx([1.0, 0.55, 0.1])


def test_sampler_resumes_mid_pass_and_splits_ranks():
    def batches(start, rank, world, n):
        it = iter(
            ResumableBatchSampler(10, batch_size=3, rank=rank, world_size=world, seed=4, start_sample=start)
        )
        return [next(it) for _ in range(n)]

    full = batches(0, 0, 1, 8)  # 24 samples: crosses two pass boundaries
    assert batches(9, 0, 1, 5) == full[3:]
    flat = [k for b in full for k in b]
    assert sorted(i for p, i in flat[:10]) == list(range(10)) and {p for p, _ in flat[:10]} == {0}
    r0, r1 = batches(0, 0, 2, 2), batches(0, 1, 2, 2)
    assert r0[0] + r1[0] + r0[1] + r1[1] == flat[:12]  # two ranks read disjoint slices of the same stream

    class WithEpoch(torch.utils.data.Dataset):
        epoch = None

        def __len__(self):
            return 10

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __getitem__(self, i):
            return (self.epoch, i)

    assert PassIndexedDataset(WithEpoch())[(3, 7)] == (3, 7)


def test_sampler_balances_item_sizes_across_ranks():
    sizes = [4, 1, 4, 2, 1, 3, 2, 4, 1, 2, 4, 3]

    def batches(start, rank, world, n, sizes=sizes):
        kw = dict(batch_size=3, rank=rank, world_size=world, seed=1, start_sample=start, sizes=sizes)
        it = iter(ResumableBatchSampler(12, **kw))
        return [next(it) for _ in range(n)]

    plain = [batches(0, r, 2, 6, sizes=None) for r in range(2)]
    shared = [batches(0, r, 2, 6) for r in range(2)]
    for step in range(6):
        a, b = shared[0][step], shared[1][step]
        assert len(a) == len(b) == 3 and not set(a) & set(b)
        assert sorted(a + b) == sorted(plain[0][step] + plain[1][step])  # the same items each step, dealt out
        loads = [sum(sizes[i] for _, i in keys) for keys in (a, b)]
        plain_loads = [sum(sizes[i] for _, i in keys[step]) for keys in plain]
        assert max(loads) <= max(plain_loads) and max(loads) - min(loads) <= max(sizes)
    assert any(
        max(sum(sizes[i] for _, i in p[s]) for p in plain)
        > max(sum(sizes[i] for _, i in q[s]) for q in shared)
        for s in range(6)
    )  # slices were unbalanced somewhere in these 6 steps, the shares are not
    assert batches(6, 1, 2, 4) == shared[1][1:5]  # resuming replays the same shares
    assert batches(0, 0, 1, 4) == batches(0, 0, 1, 4, sizes=None)  # one rank: nothing to deal
    with pytest.raises(ValueError, match="one per dataset item"):
        ResumableBatchSampler(12, batch_size=3, rank=0, world_size=2, seed=1, sizes=[1, 2])


def test_cli_user_error_is_one_clear_line(tmp_path):
    cmd = [sys.executable, str(REPO / "train/train.py"), "--config", str(REPO / "train/configs/tiny.yaml")]
    bad = subprocess.run([*cmd, "optim.lr=abc"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert "optim.lr: expected a number, got 'abc'" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run(
        [*cmd, f"data.datasets.0.spec.root={tmp_path / 'nope'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert (
        missing.returncode == 2
        and "data.datasets.0.spec.root" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    resume = subprocess.run(
        [*cmd, "--resume", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert resume.returncode == 2 and "--resume" in resume.stderr and "Traceback" not in resume.stderr


def test_print_config_is_the_resolved_yaml(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "train/train.py"),
            "--config",
            str(REPO / "train/configs/tiny.yaml"),
            "--print-config",
            "optim.lr=0.01",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "lr: 0.01" in out.stdout


def test_launcher_command_and_errors(tmp_path):
    sys.path.insert(0, str(REPO))
    from train.launch import deepspeed_command

    env = {"CONFIG": "train/configs/mora_zs_lisa7b.yaml", "NGPU": "8", "NNODES": "2", "HOSTFILE": "hosts"}
    cmd = deepspeed_command(env, ["--resume", "optim.lr=1e-4"])
    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"]
    assert cmd[3:9] == ["--hostfile", "hosts", "--num_nodes", "2", "--num_gpus", "8"]
    assert cmd[9:] == ["train/train.py", "--config", env["CONFIG"], "--resume", "optim.lr=1e-4"]

    launch = [sys.executable, str(REPO / "train/launch.py")]
    bad = subprocess.run(
        [*launch, "optim.lr=-1"],
        env={**os.environ, "CONFIG": "train/configs/tiny.yaml", "NGPU": "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "optim.lr: must be > 0" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run(
        launch,
        env={**os.environ, "CONFIG": "train/configs/nope.yaml"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_zero_shot_recipe_starts_from_what_the_documented_conversion_writes():
    """train/README.md converts LISA into the folder mora_zs_lisa7b.yaml trains from (the recipe itself runs on a
    tiny converted checkpoint in tests/test_lisa_recipe.py)."""
    zs = load_run_config(REPO / "train/configs/mora_zs_lisa7b.yaml")
    readme = (REPO / "train/README.md").read_text()
    assert (
        f"--out {zs.model.pretrained}" in readme
        and "mora convert lisa --checkpoint pretrain_weights/lisa-7b-v1" in readme
    )
    assert "CONFIG=train/configs/mora_zs_lisa7b.yaml NGPU=" in readme
    assert "pretrain_weights/download.py lisa-7b-v1 --allow-pickle" in readme
