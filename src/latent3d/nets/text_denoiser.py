"""A text-conditioned denoiser trained end to end: a UNet and the text encoder it cross-attends to, as one module for
the shared trainer. One class for every text-conditioned diffusion model of latent3d: the bundled object prior and
LDM3D stage 2 (a diffusers ``UNet2DConditionModel``; Rombach et al. 2022, eq. 2, the text encoder trained jointly as
in LDM's own text-to-image model) and 3DVADER stage 2 (a :class:`~latent3d.nets.unet3d.UNet3D` over latent volumes,
Ntavelis et al. 2023, Sec. 3.2, with a trainable word encoder or a frozen T5 / CLIP whose features come in as
``cond``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


def tokenize(tokenizer: Any, prompts: list[str], max_tokens: int) -> tuple[Tensor, Tensor]:  # -> ids, mask [B, L]
    """Token ids and the attention mask (bool, True = a real token) of ``prompts``, padded and truncated to
    ``max_tokens`` (a transformers tokenizer)."""
    t = tokenizer(prompts, padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt")
    return t.input_ids, t.attention_mask.bool()


def encode_text(encoder: nn.Module, ids: Tensor, mask: Tensor | None = None) -> Tensor:  # [B, L] -> [B, L, E]
    """A transformers text encoder's last hidden states for token ids ``[B, L]`` (``mask [B, L]`` bool, True = a real
    token: padding is masked out of the encoder's attention; None: the encoder sees every token, as CLIP's causal
    text model in LDM does)."""
    return encoder(input_ids=ids, attention_mask=None if mask is None else mask.long()).last_hidden_state


class TextConditionedDenoiser(nn.Module):
    """``forward(x [B, C, *spatial], t [B], input_ids [B, L] | None, cond [B, L, E] | None, cond_mask [B, L] | None)
    -> [B, C, *spatial]``: the UNet's output, whatever it was trained to predict (eps or v of a DDPM model, Salimans
    & Ho 2022, Sec. 4; EDM's ``F`` at ``t = c_noise``, Karras et al. 2022, eq. 7).

    Token ids are encoded inside ``forward`` by the module's text encoder (so that distributed training sees its
    gradients); a frozen encoder is kept outside the module (not optimised, not checkpointed, ``text_encoder=None``)
    and its features come in as ``cond``. ``cond_mask`` masks padding tokens out of the encoder and the UNet's
    cross-attention (None: every token counts). The UNet is called like diffusers' ``UNet2DConditionModel``
    (``encoder_hidden_states``, ``encoder_attention_mask``), which :class:`~latent3d.nets.unet3d.UNet3D` follows."""

    def __init__(self, unet: nn.Module, text_encoder: nn.Module | None):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, x: Tensor, t: Tensor, input_ids: Tensor | None = None, cond: Tensor | None = None,
                cond_mask: Tensor | None = None) -> Tensor:  # fmt: skip
        if input_ids is not None:
            if self.text_encoder is None:
                raise ValueError("token ids given to a denoiser whose text encoder is frozen outside it: pass cond")
            cond = encode_text(self.text_encoder, input_ids, cond_mask)
        out = self.unet(x, t, encoder_hidden_states=cond, encoder_attention_mask=cond_mask)
        return out if isinstance(out, Tensor) else out.sample
