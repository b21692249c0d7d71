"""Pieces shared by SDS and ISM."""

from __future__ import annotations

import torch
from torch import Tensor


def distillation_loss(
    latents: Tensor,  # [B, C, h, w] differentiable (rendered, then encoded)
    grad: Tensor,  # [B, C, h, w] the score-distillation gradient (no graph)
) -> Tensor:  # [] whose gradient w.r.t. latents is exactly `grad`
    """``0.5 * ||z - sg(z - grad)||^2`` summed: d loss / d z = grad (DreamFusion's reparameterisation trick,
    Poole et al. 2022, eq. 3; LucidDreamer's ``SpecifyGradient``). Its value, ``0.5 * ||grad||^2``, is a
    useful magnitude to log."""
    target = (latents - grad).detach()
    return 0.5 * (latents - target).pow(2).sum()


def noise_latents(
    latents: Tensor,  # [B, C, h, w]
    noise: Tensor,  # [B, C, h, w]
    alpha_bar: Tensor,  # [] or [B, 1, 1, 1]
) -> Tensor:
    """Forward diffusion ``sqrt(a) z + sqrt(1 - a) noise`` (DDPM eq. 4)."""
    return alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise


def draw_noise(
    shape: torch.Size,
    offset: float,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [B, C, h, w] in `dtype`
    """Standard normal noise plus ``offset`` times a per-channel constant shared by the batch (LucidDreamer's
    "offset noise": ``randn + 0.1 * randn(1, C, 1, 1)``). Drawn in float32 (the same numbers for every dtype), then
    cast to ``dtype`` (the latents' dtype: a float64 prior must not get float32 products from a float32 noise, as
    0-dim float64 factors do not promote a float32 tensor)."""
    noise = torch.randn(shape, generator=generator)
    if offset:
        noise = noise + offset * torch.randn(1, shape[1], 1, 1, generator=generator)
    return noise.to(device, dtype)
