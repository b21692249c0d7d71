"""A toy regression run through latent3d's trainer, driven by tests/test_trainer.py (also under accelerate launch)."""

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from latent3d.train.trainer import TrainConfig, train

p = argparse.ArgumentParser()
p.add_argument("--out", type=Path, required=True)
p.add_argument("--steps", type=int, default=60)
p.add_argument("--ckpt-every", type=int, default=10)
p.add_argument("--resume", action="store_true")
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--nan-at", type=int, default=-1)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--warmup-steps", type=int, default=0)
a = p.parse_args()

torch.manual_seed(a.seed)
model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))


def target(x):
    return torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])


def batch_fn(step, g):
    x = torch.rand(64, 2, generator=g) * 2 - 1
    return x, target(x) + 0.05 * torch.randn(64, 1, generator=g), step


def loss_fn(m, batch, g):
    x, y, step = batch
    if a.sleep:
        time.sleep(a.sleep)
    loss = (m(x) - y).pow(2).mean()
    if 0 <= a.nan_at <= step:
        loss = loss * float("nan")
    return {"loss": loss, "mae": (m(x) - y).abs().mean()}


cfg = TrainConfig(out_dir=a.out, steps=a.steps, lr=a.lr, ckpt_every=a.ckpt_every, ema_decay=0.9, seed=a.seed,
                  device="cpu", resume=a.resume, log_every=5, progress=False, warmup_steps=a.warmup_steps)
res = train(model, batch_fn, loss_fn, cfg)
x_eval = torch.linspace(-1, 1, 400).reshape(200, 2)
with torch.no_grad():
    eval_loss = float((model(x_eval) - target(x_eval)).pow(2).mean())
from accelerate import PartialState  # noqa: E402

rank = PartialState().process_index
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(a.out / f"final_rank{rank}.safetensors"))
if rank == 0:
    print(json.dumps({"eval_loss": eval_loss, "step": res.step, "resumed_from": res.resumed_from}))
