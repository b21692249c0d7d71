"""Shared trainer: SIGKILL + resume reproduces the uninterrupted run byte for byte, 2 processes stay identical, NaN
guard, EMA."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latent3d.train.checkpoint import latest_checkpoint, load_checkpoint, optimizer_from_flat, optimizer_to_flat
from latent3d.train.ema import EMA
from latent3d.errors import UserError
from latent3d.train.trainer import (TrainConfig, TrainingDiverged, changed_settings, one_cycle, run_config,
                                    step_generator, train)
from tolerances import EPS32

SCRIPT = Path(__file__).parent / "scripts" / "toy_train.py"
BIN = Path(sys.executable).parent


def run_toy(out, *args, **kw):
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)


@pytest.mark.numerics
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """A run SIGKILLed after its step-20 checkpoint and resumed ends with exactly the bytes of the uninterrupted run:
    final weights, EMA, optimizer state and every logged metric. The kill falls inside the 40-step learning-rate
    warm-up, so the schedule, AdamW's moments and step count, the EMA and its update count, and the per-step data
    and noise streams must all be restored for the bytes to agree (per-step seeding makes resume exact, not close)."""
    args = ["--steps", 60, "--warmup-steps", 40]
    ref_proc = subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(tmp_path / "ref"), *map(str, args)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(out), *map(str, args), "--sleep", "0.05"])
    deadline = time.time() + 120
    while latest_checkpoint(out / "checkpoints") is None or latest_checkpoint(out / "checkpoints").name < "step_00000020":
        assert proc.poll() is None and time.time() < deadline, "toy run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = int(latest_checkpoint(out / "checkpoints").name.split("_")[1])
    assert 20 <= killed_at < 40  # inside the warm-up
    ref_out, _ = ref_proc.communicate(timeout=120)
    assert ref_proc.returncode == 0
    ref = json.loads(ref_out.splitlines()[-1])

    res = json.loads(run_toy(out, *args, "--resume").stdout.splitlines()[-1])
    assert res["resumed_from"] == killed_at and res["step"] == 60
    assert res["eval_loss"] == ref["eval_loss"]
    # byte for byte: the final weights, and the EMA and optimizer state of the final checkpoint
    assert (out / "final_rank0.safetensors").read_bytes() == (tmp_path / "ref" / "final_rank0.safetensors").read_bytes()
    for name in ("model", "ema", "optimizer"):
        a, b = (d / "checkpoints" / "step_00000060" / f"{name}.safetensors" for d in (out, tmp_path / "ref"))
        assert a.read_bytes() == b.read_bytes(), name
    state = [json.loads((d / "checkpoints" / "step_00000060" / "trainer_state.json").read_text())
             for d in (out, tmp_path / "ref")]  # fmt: skip
    assert state[0]["ema_updates"] == state[1]["ema_updates"] == 60
    assert state[0]["optimizer"] == state[1]["optimizer"]  # param groups (lr after warm-up) and scalar state
    # the metrics log holds each logged step once, with the uninterrupted run's values (all but the wall clock)
    rows = [[{k: v for k, v in json.loads(ln).items() if k != "wall_s"} for ln in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (out, tmp_path / "ref")]  # fmt: skip
    assert [r["step"] for r in rows[1]] == list(range(5, 61, 5))
    assert rows[0] == rows[1]
    assert rows[1][0]["lr"] < rows[1][-1]["lr"] == 3e-3  # the warm-up really ran


@pytest.mark.numerics
def test_two_process_data_parallel_keeps_weights_identical(tmp_path):
    out = tmp_path / "ddp"
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), "--out", str(out), "--steps", "20"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=300)
    assert json.loads((out / "config.json").read_text())["num_processes"] == 2  # really two processes (gloo)
    w0, w1 = load_file(str(out / "final_rank0.safetensors")), load_file(str(out / "final_rank1.safetensors"))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # each rank drew its own batches: a single process fed only rank 0's data ends elsewhere
    run_toy(tmp_path / "single", "--steps", 20)
    w_single = load_file(str(tmp_path / "single" / "final_rank0.safetensors"))
    assert any(not torch.equal(w0[k], w_single[k]) for k in w0)


def _tiny_setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)

    def batch_fn(step, g):
        x = torch.randn(16, 3, generator=g)
        return x, x.sum(1, keepdim=True), step

    return model, batch_fn


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, batch_fn = _tiny_setup()

    def loss_fn(m, batch, g):
        x, y, step = batch
        loss = (m(x) - y).pow(2).mean()
        return loss * float("inf") if step == 25 else loss

    cfg = TrainConfig(out_dir=tmp_path, steps=50, lr=1e-2, ckpt_every=10, device="cpu", progress=False)
    with pytest.raises(TrainingDiverged, match="step 25"):
        train(model, batch_fn, loss_fn, cfg)
    last = latest_checkpoint(tmp_path / "checkpoints")
    assert last.name == "step_00000020"
    assert all(torch.isfinite(v).all() for v in load_checkpoint(last)["model"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad update was never applied


def test_optimizer_state_round_trips_without_pickle(tmp_path):
    model, batch_fn = _tiny_setup()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    for _ in range(3):
        x, y, _ = batch_fn(0, torch.Generator().manual_seed(1))
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
    sd = opt.state_dict()
    back = optimizer_from_flat(*optimizer_to_flat(sd))
    assert back["param_groups"] == sd["param_groups"]
    for pid, st in sd["state"].items():
        for name, v in st.items():
            assert torch.equal(back["state"][pid][name], v)


@pytest.mark.numerics
def test_ema_closed_form():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ema = EMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(7):
        ema.update(model)
    # shadow_n = 1 - d^n for a step change from 0 to 1; each float32 lerp a + w (b - a) rounds <= 3 times on values
    # <= 1, so 7 updates are within 21 eps32 (2.5e-6); the wrong number of updates (1 - d^6) is off by 0.05
    assert abs(ema.shadow["weight"].item() - (1 - 0.9**7)) <= 21 * EPS32
    warm = EMA(model, decay=0.999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    model, batch_fn = _tiny_setup()
    calls = []

    def loss_fn(m, batch, g):
        calls.append(1)
        x, y, _ = batch
        return (m(x) - y).pow(2).mean()

    cfg = TrainConfig(out_dir=tmp_path, steps=12, lr=1e-2, ckpt_every=5, log_every=4, device="cpu", progress=False)
    first = train(model, batch_fn, loss_fn, cfg)
    w = {k: v.clone() for k, v in model.state_dict().items()}
    n = len(calls)
    again = train(model, batch_fn, loss_fn, TrainConfig(**{**cfg.__dict__, "resume": True}))
    assert len(calls) == n and again.step == 12 and again.checkpoint == first.checkpoint
    assert again.last_loss == pytest.approx(json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["loss"])
    assert all(torch.equal(w[k], v) for k, v in model.state_dict().items())
    with pytest.raises(Exception, match="raise --steps"):
        train(model, batch_fn, loss_fn, TrainConfig(**{**cfg.__dict__, "resume": True, "steps": 8}))


@pytest.mark.numerics
def test_one_cycle_in_memory_run_equals_torch_onecyclelr_loop(tmp_path, monkeypatch):
    """``lr_schedule="one_cycle"`` without clipping is AdamW under torch's OneCycleLR (its lr and its beta1 cycle):
    a hand-written loop over the same per-step batches ends with the same bits. ``out_dir=None`` writes nothing
    and reports every log row to ``on_log``; it cannot be resumed."""
    model, batch_fn = _tiny_setup()
    ref = copy.deepcopy(model)
    steps, warmup, lr, seed = 16, 4, 5e-2, 3  # pct_start 0.25: 0.25 * 16 is exact, so are torch's phase ends

    def loss_fn(m, batch, g):
        x, y, _ = batch
        return (m(x) - y).pow(2).mean()

    opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup / steps)
    lrs, beta1s = [], []
    for k in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        beta1s.append(opt.param_groups[0]["betas"][0])
        gen = step_generator(seed, k, 0)
        loss = loss_fn(ref, batch_fn(k, gen), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert max(lrs) == lr and lrs[0] == pytest.approx(lr / 25) and min(beta1s) == pytest.approx(0.85)  # a cycle
    assert [one_cycle(lr, k, steps, warmup) for k in range(steps)] == list(zip(lrs, beta1s))

    rows = []
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(out_dir=None, steps=steps, lr=lr, weight_decay=1e-4, warmup_steps=warmup, lr_schedule="one_cycle",
                      grad_clip=None, log_every=4, seed=seed, device="cpu", progress=False)  # fmt: skip
    res = train(model, batch_fn, loss_fn, cfg, on_log=rows.append)
    assert res.checkpoint is None and res.step == steps and list(tmp_path.iterdir()) == []
    for name, v in model.state_dict().items():
        assert torch.equal(v, ref.state_dict()[name]), name
    assert [r["step"] for r in rows] == [4, 8, 12, 16] and [r["lr"] for r in rows] == [lrs[k] for k in (3, 7, 11, 15)]
    with pytest.raises(UserError, match="resume needs a run folder"):
        train(model, batch_fn, loss_fn, TrainConfig(**{**cfg.__dict__, "resume": True}))


def test_resume_rules_of_one_cycle_and_of_settings_added_later():
    """Under one_cycle every step's lr depends on --steps, so a resume may not change it; a setting missing from an
    older run's config (added to TrainConfig since) counts as its default."""
    one = TrainConfig(out_dir=Path("a"), steps=10, lr_schedule="one_cycle", warmup_steps=2)
    assert changed_settings(run_config(one, 1), run_config(TrainConfig(**{**one.__dict__, "steps": 20}), 1)) == [
        "steps 10 -> 20"]  # fmt: skip
    const = run_config(TrainConfig(out_dir=Path("a"), steps=10), 1)
    older = {k: v for k, v in const.items() if k != "lr_schedule"}
    assert changed_settings(older, run_config(TrainConfig(out_dir=Path("a"), steps=20), 1)) == []
    assert changed_settings(older, run_config(one, 1)) == ["warmup_steps 0 -> 2", "lr_schedule constant -> one_cycle"]
