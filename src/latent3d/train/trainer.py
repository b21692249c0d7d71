"""One trainer for every model latent3d trains (priors, LDM3D, 3DVADER, NF-LDM, the measuring nets of
:mod:`latent3d.metrics`), on HF Accelerate.

The loop is deliberately small: a model, ``batch_fn(step, generator) -> batch`` and
``loss_fn(model, batch, generator) -> loss | {"loss": ..., other metrics}``. Randomness of step ``k`` on process
``r`` comes from a generator seeded by ``(seed, k, r)``, so a run resumed from a checkpoint draws exactly the
batches and noise the uninterrupted run would have drawn. Under ``accelerate launch`` the same code runs data
parallel (gradients averaged by DDP, weights identical on every process).

What it does for you: AdamW with per-group learning rates and linear warm-up (or a one-cycle schedule), gradient
clipping, mixed precision, EMA weights, checkpoints every ``ckpt_every`` steps and at exit (atomic, pickle-free, see
:mod:`.checkpoint`; ``out_dir=None``: an in-memory run that writes nothing, as for latent3d's measuring nets),
``resume`` (bit for bit: weights, AdamW state, EMA, grad scaler, the partial metrics window; a damaged newest
checkpoint falls back to the one before; a resume with other settings is refused), a NaN/inf guard that stops and
keeps the last good checkpoint, a tqdm bar with loss and ETA, and a JSONL metrics log.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor, nn

from latent3d.errors import UserError
from latent3d.io.atomic import write_text
from latent3d.runtime import resolve_device
from latent3d.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from latent3d.train.ema import EMA

BatchFn = Callable[[int, torch.Generator], Any]
LossFn = Callable[[nn.Module, Any, torch.Generator], "Tensor | dict[str, Tensor]"]


class TrainingDiverged(UserError):
    """The loss or the gradients became NaN/inf; the last good checkpoint is kept."""

    exit_code = 3


@dataclass
class TrainConfig:
    """Settings of one training run (field comments are the CLI help of the ``train`` commands).

    ``resume`` continues the run only with the settings it was started with: every field, ``extra`` (the caller's
    model and data description) and the number of processes are compared with those stored in the checkpoint, and a
    difference is refused before anything is trained or written. Only the fields of :data:`RESUME_MAY_CHANGE` may
    differ (they do not change what step ``k`` computes): ``steps`` (and the copies of it in ``extra``) to extend
    or shorten a run (the warm-up depends on the step only, so the steps already taken stay valid), where and how
    often checkpoints and metrics are written (``out_dir``, ``ckpt_every``, ``keep_checkpoints``, ``log_every``),
    ``progress``/``desc``, and ``device`` (a run moved to another device continues, but its floats are then those
    of that device's kernels, not of an uninterrupted run). Under ``lr_schedule="one_cycle"`` the schedule of every
    step depends on ``steps``, so there ``steps`` may not change either. A setting added after a run was started and
    missing from its checkpoint counts as its default.
    """

    out_dir: Path | None
    """Run folder: checkpoints/, metrics.jsonl, config.json (None: train in memory, write nothing, no resume)."""
    steps: int = 1000
    """Total optimisation steps."""
    lr: float = 1e-4
    """Peak learning rate (per-group multipliers via ``param_groups``)."""
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    """Linear learning-rate warm-up length (``one_cycle``: the length of its rising phase)."""
    lr_schedule: Literal["constant", "one_cycle"] = "constant"
    """constant: lr after the linear warm-up. one_cycle: torch's ``OneCycleLR`` with its defaults (Smith & Topin
    2018): cosine rise from lr/25 over warmup_steps, cosine fall to lr/2.5e5 at the last step, AdamW's beta1 cycled
    0.95 -> 0.85 -> 0.95 against it (betas[0] is then unused)."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value (None: no clipping)."""
    ema_decay: float | None = None
    """Keep an EMA of the weights with this decay (None: no EMA)."""
    ckpt_every: int = 500
    """Write a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep (at least 2, so a damaged newest one has a fallback)."""
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    resume: bool = False
    """Continue from the newest intact checkpoint in out_dir/checkpoints (with the settings it was trained with)."""
    progress: bool = True
    desc: str = "train"
    extra: dict = field(default_factory=dict)
    """Anything the caller wants recorded in config.json (model config, data description); checked on resume."""


RESUME_MAY_CHANGE = frozenset(
    {"out_dir", "steps", "ckpt_every", "keep_checkpoints", "log_every", "device", "resume", "progress", "desc"}
)
"""TrainConfig fields a resumed run may set differently (see :class:`TrainConfig`); ``steps`` inside ``extra`` too."""


@dataclass
class TrainResult:
    step: int
    last_loss: float
    checkpoint: Path | None  # None for an in-memory run (out_dir=None)
    wall_s: float  # training time summed over every segment of a resumed run
    resumed_from: int
    ema: EMA | None


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator of (seed, step, process): independent streams, reproducible across resumes."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _lr_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def one_cycle(base_lr: float, step: int, steps: int, warmup: int) -> tuple[float, float]:
    """(lr, AdamW beta1) of 0-based ``step`` under the one-cycle policy (Smith & Topin 2018, "Super-Convergence",
    arXiv 1708.07120), computed as ``torch.optim.lr_scheduler.OneCycleLR`` does with its defaults (cosine annealing,
    div_factor 25, final_div_factor 1e4, momentum 0.95 -> 0.85 -> 0.95) and ``pct_start = warmup / steps``."""
    peak, low = base_lr, base_lr / 25.0
    if step <= warmup - 1:
        pct = step / max(warmup - 1, 1)
        return _anneal_cos(low, peak, pct), _anneal_cos(0.95, 0.85, pct)
    pct = (step - (warmup - 1)) / max(steps - warmup, 1)
    return _anneal_cos(peak, low / 1e4, pct), _anneal_cos(0.85, 0.95, pct)


def _set_schedule(opt, base_lrs: list[float], step: int, cfg: TrainConfig) -> None:
    """Learning rate (and, for one_cycle, beta1) of every parameter group at ``step``."""
    for g, base in zip(opt.param_groups, base_lrs):
        if cfg.lr_schedule == "one_cycle":
            g["lr"], beta1 = one_cycle(base, step, cfg.steps, cfg.warmup_steps)
            g["betas"] = (beta1, g["betas"][1])
        else:
            g["lr"] = base * _lr_factor(step, cfg.warmup_steps)


def _read_log(path: Path, upto: int) -> list[str]:
    if not path.is_file():
        return []
    return [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= upto]


def _grad_norm(acc, wrapped: nn.Module, clip: float | None) -> Tensor:
    """The global L2 norm of the gradients, which are clipped to ``clip`` (None or 0: left as they are; then, on
    one process without a grad scaler, only measured, which is cheaper than clipping by a factor of 1)."""
    if not clip and acc.scaler is None and acc.num_processes == 1:
        norms = [torch.linalg.vector_norm(p.grad) for p in wrapped.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
    return acc.clip_grad_norm_(wrapped.parameters(), clip if clip else math.inf)


# ------------------------------------------------------------------------------------------------- resume
def run_config(cfg: TrainConfig, num_processes: int) -> dict:
    """``cfg`` as JSON values (what config.json and every checkpoint record, and what a resume is compared with)."""
    return json.loads(json.dumps({**asdict(cfg), "num_processes": num_processes}, default=str))


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def _may_change(key: str, now: dict) -> bool:
    if key == "steps" and now.get("lr_schedule") == "one_cycle":  # every step's lr depends on the length
        return False
    return key in RESUME_MAY_CHANGE or (key.startswith("extra.") and key.endswith(".steps"))


def _defaults() -> dict[str, Any]:
    """The JSON values of the TrainConfig fields that have a plain default."""
    return json.loads(json.dumps({f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}))


def changed_settings(saved: dict, now: dict) -> list[str]:
    """``"name old -> new"`` for each setting of ``now`` (a :func:`run_config`) that a resume may not change (a
    field missing from ``saved``, i.e. added to TrainConfig after that run started, counts as its default)."""
    a, b, unset = {**_defaults(), **_flat(saved)}, _flat(now), "(unset)"
    keys = [*b, *(k for k in a if k not in b)]
    return [f"{k.removeprefix('extra.')} {a.get(k, unset)} -> {b.get(k, unset)}"
            for k in keys if not _may_change(k, b) and a.get(k, unset) != b.get(k, unset)]  # fmt: skip


def _newest_intact(root: Path, is_main: bool) -> tuple[dict | None, Path | None]:
    """Load the newest checkpoint that reads back intact. Damaged newer ones are renamed ``.unusable-step_*`` (so
    they are neither resumed from nor counted as kept) with one warning line; none intact: a UserError."""
    found, bad = list_checkpoints(root), []
    for path in reversed(found):
        try:
            ck = load_checkpoint(path)
        except CheckpointError as e:
            bad.append(f"{path.name} ({e})")
            continue
        if bad and is_main:
            for p in found[found.index(path) + 1 :]:
                aside = p.with_name(f".unusable-{p.name}")
                if aside.exists():
                    shutil.rmtree(aside)
                p.rename(aside)
            print(f"latent3d: warning: checkpoint {'; '.join(bad)} is unusable, set aside as .unusable-*; "
                  f"resuming from {path.name}", file=sys.stderr)  # fmt: skip
        return ck, path
    if bad:
        raise UserError(f"no intact checkpoint in {root} to resume from: {'; '.join(bad)}; choose a new --out")
    return None, None


def _refuse_changes(saved: dict | None, now: dict, path: Path) -> None:
    if saved is None:  # checkpoints of older versions store no config: compare with the run's config.json
        config_json = path.parent.parent / "config.json"
        saved = json.loads(config_json.read_text()) if config_json.is_file() else None
    diff = changed_settings(saved, now) if isinstance(saved, dict) else []
    if diff:
        raise UserError(f"--resume: {path} was trained with other settings ({'; '.join(diff)}): resume with that "
                        "run's settings (--steps, --device and --checkpoint-every may change) or choose a new --out")


def process_state(device: str = "auto") -> Any:
    """accelerate's ``PartialState`` of this process (rank, process count, ``is_main_process``: under
    ``accelerate launch`` only the main process writes files). It is one per process and its first use fixes its
    device, so it is made for the device the trainer's ``Accelerator`` will use."""
    from accelerate import PartialState

    return PartialState(cpu=resolve_device(device).type == "cpu")


def preflight(cfg: TrainConfig) -> None:
    """The checks of :func:`train` that need neither model nor data (settings in range, checkpoints in ``out_dir``
    only with ``resume``, a resume with the run's settings). Callers run it before they render data or build a model,
    so that a mistake is one line at once and nothing under ``out_dir`` is touched."""
    for name, v, lo in (("checkpoint-every", cfg.ckpt_every, 1), ("log-every", cfg.log_every, 1),
                        ("keep-checkpoints", cfg.keep_checkpoints, 2)):  # fmt: skip
        if v < lo:
            raise UserError(f"--{name} must be >= {lo}, got {v}")
    if cfg.out_dir is None:
        if cfg.resume:
            raise UserError("resume needs a run folder (out_dir), an in-memory run keeps no checkpoints")
        return
    found = list_checkpoints(Path(cfg.out_dir) / "checkpoints")
    if found and not cfg.resume:
        raise UserError(f"{cfg.out_dir} already holds checkpoints: pass --resume to continue that run, or choose a "
                        "new --out")  # fmt: skip
    for path in reversed(found if cfg.resume else []):
        try:
            saved = json.loads((path / "trainer_state.json").read_text()).get("config")
        except (OSError, ValueError, AttributeError):
            continue  # damaged: train() falls back past it
        _refuse_changes(saved, run_config(cfg, process_state(cfg.device).num_processes), path)
        return


def _restore(ck: dict, path: Path, run_cfg: dict, model: nn.Module, opt, ema, scaler) -> None:
    """Refuse a resume with other settings, then load every piece of training state of checkpoint ``ck``."""
    _refuse_changes(ck["extra"].get("config"), run_cfg, path)
    try:
        model.load_state_dict(ck["model"])
        if ck["optimizer"] is not None:
            opt.load_state_dict(ck["optimizer"])
        if ema is not None and ck["ema"] is not None:
            ema.load_state_dict(ck["ema"], ck["extra"].get("ema_updates", ck["step"]))
        if scaler is not None and ck["extra"].get("grad_scaler"):
            scaler.load_state_dict(ck["extra"]["grad_scaler"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"--resume: {path} does not fit this model ({str(e).strip().splitlines()[0]}); "
                        "choose a new --out") from e  # fmt: skip


# -------------------------------------------------------------------------------------------------- train
def train(
    model: nn.Module,
    batch_fn: BatchFn,
    loss_fn: LossFn,
    cfg: TrainConfig,
    param_groups: list[dict] | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place and return where the final checkpoint is.

    ``param_groups`` (optional) are AdamW groups: dicts with ``params`` and an optional ``lr_scale``.
    ``loss_fn`` receives the (possibly DDP-wrapped) model: call it, do not reach into its attributes.
    ``on_log`` (optional) is called on the main process with every row of the metrics log (``step``, ``loss``,
    ``lr``, ``grad_norm``, ``wall_s`` and the loss_fn's other metrics), also when ``out_dir`` is None.
    """
    from accelerate import Accelerator

    preflight(cfg)
    dev = resolve_device(cfg.device)
    acc = Accelerator(cpu=dev.type == "cpu", mixed_precision=cfg.mixed_precision)
    out = Path(cfg.out_dir) if cfg.out_dir is not None else None  # None: in memory (preflight refused a resume)
    ckpt_root, log_path = (out / "checkpoints", out / "metrics.jsonl") if out is not None else (None, None)

    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [{**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": cfg.lr * g.get("lr_scale", 1.0)} for g in groups]
    base_lrs = [g["lr"] for g in groups]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    run_cfg = run_config(cfg, acc.num_processes)

    ck, last = _newest_intact(ckpt_root, acc.is_main_process) if cfg.resume else (None, None)
    if ck is not None:
        _restore(ck, last, run_cfg, model, opt, ema, acc.scaler)
    elif cfg.resume and acc.is_main_process:
        print(f"latent3d: no checkpoint in {ckpt_root}, starting from step 0")
    start, state = (ck["step"], ck["extra"]) if ck is not None else (0, {})
    if start > cfg.steps:
        raise UserError(f"checkpoint {last} is at step {start} > --steps {cfg.steps}: raise --steps to continue")
    if start == cfg.steps:  # a finished run: nothing to train, hand back its weights (e.g. to export them again)
        rows = _read_log(log_path, start)
        loss = json.loads(rows[-1])["loss"] if rows else float("nan")
        return TrainResult(start, loss, last, state.get("wall_s", 0.0), start, ema)

    wrapped, opt = acc.prepare(model, opt)
    if acc.is_main_process and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.json", json.dumps(run_cfg, indent=1))
        write_text(log_path, "".join(ln + "\n" for ln in _read_log(log_path, start)))  # drop steps past the resume
    return _fit(acc, wrapped, opt, ema, batch_fn, loss_fn, cfg, run_cfg, base_lrs, start, state, last, on_log)


def _fit(acc, wrapped, opt, ema, batch_fn, loss_fn, cfg, run_cfg, base_lrs, start, state, last, on_log) -> TrainResult:
    """The loop of :func:`train` from step ``start`` (``state``: the ``extra`` of the checkpoint resumed from)."""
    from tqdm.auto import tqdm

    raw = acc.unwrap_model(wrapped)
    out = Path(cfg.out_dir) if cfg.out_dir is not None else None
    ckpt_root, log_path = (out / "checkpoints", out / "metrics.jsonl") if out is not None else (None, None)
    wall_before = state.get("wall_s", 0.0)
    window: list[dict[str, float]] = state.get("log_window", [])  # steps since the last logged row

    def checkpoint(step: int) -> Path | None:
        if ckpt_root is None:  # an in-memory run
            return None
        if acc.is_main_process:
            extra = {"ema_updates": ema.num_updates if ema else 0, "wall_s": wall_before + time.time() - t0,
                     "log_window": window, "config": run_cfg,
                     "grad_scaler": acc.scaler.state_dict() if acc.scaler is not None else None}  # fmt: skip
            save_checkpoint(ckpt_root, step, raw.state_dict(), opt.state_dict(), ema and ema.state_dict(),
                            extra, cfg.keep_checkpoints)  # fmt: skip
        acc.wait_for_everyone()
        return ckpt_root / f"step_{step:08d}"

    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start, desc=cfg.desc, disable=not (cfg.progress and acc.is_main_process),
               dynamic_ncols=True)  # fmt: skip
    last_loss, completed, last_ckpt = float("nan"), start, last
    try:
        for step in range(start, cfg.steps):
            _set_schedule(opt, base_lrs, step, cfg)
            gen = step_generator(cfg.seed, step, acc.process_index)
            batch = batch_fn(step, gen)
            with acc.autocast():
                res = loss_fn(wrapped, batch, gen)
            metrics = res if isinstance(res, dict) else {"loss": res}
            loss = metrics["loss"]
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            gnorm = _grad_norm(acc, wrapped, cfg.grad_clip)
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
                        "wall_s": round(wall_before + time.time() - t0, 3)}  # fmt: skip
                bar.set_postfix(loss=f"{row['loss']:.4g}")
                if acc.is_main_process and log_path is not None:
                    with log_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                if acc.is_main_process and on_log is not None:
                    on_log(row)
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
