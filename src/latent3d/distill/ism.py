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

from latent3d.diffusion.ddim import ddim_invert, ddim_step, ism_inversion_schedule
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
    """Noise of the inversion ``0 -> ... -> s`` as LucidDreamer's ``ddim_step``: ``sigma^2 = min((1 - a_n) / 2,
    xs_eta |var|)``; the last step ``s -> t`` is always deterministic, as in the official code."""
    denoise_guidance_scale: float = 1.0
    """> 1 runs LucidDreamer's reverse CFG inside the inversion: ``eps(inverse) + w (eps(negative) - eps(inverse))``,
    pushing the inversion away from the negative prompt."""
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
    uncond: Tensor,  # [B or 1, L, D] negative-prompt embedding (the empty prompt when there is none)
    t_index: int,
    delta_t: int,
    s: ISMSettings,
    generator: torch.Generator | None = None,
    inverse: Tensor | None = None,  # [B or 1, L, D] inversion prompt (official `inverse_text`, ""); None: `uncond`
) -> tuple[Tensor, dict]:  # grad [B, C, h, w], info {"t", "s", "schedule", ...}
    """The ISM gradient w.r.t. the latents (LucidDreamer eq. 12-14; official ``train_step`` +
    ``add_noise_with_cfg``): DDIM inversion with the shared core.

    The guided score at ``x_t`` uses the negative prompt as its unconditional branch,
    ``eps(negative) + w (eps(y) - eps(negative))``; the inversion and the target ``eps(x_s, s)`` use the
    ``inverse`` prompt (reverse-guided towards the negative one when ``denoise_guidance_scale > 1``)."""
    z = latents.detach().to(prior.compute_dtype)
    b = z.shape[0]
    inverse = uncond if inverse is None else inverse
    cond, uncond, inverse = (e.expand(b, *e.shape[1:]) for e in (cond, uncond, inverse))
    offset = int(prior.scheduler_config.get("steps_offset", 0))
    set_one = bool(prior.scheduler_config.get("set_alpha_to_one", True))
    sched = ism_inversion_schedule(t_index + offset, delta_t, s.xs_delta_t, s.xs_inv_steps, offset)
    abar = prior.alphas_cumprod
    noise = draw_noise(z.shape, s.offset_noise, generator, z.device, z.dtype)
    x_start = noise_latents(z, noise, abar[sched[0]])

    def inv_model(x: Tensor, tt: Tensor) -> Tensor:
        if s.denoise_guidance_scale > 1.0:  # official: chunk -> (uncond = eps(negative), cond = eps(inverse))
            return cfg(prior.predict_eps(x, tt, inverse), prior.predict_eps(x, tt, uncond), s.denoise_guidance_scale)
        return prior.predict_eps(x, tt, inverse)

    # start -> ... -> s (noisy for xs_eta > 0), then one deterministic step s -> t whose model output is the target
    x_s = ddim_invert(inv_model, x_start, sched[:-1], abar, eta=s.xs_eta, generator=generator, disable=True,
                      set_alpha_to_one=set_one, model_t="current", sigma_rule="ism")  # fmt: skip
    step_s, t = sched[-2], sched[-1]
    target = inv_model(x_s, torch.full((b,), step_s, dtype=torch.long, device=z.device))  # eps(x_s, s, inverse)
    x_t = ddim_step(x_s, target, abar, step_s, t, set_alpha_to_one=set_one)
    eps = prior.predict_eps_cfg(x_t, torch.tensor(t), cond, uncond, s.guidance_scale)
    a_t = abar[t]
    w = ((1 - a_t) / a_t).sqrt()
    grad = torch.nan_to_num(w * (eps - target))
    return grad, {"t": t, "s": step_s, "schedule": sched, "w": float(w)}
