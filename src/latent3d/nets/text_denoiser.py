"""A text-conditioned denoiser trained end to end: a diffusers UNet2DConditionModel and the text encoder it
cross-attends to, as one module for the shared trainer (the bundled object prior; LDM3D stage 2, Rombach et al.
2022, eq. 2, where the text encoder is trained jointly as in LDM's own text-to-image model)."""

from __future__ import annotations

from torch import Tensor, nn


class TextConditionedDenoiser(nn.Module):
    """``forward(x_t [B, C, h, w] (pixels or latents), t [B], input_ids [B, L]) -> [B, C, h, w]``: the UNet's
    output, whatever it was trained to predict (eps, or v for a ``v_prediction`` model; Salimans & Ho 2022, Sec. 4)."""

    def __init__(self, unet: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, x_t: Tensor, t: Tensor, input_ids: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=self.text_encoder(input_ids)[0]).sample
