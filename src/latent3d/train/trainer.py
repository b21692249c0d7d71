"""One trainer for every model latent3d trains (priors, LDM3D, 3DVADER, NF-LDM), on HF Accelerate.

The loop is deliberately small: a model, ``batch_fn(step, generator) -> batch`` and
``loss_fn(model, batch, generator) -> loss | {"loss": ..., other metrics}``. Randomness of step ``k`` on process
``r`` comes from a generator seeded by ``(seed, k, r)``, so a run resumed from a checkpoint draws exactly the
batches and noise the uninterrupted run would have drawn. Under ``accelerate launch`` the same code runs data
parallel (gradients averaged by DDP, weights identical on every process).

What it does for you: AdamW with per-group learning rates and linear warm-up, gradient clipping, mixed precision,
EMA weights, checkpoints every ``ckpt_every`` steps and at exit (atomic, pickle-free, see :mod:`.checkpoint`),
``resume``, a NaN/inf guard that stops and keeps the last good checkpoint, a tqdm bar with loss and ETA, and a
JSONL metrics log.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor, nn

from latent3d.errors import UserError
from latent3d.io.atomic import write_text
from latent3d.runtime import resolve_device
from latent3d.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from latent3d.train.ema import EMA

BatchFn = Callable[[int, torch.Generator], Any]
LossFn = Callable[[nn.Module, Any, torch.Generator], "Tensor | dict[str, Tensor]"]


class TrainingDiverged(UserError):
    """The loss or the gradients became NaN/inf; the last good checkpoint is kept."""

    exit_code = 3


@dataclass
class TrainConfig:
    """Settings of one training run (field comments are the CLI help of the ``train`` commands)."""

    out_dir: Path
    """Run folder: checkpoints/, metrics.jsonl, config.json."""
    steps: int = 1000
    """Total optimisation steps."""
    lr: float = 1e-4
    """Peak learning rate (per-group multipliers via ``param_groups``)."""
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    """Linear learning-rate warm-up length."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value (None: no clipping)."""
    ema_decay: float | None = None
    """Keep an EMA of the weights with this decay (None: no EMA)."""
    ckpt_every: int = 500
    """Write a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    resume: bool = False
    """Continue from the newest complete checkpoint in out_dir/checkpoints."""
    progress: bool = True
    desc: str = "train"
    extra: dict = field(default_factory=dict)
    """Anything the caller wants recorded in config.json (model config, data description)."""


@dataclass
class TrainResult:
    step: int
    last_loss: float
    checkpoint: Path
    wall_s: float  # training time summed over every segment of a resumed run
    resumed_from: int
    ema: EMA | None


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator of (seed, step, process): independent streams, reproducible across resumes."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _lr_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _read_log(path: Path, upto: int) -> list[str]:
    if not path.is_file():
        return []
    return [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= upto]


def train(
    model: nn.Module,
    batch_fn: BatchFn,
    loss_fn: LossFn,
    cfg: TrainConfig,
    param_groups: list[dict] | None = None,
) -> TrainResult:
    """Train ``model`` in place and return where the final checkpoint is.

    ``param_groups`` (optional) are AdamW groups: dicts with ``params`` and an optional ``lr_scale``.
    ``loss_fn`` receives the (possibly DDP-wrapped) model: call it, do not reach into its attributes.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    dev = resolve_device(cfg.device)
    acc = Accelerator(cpu=dev.type == "cpu", mixed_precision=cfg.mixed_precision)
    out = Path(cfg.out_dir)
    ckpt_root = out / "checkpoints"
    log_path = out / "metrics.jsonl"

    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [{**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": cfg.lr * g.get("lr_scale", 1.0)} for g in groups]
    base_lrs = [g["lr"] for g in groups]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None

    start, last = 0, latest_checkpoint(ckpt_root) if cfg.resume else None
    if not cfg.resume and latest_checkpoint(ckpt_root) is not None:
        raise UserError(f"{out} already holds checkpoints: pass --resume to continue that run, or choose a new --out")
    if last is not None:
        ck = load_checkpoint(last)
        model.load_state_dict(ck["model"])
        if ck["optimizer"] is not None:
            opt.load_state_dict(ck["optimizer"])
        if ema is not None and ck["ema"] is not None:
            ema.load_state_dict(ck["ema"], ck["extra"].get("ema_updates", ck["step"]))
        start = ck["step"]
    elif cfg.resume and acc.is_main_process:
        print(f"latent3d: no checkpoint in {ckpt_root}, starting from step 0")
    if start > cfg.steps:
        raise UserError(f"checkpoint {last} is at step {start} > --steps {cfg.steps}: raise --steps to continue")
    if start == cfg.steps:  # a finished run: nothing to train, hand back its weights (e.g. to export them again)
        rows = _read_log(log_path, start)
        loss = json.loads(rows[-1])["loss"] if rows else float("nan")
        return TrainResult(start, loss, last, ck["extra"].get("wall_s", 0.0), start, ema)
    wall_before = ck["extra"].get("wall_s", 0.0) if last is not None else 0.0

    wrapped, opt = acc.prepare(model, opt)
    raw = acc.unwrap_model(wrapped)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg_json = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
        write_text(out / "config.json", json.dumps({**cfg_json, "num_processes": acc.num_processes}, indent=1))
        write_text(log_path, "".join(ln + "\n" for ln in _read_log(log_path, start)))  # drop steps past the resume

    def checkpoint(step: int) -> Path:
        path = ckpt_root / f"step_{step:08d}"
        if acc.is_main_process:
            extra = {"ema_updates": ema.num_updates if ema else 0, "wall_s": wall_before + time.time() - t0}
            save_checkpoint(ckpt_root, step, raw.state_dict(), opt.state_dict(), ema and ema.state_dict(),
                            extra, cfg.keep_checkpoints)  # fmt: skip
        acc.wait_for_everyone()
        return path

    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start, desc=cfg.desc, disable=not (cfg.progress and acc.is_main_process),
               dynamic_ncols=True)  # fmt: skip
    window: list[dict[str, float]] = []
    last_loss, completed, last_ckpt = float("nan"), start, last
    try:
        for step in range(start, cfg.steps):
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * _lr_factor(step, cfg.warmup_steps)
            gen = step_generator(cfg.seed, step, acc.process_index)
            batch = batch_fn(step, gen)
            with acc.autocast():
                res = loss_fn(wrapped, batch, gen)
            metrics = res if isinstance(res, dict) else {"loss": res}
            loss = metrics["loss"]
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            gnorm = acc.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip if cfg.grad_clip else math.inf)
            health = acc.gather(torch.stack([loss.detach().float(), torch.as_tensor(gnorm, dtype=torch.float32,
                                device=loss.device)]).reshape(1, 2))  # fmt: skip
            if not torch.isfinite(health).all():
                where = f"last good checkpoint {last_ckpt} kept" if last_ckpt else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"loss or gradient became non-finite at step {step} ({where}); lower --lr or resume with --resume"
                )
            opt.step()
            if ema is not None:
                ema.update(raw)
            last_loss = float(health[:, 0].mean())
            window.append({k: float(v.detach().float().mean()) for k, v in metrics.items()} | {"loss": last_loss})
            bar.update(1)
            done = completed = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                row |= {"step": done, "lr": opt.param_groups[0]["lr"], "grad_norm": float(health[:, 1].mean()),
                        "wall_s": round(time.time() - t0, 3)}  # fmt: skip
                bar.set_postfix(loss=f"{row['loss']:.4g}")
                if acc.is_main_process:
                    with log_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                window = []
            if done % cfg.ckpt_every == 0 and done < cfg.steps:
                last_ckpt = checkpoint(done)
        last_ckpt = checkpoint(completed)
    except KeyboardInterrupt:
        if completed > start:
            checkpoint(completed)  # the weights after `completed` updates: --resume continues from here
        raise
    finally:
        bar.close()
    return TrainResult(completed, last_loss, last_ckpt, wall_before + time.time() - t0, start, ema)
