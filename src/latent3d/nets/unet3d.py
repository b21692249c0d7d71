"""A volume UNet for diffusion over 3D latents: ADM (Dhariwal & Nichol 2021, Sec. 3 and Appendix) made 3D, as
3DVADER's latent diffusion model (Ntavelis et al. 2023, Sec. 3.2, supplement B.2: "ADM UNet made 3D", channel
multipliers (3, 4), attention at 8^3 and 4^3, EDM preconditioning); with ``dims=2`` the same UNet over images.

``UNet3D(x [B, C, D, H, W], c_noise [B], encoder_hidden_states=None [B, L, E], encoder_attention_mask=None [B, L])
-> [B, C, D, H, W]`` (called like diffusers' ``UNet2DConditionModel``, so that
:class:`~latent3d.nets.text_denoiser.TextConditionedDenoiser` takes either) is the raw network ``F`` of EDM (Karras
et al. 2022, eq. 7): wrap it in :class:`latent3d.diffusion.edm.EDMPrecond`, train with
:class:`~latent3d.diffusion.edm.EDMLoss`, sample with :func:`~latent3d.diffusion.edm.sample_heun`.

Layout (NVlabs ``DhariwalUNet`` in 3D): a 3x3x3 input conv; per level ``num_res_blocks`` residual blocks (GroupNorm,
SiLU, conv; the noise embedding scales and shifts the second norm, ADM's "adaptive group norm"), self-attention at
the listed resolutions, and cross-attention to text tokens there when ``cross_attention_dim`` is set; a strided conv
between levels; a middle block (res, attention, res); the mirrored decoder with skip concatenations and
nearest-neighbour upsampling; GroupNorm, SiLU and a zero-initialised output conv. ``c_noise`` (EDM's
``ln(sigma) / 4``, or a DDPM timestep) enters through sinusoidal features and a 2-layer MLP (ADM's timestep
embedding). The norms and the adaptive group norm are :mod:`latent3d.nets.norm`'s, both attentions
:class:`latent3d.nets.attention.Attention`.

With ``global_cond_dim`` set, ``forward(..., global_cond=[B, G])`` adds a linear map of a conditioning vector to the
noise embedding, so every residual block's adaptive group norm is conditioned on it (ADM's class embedding added to
the timestep embedding; NF-LDM's conditional group norm on the global latent g, Kim et al. 2023, Sec. 3.3).
``out_channels`` (default ``in_channels``) lets extra input channels carry a condition by concatenation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.nets.attention import Attention
from latent3d.nets.norm import adaptive_group_norm, group_norm

__all__ = ["UNet3D", "CrossAttention3D", "ResBlock3D", "noise_features"]


def noise_features(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:  # [B] -> [B, dim]
    """Sinusoidal features ``[cos(c f_k), sin(c f_k)]`` with ``f_k = max_period^(-k / (dim/2 - 1))``, k = 0..dim/2-1
    (ADM's timestep embedding with NVlabs ``PositionalEmbedding(endpoint=True)``: the first frequency is 1)."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=c_noise.device)
    freqs = max_period ** (-k / max(half - 1, 1))
    arg = c_noise.float()[:, None] * freqs[None]
    return torch.cat([arg.cos(), arg.sin()], dim=1)


def _conv(dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    if dims not in (2, 3):
        raise ValueError(f"dims={dims}: the UNet is 2-D (images) or 3-D (volumes)")
    return nn.Conv3d if dims == 3 else nn.Conv2d


class ResBlock3D(nn.Module):
    """ADM residual block (Dhariwal & Nichol 2021, Appendix: "adaptive group normalisation"):
    ``h = conv(SiLU(GN(x)))``; ``h = conv(dropout(SiLU(GN(h) (1 + scale) + shift)))`` with ``(scale, shift)`` a
    linear map of the noise embedding (:func:`~latent3d.nets.norm.adaptive_group_norm`); ``out = skip(x) + h`` (skip:
    1x1x1 conv when the width changes). The second conv starts at zero, so the block starts as its skip. ``dims=2``:
    the same block with 2-D convolutions."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, groups: int = 8, dims: int = 3):
        super().__init__()
        conv = _conv(dims)
        self.norm1, self.conv1 = group_norm(cin, groups), conv(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)  # AdaGN's scale and shift of norm2
        self.norm2, self.conv2 = group_norm(cout, groups), conv(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # x [B, cin, *spatial], emb [B, E] -> [B, cout, *spatial]
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(adaptive_group_norm(h, self.norm2, self.emb, emb))))
        return self.skip(x) + h


class CrossAttention3D(Attention):
    """Residual cross-attention of the voxels (or pixels) to conditioning tokens (Rombach et al. 2022, Sec. 3.3,
    eq. 3): ``forward(x [B, C, *spatial], cond [B, L, E], cond_mask=None [B, L] bool) -> [B, C, *spatial]``,
    ``x + proj(softmax(Q K^T / sqrt(d)) V)`` with ``Q`` from the group-normalised map and ``K, V`` from the tokens;
    tokens with ``cond_mask == False`` (padding) get no weight. The :class:`~latent3d.nets.attention.Attention`
    block with a context; ``proj`` starts at zero (the block starts as the identity)."""

    def __init__(self, channels: int, cond_dim: int, heads: int = 1, groups: int = 8):
        super().__init__(channels, heads, context_dim=cond_dim, norm=group_norm(channels, groups), zero_init=True)


class _Level(nn.Module):
    """A residual block followed, at attention resolutions, by self- and (optionally) cross-attention."""

    def __init__(self, cin: int, cout: int, emb_dim: int, attn: bool, cond_dim: int | None, head_channels: int,
                 dropout: float, groups: int, dims: int):  # fmt: skip
        super().__init__()
        heads = max(1, cout // head_channels)
        self.res = ResBlock3D(cin, cout, emb_dim, dropout, groups, dims)
        self.attn = Attention(cout, heads, norm=group_norm(cout, groups), zero_init=True) if attn else None
        self.cross = CrossAttention3D(cout, cond_dim, heads, groups) if attn and cond_dim else None

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor | None, cond_mask: Tensor | None) -> Tensor:
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.cross is not None and cond is not None:
            x = self.cross(x, cond, cond_mask)
        return x


class UNet3D(nn.Module):
    """ADM-style UNet over volumes (``dims=3``, the default) or images (``dims=2``: 2-D convolutions, the same
    blocks), see the module docstring. ``input_size`` is the side of the input volume (8 for 3DVADER's latents);
    ``attention_resolutions`` are volume sides (8, 4: the paper's); ``channel_mult`` one width multiplier per level
    (paper: (3, 4) on 128 channels); ``cross_attention_dim``: the text tokens' width (None: no text conditioning,
    ``cond`` is ignored); ``head_channels``: channels per attention head (heads = width / head_channels; ADM's
    ``num_head_channels``, 64 there: small heads are slow in CPU attention kernels); ``out_channels``: output
    channels (default ``in_channels``); ``global_cond_dim``: width of a conditioning vector added to the noise
    embedding (None: none).

    For a 2-D image UNet in diffusers' layout (loading diffusers / Stable Diffusion weights, its schedulers and
    pipelines) use diffusers' ``UNet2DModel`` / ``UNet2DConditionModel`` instead; this one is for latents with EDM
    preconditioning (:class:`~latent3d.diffusion.edm.EDMPrecond`, raw ``c_noise`` input) and for 3-D volumes, which
    diffusers has no UNet for (its ``UNet3DConditionModel`` is a video UNet)."""

    def __init__(
        self,
        in_channels: int,
        model_channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (8, 4),
        input_size: int = 8,
        cross_attention_dim: int | None = None,
        head_channels: int = 32,
        dropout: float = 0.0,
        groups: int = 8,
        dims: int = 3,
        out_channels: int | None = None,
        global_cond_dim: int | None = None,
    ):
        super().__init__()
        conv = _conv(dims)
        if input_size % 2 ** (len(channel_mult) - 1):
            raise ValueError(f"input_size={input_size} must be divisible by 2^{len(channel_mult) - 1} (one halving "
                             "per level)")
        mc, emb_dim = model_channels, 4 * model_channels
        self.in_channels, self.model_channels = in_channels, mc
        self.emb = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.global_emb = nn.Linear(global_cond_dim, emb_dim) if global_cond_dim else None
        self.conv_in = conv(in_channels, mc, 3, padding=1)

        def level(cin: int, cout: int, attn: bool) -> _Level:
            return _Level(cin, cout, emb_dim, attn, cross_attention_dim, head_channels, dropout, groups, dims)

        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, ch, res = [mc], mc, input_size
        for i, mult in enumerate(channel_mult):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(level(ch, mc * mult, res in attention_resolutions))
                ch = mc * mult
                skips.append(ch)
            self.down.append(blocks)
            if i < len(channel_mult) - 1:
                self.downsample.append(conv(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList([level(ch, ch, True), level(ch, ch, False)])  # ADM: res, attention, res
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mult))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(level(ch + skips.pop(), mc * mult, res in attention_resolutions))
                ch = mc * mult
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(conv(ch, ch, 3, padding=1))
                res *= 2
        self.norm_out = group_norm(ch, groups)
        self.conv_out = conv(ch, out_channels or in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self,
        x: Tensor,  # [B, C, D, H, W] ([B, C, H, W] with dims=2)
        c_noise: Tensor,  # [B] noise level (EDM: ln(sigma) / 4)
        encoder_hidden_states: Tensor | None = None,  # [B, L, E] text token features
        encoder_attention_mask: Tensor | None = None,  # [B, L] bool, True = a real token
        global_cond: Tensor | None = None,  # [B, G] a vector for the adaptive group norms (needs global_cond_dim)
    ) -> Tensor:  # [B, out_channels, D, H, W]
        cond, cond_mask = encoder_hidden_states, encoder_attention_mask
        emb = self.emb(noise_features(c_noise.reshape(-1).expand(x.shape[0]), self.model_channels).to(x.dtype))
        if self.global_emb is not None:
            if global_cond is None:
                raise ValueError("this UNet is conditioned on a global vector: pass global_cond [B, G]")
            emb = emb + self.global_emb(global_cond.to(emb.dtype))
        h = self.conv_in(x)
        skips = [h]
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, emb, cond, cond_mask)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        for blk in self.mid:
            h = blk(h, emb, cond, cond_mask)
        for i, blocks in enumerate(self.up):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb, cond, cond_mask)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
