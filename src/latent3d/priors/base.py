"""The protocol every 2D diffusion prior implements (score distillation, sampling and editing use only this)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class DiffusionPrior(Protocol):
    """A text-conditioned, discrete-time (DDPM/DDIM) diffusion model over images or image latents.

    ``alphas_cumprod`` [T] defines the forward process ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` (DDPM eq. 4);
    ``predict_eps`` always returns epsilon, whatever the network's own parameterisation (v-prediction models are
    converted with Salimans & Ho 2022, Sec. 4).
    """

    alphas_cumprod: Tensor  # [T] in compute_dtype on `device`
    device: torch.device
    dtype: torch.dtype  # of the networks (float16 on CUDA for real checkpoints)
    compute_dtype: torch.dtype  # of predictions and the schedule: float32, or float64 for float64 networks
    resolution: int  # native image size in pixels (e.g. 512 for SD2.1-base)
    latent_channels: int
    downsample: int  # pixels per latent cell (8 for SD's VAE, 1 for a pixel-space prior)
    num_train_timesteps: int  # T, the length of alphas_cumprod
    scheduler_config: dict  # the diffusers scheduler config (timestep_spacing, steps_offset, set_alpha_to_one, ...)
    defaults: dict  # settings recommended with the weights (model_index.json "_latent3d_defaults"), maybe empty

    def encode_text(self, prompts: Sequence[str]) -> Tensor:  # [B, L, D]
        """Text embeddings; ``""`` is the unconditional embedding."""
        ...

    def encode_images(
        self,
        images: Tensor,  # [B, 3, H, W] in [0, 1]
        generator: torch.Generator | None = None,
    ) -> Tensor:  # [B, C, H/downsample, W/downsample] (scaled latents; a sample of the posterior if a generator is given)
        ...

    def decode_latents(self, latents: Tensor) -> Tensor:  # [B, C, h, w] -> [B, 3, H, W] in [0, 1]
        ...

    def predict_eps(
        self,
        x_t: Tensor,  # [B, C, h, w]
        t: Tensor,  # [B] long
        text_emb: Tensor,  # [B, L, D]
    ) -> Tensor:  # [B, C, h, w]
        ...

    def predict_eps_cfg(
        self,
        x_t: Tensor,  # [B, C, h, w]
        t: Tensor,  # [B] or [] long
        cond: Tensor,  # [B or 1, L, D]
        uncond: Tensor,  # [B or 1, L, D] empty prompt or a negative embedding
        scale: float,
    ) -> Tensor:  # [B, C, h, w]
        """Classifier-free guided eps, ``uncond + scale (cond - uncond)`` (Ho & Salimans 2022, eq. 6)."""
        ...
