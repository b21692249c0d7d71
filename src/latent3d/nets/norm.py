"""Normalisation layers shared by the 2D and 3D networks (``blocks3d``, ``unet3d``, ``rgbd_vae``'s PatchGAN).

- :func:`make_norm`: BatchNorm (the 3DVADER paper's, supplement B; pix2pix's PatchGAN) or GroupNorm with
  ``gcd(groups, channels)`` groups (Wu & He 2018; stable with the few objects per step a CPU run affords), for 2-D or
  3-D feature maps, or none (an identity, for a PatchGAN without norm).
- :func:`adaptive_group_norm` / :class:`AdaptiveGroupNorm`: a group norm whose per-channel scale and shift are a
  linear map of a conditioning vector, ``GN(x) (1 + scale) + shift``: ADM's "adaptive group normalisation" of the
  noise embedding (Dhariwal & Nichol 2021, Appendix A) and NF-LDM's conditional group norm (CGN, Kim et al. 2023,
  Sec. 3.3 and supplement: the scene latent's embedding modulates the decoder's norms).
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

__all__ = ["Norm", "NormOrNone", "AdaptiveGroupNorm", "adaptive_group_norm", "group_norm", "make_norm"]

Norm = Literal["batch", "group"]
NormOrNone = Literal["batch", "group", "none"]


def group_norm(channels: int, groups: int = 8) -> nn.GroupNorm:
    """``GroupNorm(gcd(groups, channels), channels)``: at most ``groups`` groups, always a divisor of ``channels``."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def make_norm(kind: NormOrNone, channels: int, groups: int = 8, dims: int = 3) -> nn.Module:
    """``BatchNorm{dims}d(channels)``, :func:`group_norm` or ``Identity`` for ``"none"`` (ValueError for another kind
    or ``dims`` not 2 or 3)."""
    if dims not in (2, 3):
        raise ValueError(f"dims={dims}: norms are made for 2-D or 3-D feature maps")
    if kind == "batch":
        return nn.BatchNorm3d(channels) if dims == 3 else nn.BatchNorm2d(channels)
    if kind == "group":
        return group_norm(channels, groups)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use 'batch' (the paper's), 'group' (for small batches) or 'none'")


def adaptive_group_norm(
    x: Tensor,  # [B, C, *spatial]
    norm: nn.Module,  # the group norm over C channels
    to_scale_shift: nn.Module,  # maps [B, E] -> [B, 2C] (a Linear)
    emb: Tensor,  # [B, E] conditioning vector
) -> Tensor:  # [B, C, *spatial]
    """``norm(x) * (1 + scale) + shift`` with ``(scale, shift) = to_scale_shift(emb)`` split in two along channels
    (ADM's AdaGN, Appendix A; NF-LDM's CGN), broadcast over the spatial axes."""
    ss = to_scale_shift(emb)[(slice(None), slice(None)) + (None,) * (x.dim() - 2)]  # [B, 2C, 1, ..., 1]
    scale, shift = ss.chunk(2, dim=1)
    return norm(x) * (1 + scale) + shift


class AdaptiveGroupNorm(nn.Module):
    """Conditional group norm (see :func:`adaptive_group_norm`): ``forward(x [B, C, *spatial], emb [B, E])``.
    ``zero_init=True`` zeroes the linear layer so the module starts as the plain group norm."""

    def __init__(self, channels: int, emb_dim: int, groups: int = 8, zero_init: bool = False):
        super().__init__()
        self.emb = nn.Linear(emb_dim, 2 * channels)
        self.norm = group_norm(channels, groups)
        if zero_init:
            nn.init.zeros_(self.emb.weight)
            nn.init.zeros_(self.emb.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # x [B, C, *spatial], emb [B, E] -> [B, C, *spatial]
        return adaptive_group_norm(x, self.norm, self.emb, emb)
