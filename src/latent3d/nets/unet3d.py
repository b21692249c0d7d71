"""A volume UNet for diffusion over 3D latents: ADM (Dhariwal & Nichol 2021, Sec. 3 and Appendix) made 3D, as
3DVADER's latent diffusion model (Ntavelis et al. 2023, Sec. 3.2, supplement B.2: "ADM UNet made 3D", channel
multipliers (3, 4), attention at 8^3 and 4^3, EDM preconditioning).

``UNet3D(x [B, C, D, H, W], c_noise [B], cond=None [B, L, E], cond_mask=None [B, L]) -> [B, C, D, H, W]`` is the raw
network ``F`` of EDM (Karras et al. 2022, eq. 7): wrap it in :class:`latent3d.diffusion.edm.EDMPrecond`, train with
:func:`~latent3d.diffusion.edm.edm_loss`, sample with :func:`~latent3d.diffusion.edm.sample_heun`.

Layout (NVlabs ``DhariwalUNet`` in 3D): a 3x3x3 input conv; per level ``num_res_blocks`` residual blocks (GroupNorm,
SiLU, conv; the noise embedding scales and shifts the second norm, ADM's "adaptive group norm"), self-attention at
the listed resolutions, and cross-attention to text tokens there when ``cross_attention_dim`` is set; a strided conv
between levels; a middle block (res, attention, res); the mirrored decoder with skip concatenations and
nearest-neighbour upsampling; GroupNorm, SiLU and a zero-initialised output conv. ``c_noise`` (EDM's
``ln(sigma) / 4``) enters through sinusoidal features and a 2-layer MLP (ADM's timestep embedding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.nets.blocks3d import SelfAttention3D

__all__ = ["UNet3D", "CrossAttention3D", "ResBlock3D", "noise_features"]


def noise_features(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:  # [B] -> [B, dim]
    """Sinusoidal features ``[cos(c f_k), sin(c f_k)]`` with ``f_k = max_period^(-k / (dim/2 - 1))``, k = 0..dim/2-1
    (ADM's timestep embedding with NVlabs ``PositionalEmbedding(endpoint=True)``: the first frequency is 1)."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=c_noise.device)
    freqs = max_period ** (-k / max(half - 1, 1))
    arg = c_noise.float()[:, None] * freqs[None]
    return torch.cat([arg.cos(), arg.sin()], dim=1)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock3D(nn.Module):
    """ADM residual block (Dhariwal & Nichol 2021, Appendix: "adaptive group normalisation"):
    ``h = conv(SiLU(GN(x)))``; ``h = conv(dropout(SiLU(GN(h) (1 + scale) + shift)))`` with ``(scale, shift)`` a
    linear map of the noise embedding; ``out = skip(x) + h`` (skip: 1x1x1 conv when the width changes). The second
    conv starts at zero, so the block starts as its skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv3d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2, self.conv2 = _norm(cout, groups), nn.Conv3d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # x [B, cin, D, H, W], emb [B, E] -> [B, cout, D, H, W]
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None, None].chunk(2, dim=1)
        h = self.conv2(self.dropout(F.silu(self.norm2(h) * (1 + scale) + shift)))
        return self.skip(x) + h


class CrossAttention3D(nn.Module):
    """Residual cross-attention of the voxels to conditioning tokens (Rombach et al. 2022, Sec. 3.3, eq. 3, in 3D):
    ``x + proj(softmax(Q K^T / sqrt(d)) V)`` with ``Q`` from the group-normalised voxels and ``K, V`` from the tokens;
    tokens with ``cond_mask == False`` (padding) get no weight. ``proj`` starts at zero (the block starts as the
    identity)."""

    def __init__(self, channels: int, cond_dim: int, heads: int = 1, groups: int = 8):
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"heads={heads} must be >= 1 and divide channels={channels}")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(cond_dim, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(
        self,
        x: Tensor,  # [B, C, D, H, W]
        cond: Tensor,  # [B, L, E] token features
        cond_mask: Tensor | None = None,  # [B, L] bool, True = attend
    ) -> Tensor:  # [B, C, D, H, W]
        b, c = x.shape[:2]
        d = c // self.heads
        q = self.q(self.norm(x).flatten(2).transpose(1, 2)).view(b, -1, self.heads, d).transpose(1, 2)  # [B, h, N, d]
        k, v = self.kv(cond.to(x.dtype)).view(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # [B, h, L, d] each
        mask = None if cond_mask is None else cond_mask.bool()[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, h, N, d]
        out = self.proj(a.transpose(1, 2).reshape(b, -1, c))  # [B, N, C]
        return x + out.transpose(1, 2).reshape(x.shape)


class _Level(nn.Module):
    """A residual block followed, at attention resolutions, by self- and (optionally) cross-attention."""

    def __init__(self, cin: int, cout: int, emb_dim: int, attn: bool, cond_dim: int | None, head_channels: int,
                 dropout: float, groups: int):  # fmt: skip
        super().__init__()
        heads = max(1, cout // head_channels)
        self.res = ResBlock3D(cin, cout, emb_dim, dropout, groups)
        self.attn = SelfAttention3D(cout, heads, norm="group", groups=groups, zero_init=True) if attn else None
        self.cross = CrossAttention3D(cout, cond_dim, heads, groups) if attn and cond_dim else None

    def forward(self, x: Tensor, emb: Tensor, cond: Tensor | None, cond_mask: Tensor | None) -> Tensor:
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.cross is not None and cond is not None:
            x = self.cross(x, cond, cond_mask)
        return x


class UNet3D(nn.Module):
    """ADM-style 3D UNet (see the module docstring). ``input_size`` is the side of the input volume (8 for
    3DVADER's latents); ``attention_resolutions`` are volume sides (8, 4: the paper's); ``channel_mult`` one width
    multiplier per level (paper: (3, 4) on 128 channels); ``cross_attention_dim``: the text tokens' width (None: no
    text conditioning, ``cond`` is ignored); ``head_channels``: channels per attention head (heads = width /
    head_channels; ADM's ``num_head_channels``, 64 there: small heads are slow in CPU attention kernels)."""

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
    ):
        super().__init__()
        if input_size % 2 ** (len(channel_mult) - 1):
            raise ValueError(f"input_size={input_size} must be divisible by 2^{len(channel_mult) - 1} (one halving "
                             "per level)")
        mc, emb_dim = model_channels, 4 * model_channels
        self.in_channels, self.model_channels = in_channels, mc
        self.emb = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv3d(in_channels, mc, 3, padding=1)

        def level(cin: int, cout: int, attn: bool) -> _Level:
            return _Level(cin, cout, emb_dim, attn, cross_attention_dim, head_channels, dropout, groups)

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
                self.downsample.append(nn.Conv3d(ch, ch, 3, stride=2, padding=1))
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
                self.upsample.append(nn.Conv3d(ch, ch, 3, padding=1))
                res *= 2
        self.norm_out = _norm(ch, groups)
        self.conv_out = nn.Conv3d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self,
        x: Tensor,  # [B, C, D, H, W]
        c_noise: Tensor,  # [B] noise level (EDM: ln(sigma) / 4)
        cond: Tensor | None = None,  # [B, L, E] text token features
        cond_mask: Tensor | None = None,  # [B, L] bool, True = a real token
    ) -> Tensor:  # [B, C, D, H, W]
        emb = self.emb(noise_features(c_noise.reshape(-1).expand(x.shape[0]), self.model_channels).to(x.dtype))
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
