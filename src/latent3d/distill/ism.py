"""Interval Score Matching (LucidDreamer, Liang et al. 2023, Sec. 3.2-3.3, eq. 12-14; official defaults).

Instead of SDS's one-step noising, ISM reaches ``x_s`` by DDIM inversion of the render with the empty prompt
(``0 -> ... -> s`` in strides of ``xs_delta_t``, at most ``xs_inv_steps``), takes one more inversion step to
``x_t`` (``t = s + delta_t``), and matches the guided score at ``x_t`` to the unconditional score at ``x_s``:

``grad = w(t) (eps_cfg(x_t, t, y) - eps(x_s, s, empty))``,  ``w(t) = sqrt((1 - a_t) / a_t)``.

``t ~ U[t_min, t_max + (t_max_start - t_max) r]`` and ``delta_t = delta_t_end + (delta_t_start - delta_t_end) r``
with the warm-up rate ``r`` going from 1 to 0 over ``warmup_iters`` (both intervals shrink as training settles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from latent3d.diffusion.ddim import ddim_invert, ism_inversion_schedule
from latent3d.diffusion.guidance import cfg
from latent3d.distill.common import draw_noise, noise_latents

if TYPE_CHECKING:
    from latent3d.priors.base import DiffusionPrior

@dataclass
class ISMSettings:
    """LucidDreamer's ``GuidanceParams`` defaults (timesteps are indices into the training schedule)."""

    guidance_scale: float = 7.5
    delta_t: int = 80
    """Interval length after the warm-up."""
    delta_t_start: int = 100
    """Interval length at the start of the warm-up."""
    xs_delta_t: int = 200
    xs_inv_steps: int = 5
    xs_eta: float = 0.0
    denoise_guidance_scale: float = 1.0
    """> 1 uses LucidDreamer's reverse CFG ``cond + w (uncond - cond)`` inside the inversion."""
    t_min: int = 20
    t_max: int = 500
    t_max_start: int = 980
    warmup_iters: int = 1500
    offset_noise: float = 0.1


def ism_timestep(
    s: ISMSettings,
    iteration: int,
    generator: torch.Generator | None = None,
) -> tuple[int, int]:  # (t index, delta_t)
    """Timestep index and interval of one ISM iteration under the warm-up schedule (official ``train_step``)."""
    rate = max(0.0, 1.0 - iteration / s.warmup_iters) if s.warmup_iters > 0 else 0.0
    delta_t = int(s.delta_t + rate * (s.delta_t_start - s.delta_t))
    hi = s.t_max + int((s.t_max_start - s.t_max) * rate)
    t = int(torch.randint(s.t_min, hi, (1,), generator=generator))
    return t, delta_t


@torch.no_grad()
def ism_grad(
    prior: DiffusionPrior,
    latents: Tensor,  # [B, C, h, w]
    cond: Tensor,  # [B or 1, L, D] prompt embedding
    uncond: Tensor,  # [B or 1, L, D] empty-prompt embedding
    t_index: int,
    delta_t: int,
    s: ISMSettings,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict]:  # grad [B, C, h, w], info {"t", "s", "schedule", ...}
    """The ISM gradient w.r.t. the latents (LucidDreamer eq. 12-14): DDIM inversion with the shared core."""
    z = latents.detach().to(prior.compute_dtype)
    b = z.shape[0]
    cond, uncond = cond.expand(b, *cond.shape[1:]), uncond.expand(b, *uncond.shape[1:])
    offset = int(prior.scheduler_config.get("steps_offset", 0))
    set_one = bool(prior.scheduler_config.get("set_alpha_to_one", True))
    sched = ism_inversion_schedule(t_index + offset, delta_t, s.xs_delta_t, s.xs_inv_steps, offset)
    abar = prior.alphas_cumprod
    noise = draw_noise(z.shape, s.offset_noise, generator, z.device, z.dtype)
    x_start = noise_latents(z, noise, abar[sched[0]])

    def inv_model(x: Tensor, tt: Tensor) -> Tensor:
        if s.denoise_guidance_scale > 1.0:
            return cfg(prior.predict_eps(x, tt, cond), prior.predict_eps(x, tt, uncond), s.denoise_guidance_scale)
        return prior.predict_eps(x, tt, uncond)

    inv = ddim_invert(inv_model, x_start, sched, abar, eta=s.xs_eta, generator=generator, disable=True,
                      set_alpha_to_one=set_one, model_t="current", return_trajectory=True)  # fmt: skip
    x_t, target = inv.x, inv.model_outputs[-1]  # target = eps(x_s, s, empty)
    t = sched[-1]
    eps = prior.predict_eps_cfg(x_t, torch.tensor(t), cond, uncond, s.guidance_scale)
    a_t = abar[t]
    w = ((1 - a_t) / a_t).sqrt()
    grad = torch.nan_to_num(w * (eps - target))
    return grad, {"t": t, "s": sched[-2], "schedule": sched, "w": float(w)}
