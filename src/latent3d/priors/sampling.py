"""Drawing images from any prior with DDIM + classifier-free guidance (Song et al. 2021; Ho & Salimans 2022)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from latent3d.diffusion.ddim import ddim_sample, ddim_timesteps
from latent3d.diffusion.guidance import CFGModel

if TYPE_CHECKING:
    from latent3d.priors.base import DiffusionPrior

def resolve_guidance(prior: DiffusionPrior, guidance: float | None) -> float:
    """``guidance``, else the prior's own recommendation (``_latent3d_defaults``), else Stable Diffusion's 7.5."""
    return guidance if guidance is not None else prior.defaults.get("guidance_scale", 7.5)


@torch.no_grad()
def sample_images(
    prior: DiffusionPrior,
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
