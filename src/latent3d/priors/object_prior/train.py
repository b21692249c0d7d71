"""Training the object prior: the DDPM objective (Ho et al. 2020, eq. 14) with the v target (Salimans & Ho 2022,
Sec. 4; eps-prediction is an option) and 10% caption dropout for classifier-free guidance (Ho & Salimans 2022,
Sec. 3.2), by the shared recipe (:mod:`latent3d.train.diffusion_recipe`), then exported as a diffusers-layout folder. A small pixel-space eps model
learns the clean image poorly at high noise, where v weights it fully; that is where an image's colours are decided.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from latent3d.nets.text_denoiser import TextConditionedDenoiser
from latent3d.priors.bundle import export_bundle
from latent3d.priors.object_prior.card import model_card
from latent3d.priors.object_prior.config import PRIOR_DEFAULTS, ObjectPriorConfig
from latent3d.ranges import choices
from latent3d.priors.object_prior.data import cached_training_set
from latent3d.priors.object_prior.nets import build_components, load_init
from latent3d.runtime import device_name, seeded


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
    from latent3d.diffusion.ddpm import DDPMLoss
    from latent3d.diffusion.schedules import alphas_cumprod
    from latent3d.priors.vocab import words_of
    from latent3d.train.diffusion_recipe import Captions, fit_diffusion
    from latent3d.train.trainer import TrainConfig, preflight, process_state

    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                       ema_decay=cfg.ema_decay, ckpt_every=checkpoint_every, seed=cfg.seed, device=device,
                       resume=resume, progress=progress, desc="train prior", extra={"prior": asdict(cfg)})  # fmt: skip
    preflight(tcfg)  # a refused resume neither renders nor touches out_dir
    with seeded(cfg.seed):  # diffusers builds from the global RNG: seed it, restore the caller's
        images, caps, render_s = cached_training_set(Path(out_dir), cfg)
        unet, text, tok, sched = build_components(cfg, words_of(caps))
    if cfg.init:
        load_init(Path(cfg.init), unet, text, tok)
    if cfg.prediction_type not in choices(ObjectPriorConfig, "prediction_type"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {cfg.prediction_type!r}")
    data = images.mul(2).sub(1)  # [N, 3, R, R] in [-1, 1]
    model = TextConditionedDenoiser(unet, text)
    loss = DDPMLoss(alphas_cumprod(cfg.beta_schedule).float(), cfg.prediction_type)
    captions = Captions.tokenized(tok, caps, cfg.max_tokens)
    res = fit_diffusion(model, len(data), lambda i, g: data[i], loss, tcfg, cfg.batch_size, captions, cfg.cond_drop)
    n_params = sum(p.numel() for p in model.parameters())
    card = model_card(cfg, len(data), render_s, res.wall_s, res.last_loss, n_params, device_name(device),
                      Path(out_dir))  # fmt: skip
    components = {"unet": unet.cpu(), "text_encoder": text.cpu(), "tokenizer": tok, "scheduler": sched}
    if not process_state(device).is_main_process:  # under `accelerate launch` only the main process exports
        return Path(out_dir) / "model"
    return export_bundle(Path(out_dir) / "model", components, "Latent3DObjectPrior", PRIOR_DEFAULTS, card)
