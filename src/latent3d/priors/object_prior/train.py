"""Training the object prior: the DDPM objective (Ho et al. 2020, eq. 14) with the v target (Salimans & Ho 2022,
Sec. 4; eps-prediction is an option) and 10% caption dropout for classifier-free guidance (Ho & Salimans 2022,
Sec. 3.2), run by the shared trainer, then exported as a diffusers-layout folder. A small pixel-space eps model
learns the clean image poorly at high noise, where v weights it fully; that is where an image's colours are decided.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from latent3d.nets.text_denoiser import TextConditionedDenoiser
from latent3d.priors.object_prior.card import model_card
from latent3d.priors.object_prior.config import PRIOR_DEFAULTS, ObjectPriorConfig
from latent3d.priors.object_prior.data import cached_training_set
from latent3d.priors.object_prior.nets import build_components, load_init
from latent3d.runtime import resolve_device


def export_prior(folder: Path, unet, text_encoder, tokenizer, scheduler, card: str) -> Path:
    """Write the diffusers-layout folder (float16 safetensors, configs, tokenizer, model card) atomically."""
    from latent3d.io.atomic import atomic_dir

    with atomic_dir(folder) as tmp:
        unet.to(torch.float16).save_pretrained(tmp / "unet")
        text_encoder.to(torch.float16).save_pretrained(tmp / "text_encoder")
        unet.float(), text_encoder.float()
        tokenizer.save_pretrained(tmp / "tokenizer")
        scheduler.save_pretrained(tmp / "scheduler")
        index = {
            "_class_name": "Latent3DObjectPrior", "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "scheduler": ["diffusers", "DDIMScheduler"],
            "_latent3d_defaults": PRIOR_DEFAULTS,
        }  # fmt: skip
        (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
        (tmp / "MODEL_CARD.md").write_text(card)
    return Path(folder)


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
    from latent3d.diffusion.schedules import alphas_cumprod
    from latent3d.priors.vocab import words_of
    from latent3d.train.trainer import TrainConfig, preflight, train

    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                       ema_decay=cfg.ema_decay, ckpt_every=checkpoint_every, seed=cfg.seed, device=device,
                       resume=resume, progress=progress, desc="train prior", extra={"prior": asdict(cfg)})  # fmt: skip
    preflight(tcfg)  # a refused resume neither renders nor touches out_dir
    torch.manual_seed(cfg.seed)
    images, caps, render_s = cached_training_set(Path(out_dir), cfg)
    unet, text, tok, sched = build_components(cfg, words_of(caps))
    if cfg.init:
        load_init(Path(cfg.init), unet, text, tok)
    ids = tok(caps, padding="max_length", max_length=cfg.max_tokens, truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=cfg.max_tokens, return_tensors="pt").input_ids
    data = images.mul(2).sub(1)  # [N, 3, R, R] in [-1, 1]
    abar = alphas_cumprod(cfg.beta_schedule).float()
    model = TextConditionedDenoiser(unet, text)
    if cfg.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {cfg.prediction_type!r}")
    v_pred = cfg.prediction_type == "v_prediction"

    def batch_fn(step: int, g: torch.Generator):
        i = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.cond_drop
        x0 = data[i]
        t = torch.randint(0, len(abar), (cfg.batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        return x0, torch.where(drop[:, None], empty, ids[i]), t, eps

    def loss_fn(m, batch, g):
        x0, input_ids, t, eps = (b.to(next(iter(m.parameters())).device) for b in batch)
        a = abar.to(x0.device)[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps  # DDPM eq. 4
        target = eps if not v_pred else a.sqrt() * eps - (1 - a).sqrt() * x0  # DDPM eq. 14 / v (Salimans & Ho)
        return (m(x_t, t, input_ids) - target).pow(2).mean()

    res = train(model, batch_fn, loss_fn, tcfg)
    res.ema.copy_to(model)
    n_params = sum(p.numel() for p in model.parameters())
    dev = resolve_device(device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    card = model_card(cfg, len(data), render_s, res.wall_s, res.last_loss, n_params, where, Path(out_dir))
    return export_prior(Path(out_dir) / "model", unet.cpu(), text.cpu(), tok, sched, card)
