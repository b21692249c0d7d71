"""Drawing images from any prior with DDIM + classifier-free guidance (Song et al. 2021; Ho & Salimans 2022)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from latent3d.diffusion.ddim import ddim_sample, ddim_timesteps
from latent3d.diffusion.guidance import CFGModel


def resolve_guidance(prior, guidance: float | None) -> float:
    """``guidance``, else the prior's own recommendation (``_latent3d_defaults``), else Stable Diffusion's 7.5."""
    return guidance if guidance is not None else getattr(prior, "defaults", {}).get("guidance_scale", 7.5)


@torch.no_grad()
def sample_images(
    prior,
    prompts: Sequence[str],
    num_steps: int = 50,
    guidance: float | None = None,
    negative_prompt: str = "",
    height: int | None = None,
    width: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    latents: Tensor | None = None,  # [B, C, h, w] initial noise (drawn from `generator` on CPU if None)
    disable_progress: bool | None = None,
) -> Tensor:  # [B, 3, H, W] in [0, 1]
    """Text-to-image sampling with the scheduler settings of the prior's own ``scheduler_config`` (timestep
    spacing, steps offset, ``set_alpha_to_one``, ``clip_sample``), so that a Stable Diffusion folder gives what diffusers'
    ``StableDiffusionPipeline`` with a ``DDIMScheduler`` gives for the same initial latents."""
    guidance = resolve_guidance(prior, guidance)
    h = (height or prior.resolution) // prior.downsample
    w = (width or prior.resolution) // prior.downsample
    if latents is None:
        latents = torch.randn(len(prompts), prior.latent_channels, h, w, generator=generator)
    latents = latents.to(prior.device, prior.compute_dtype)
    cond = prior.encode_text(list(prompts))
    uncond = prior.encode_text([negative_prompt] * len(prompts))
    sc = prior.scheduler_config
    ts = ddim_timesteps(num_steps, prior.num_train_timesteps, sc.get("timestep_spacing", "leading"),
                        sc.get("steps_offset", 0))  # fmt: skip
    model = CFGModel(lambda x, t, encoder_hidden_states: prior.predict_eps(x, t, encoder_hidden_states),
                     cond, uncond, guidance)  # fmt: skip
    x0 = ddim_sample(model, latents, ts, prior.alphas_cumprod, eta=eta, generator=generator,
                     disable=disable_progress, set_alpha_to_one=sc.get("set_alpha_to_one", True),
                     clip_sample=sc.get("clip_sample_range", 1.0) if sc.get("clip_sample", False) else None)  # fmt: skip
    return prior.decode_latents(x0)


def sample_command(prompt: str, out, prior_spec, n: int, steps: int, guidance: float | None, negative: str,
                   size: int | None, seed: int, device: str) -> dict:
    """``latent3d sample``: draw ``n`` images, write ``sample_XX.png``, ``grid.png`` and ``run.json``."""
    import json
    import time
    from pathlib import Path

    from latent3d.errors import UserError
    from latent3d.io.atomic import write_text
    from latent3d.io.image import make_grid, save_image
    from latent3d.priors.loading import load_prior
    from latent3d.runtime import resolve_device, seed_everything

    if n < 1 or steps < 1:
        raise UserError(f"--n and --steps must be >= 1 (got {n}, {steps})")
    if size is not None:
        from latent3d.priors.memory import check_size_fits

        if size < 1:
            raise UserError(f"--size must be >= 1 pixel, got {size}")
        check_size_fits(prior_spec, size, size, batch=n)
    t0 = time.time()
    dev = resolve_device(device)
    gen = seed_everything(seed)
    prior = load_prior(prior_spec, dev)
    if size is not None and size % (8 * prior.downsample):
        raise UserError(f"--size {size} must be a multiple of {8 * prior.downsample} for this prior")
    t_load = time.time() - t0
    guidance = resolve_guidance(prior, guidance)
    images = sample_images(prior, [prompt] * n, steps, guidance, negative, size, size, generator=gen)
    out = Path(out)
    for i, img in enumerate(images):
        save_image(out / f"sample_{i:02d}.png", img)
    save_image(out / "grid.png", make_grid(list(images), ncols=min(n, 8)))
    run = {"prompt": prompt, "prior": str(prior_spec or "object-prior"), "n": n, "steps": steps,
           "guidance": guidance, "negative": negative, "size": list(images.shape[-2:]), "seed": seed,
           "device": str(dev), "load_s": round(t_load, 3), "total_s": round(time.time() - t0, 3)}  # fmt: skip
    write_text(out / "run.json", json.dumps(run, indent=1))
    return run
