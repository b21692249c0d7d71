"""Score Distillation Sampling (DreamFusion, Poole et al. 2022, eq. 3), the baseline ISM improves on.

``grad = w(t) (eps_cfg(x_t, t, y) - eps)`` with ``x_t = sqrt(a_t) z + sqrt(1 - a_t) eps``, ``t ~ U[0.02 T, 0.98 T]``
and ``w(t) = 1 - a_t`` (the threestudio convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from latent3d.distill.common import draw_noise, noise_latents

if TYPE_CHECKING:
    from latent3d.priors.base import DiffusionPrior

@dataclass
class SDSSettings:
    guidance_scale: float = 100.0
    """DreamFusion uses a large CFG weight (100); lower it for small priors."""
    t_min: float = 0.02
    t_max: float = 0.98
    weighting: str = "sds"
    """"sds": w = 1 - a_t; "uniform": w = 1."""
    offset_noise: float = 0.0


def sds_timestep(s: SDSSettings, num_train_timesteps: int, generator: torch.Generator | None = None) -> int:
    """``t ~ U{int(t_min T), ..., int(t_max T)}``."""
    lo, hi = int(s.t_min * num_train_timesteps), int(s.t_max * num_train_timesteps)
    return int(torch.randint(lo, hi + 1, (1,), generator=generator))


@torch.no_grad()
def sds_grad(
    prior: DiffusionPrior,
    latents: Tensor,  # [B, C, h, w]
    cond: Tensor,  # [B or 1, L, D]
    uncond: Tensor,  # [B or 1, L, D]
    t: int,
    s: SDSSettings,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict]:  # grad [B, C, h, w], info
    """The SDS gradient w.r.t. the latents (DreamFusion eq. 3; the UNet Jacobian is dropped)."""
    z = latents.detach().to(prior.compute_dtype)
    noise = draw_noise(z.shape, s.offset_noise, generator, z.device, z.dtype)
    a = prior.alphas_cumprod[t]
    x_t = noise_latents(z, noise, a)
    eps = prior.predict_eps_cfg(x_t, torch.tensor(t), cond, uncond, s.guidance_scale)
    w = (1 - a) if s.weighting == "sds" else torch.ones_like(a)
    grad = torch.nan_to_num(w * (eps - noise))
    return grad, {"t": t, "w": float(w)}
