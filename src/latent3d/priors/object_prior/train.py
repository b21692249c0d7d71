"""Training the object prior: the DDPM objective (Ho et al. 2020, eq. 14) with the v target (Salimans & Ho 2022,
Sec. 4; eps-prediction is an option) and 10% caption dropout for classifier-free guidance (Ho & Salimans 2022,
Sec. 3.2), run by the shared trainer, then exported as a diffusers-layout folder. A small pixel-space eps model
learns the clean image poorly at high noise, where v weights it fully; that is where an image's colours are decided.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from latent3d.nets.text_denoiser import TextConditionedDenoiser
from latent3d.priors.bundle import export_bundle
from latent3d.priors.object_prior.card import model_card
from latent3d.priors.object_prior.config import PRIOR_DEFAULTS, ObjectPriorConfig
from latent3d.ranges import choices
from latent3d.priors.object_prior.data import cached_training_set
from latent3d.priors.object_prior.nets import build_components, load_init
from latent3d.runtime import resolve_device, seeded


def train_object_prior(
    out_dir: Path,
    cfg: ObjectPriorConfig,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int = 500,
) -> Path:
    """Render the training set, train with the shared trainer (a checkpoint every ``checkpoint_every`` steps),
    export ``out_dir/model`` (EMA weights)."""
    from latent3d.diffusion.ddpm import ddpm_loss
    from latent3d.diffusion.schedules import alphas_cumprod
    from latent3d.priors.vocab import words_of
    from latent3d.train.trainer import TrainConfig, preflight, process_state, train

    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                       ema_decay=cfg.ema_decay, ckpt_every=checkpoint_every, seed=cfg.seed, device=device,
                       resume=resume, progress=progress, desc="train prior", extra={"prior": asdict(cfg)})  # fmt: skip
    preflight(tcfg)  # a refused resume neither renders nor touches out_dir
    with seeded(cfg.seed):  # diffusers builds from the global RNG: seed it, restore the caller's
        images, caps, render_s = cached_training_set(Path(out_dir), cfg)
        unet, text, tok, sched = build_components(cfg, words_of(caps))
    if cfg.init:
        load_init(Path(cfg.init), unet, text, tok)
    ids = tok(caps, padding="max_length", max_length=cfg.max_tokens, truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=cfg.max_tokens, return_tensors="pt").input_ids
    data = images.mul(2).sub(1)  # [N, 3, R, R] in [-1, 1]
    abar = alphas_cumprod(cfg.beta_schedule).float()
    model = TextConditionedDenoiser(unet, text)
    if cfg.prediction_type not in choices(ObjectPriorConfig, "prediction_type"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {cfg.prediction_type!r}")

    def batch_fn(step: int, g: torch.Generator):
        i = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.cond_drop
        x0 = data[i]
        t = torch.randint(0, len(abar), (cfg.batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        return x0, torch.where(drop[:, None], empty, ids[i]), t, eps

    def loss_fn(m, batch, g):
        x0, input_ids, t, eps = (b.to(next(iter(m.parameters())).device) for b in batch)
        return ddpm_loss(m, x0, t, eps, abar, input_ids, prediction_type=cfg.prediction_type)

    res = train(model, batch_fn, loss_fn, tcfg)
    res.ema.copy_to(model)
    n_params = sum(p.numel() for p in model.parameters())
    dev = resolve_device(device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    card = model_card(cfg, len(data), render_s, res.wall_s, res.last_loss, n_params, where, Path(out_dir))
    components = {"unet": unet.cpu(), "text_encoder": text.cpu(), "tokenizer": tok, "scheduler": sched}
    if not process_state(device).is_main_process:  # under `accelerate launch` only the main process exports
        return Path(out_dir) / "model"
    return export_bundle(Path(out_dir) / "model", components, "Latent3DObjectPrior", PRIOR_DEFAULTS, card)
