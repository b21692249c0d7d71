"""The network ``F`` of 3DVADER stage 2 (Sec. 3.2, supp. B.2): the 3D UNet over 8^3 latent volumes with the text
encoder it cross-attends to; EDM's preconditioning wraps it (:class:`latent3d.diffusion.edm.EDMPrecond`)."""

from __future__ import annotations

from torch import Tensor, nn

from latent3d.nets.unet3d import UNet3D
from latent3d.systems.autodecoder.config import ObjectDiffusionConfig
from latent3d.systems.autodecoder.stage2.text import encode_text


class ObjectDenoiser(nn.Module):
    """The network ``F`` of EDM with its (trainable) text encoder: ``forward(x [B, C, 8, 8, 8], c_noise [B],
    cond [B, L, E] or input_ids [B, L], cond_mask [B, L]) -> [B, C, 8, 8, 8]``; token ids are encoded inside
    ``forward`` (so that distributed training sees the text encoder's gradients). A frozen text encoder is kept
    outside the module (not optimised, not checkpointed) and its features come in as ``cond``."""

    def __init__(self, unet: UNet3D, text_encoder: nn.Module | None):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor | None = None, cond_mask: Tensor | None = None,
                input_ids: Tensor | None = None) -> Tensor:  # fmt: skip
        if input_ids is not None:
            cond = encode_text(self.text_encoder, input_ids, cond_mask)
        return self.unet(x, c_noise, cond, cond_mask)


def build_unet(cfg: ObjectDiffusionConfig, channels: int, text_dim: int) -> UNet3D:
    return UNet3D(channels, cfg.model_channels, tuple(cfg.channel_mult), cfg.blocks, tuple(cfg.attention), 8,
                  text_dim, cfg.head_channels, cfg.dropout)  # fmt: skip
