"""The network ``F`` of 3DVADER stage 2 (Sec. 3.2, supp. B.2): the 3D UNet over 8^3 latent volumes, built from an
:class:`~latent3d.systems.autodecoder.config.ObjectDiffusionConfig`. With the text encoder it cross-attends to it is
a :class:`~latent3d.nets.text_denoiser.TextConditionedDenoiser`; EDM's preconditioning wraps that
(:class:`latent3d.diffusion.edm.EDMPrecond`, what a generator folder loads as)."""

from __future__ import annotations

from latent3d.nets.unet3d import UNet3D
from latent3d.systems.autodecoder.config import ObjectDiffusionConfig


def build_unet(cfg: ObjectDiffusionConfig, channels: int, text_dim: int) -> UNet3D:
    return UNet3D(channels, cfg.model_channels, tuple(cfg.channel_mult), cfg.blocks, tuple(cfg.attention), 8,
                  text_dim, cfg.head_channels, cfg.dropout)  # fmt: skip
