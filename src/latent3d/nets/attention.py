"""Residual multi-head attention over the flattened positions of a ``[B, C, *spatial]`` feature map (voxels of a
volume, pixels of an image): self-attention, or cross-attention to conditioning tokens.

``x + proj(softmax(Q K^T / sqrt(C / heads)) V)`` per head with ``Q`` from the normalised map (Vaswani et al. 2017,
Sec. 3.2; ADM's attention blocks, Dhariwal & Nichol 2021, Sec. 3), and ``K, V`` from the map itself
(self-attention; 3DVADER's G1 and UNet, Ntavelis et al. 2023, supplement B) or from tokens ``[B, L, E]``
(cross-attention, Rombach et al. 2022, Sec. 3.3, eq. 3), tokens with ``mask == False`` (padding) getting no weight.
No positional encoding: the convolutions around the block carry position.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Attention"]


class Attention(nn.Module):
    """``forward(x [B, C, *spatial], context=None [B, L, E], mask=None [B, L] bool) -> [B, C, *spatial]``.

    ``context_dim=None``: self-attention (one ``qkv`` linear layer, the same as a 1x1 convolution to q, k, v);
    otherwise cross-attention to a ``context`` of width ``context_dim`` (``q`` from the map, ``kv`` from the
    tokens). ``norm`` normalises the map before the projections (a group or batch norm over ``channels``);
    ``zero_init=True`` zeroes ``proj`` so the block starts as the identity.
    """

    def __init__(self, channels: int, heads: int = 1, context_dim: int | None = None, norm: nn.Module | None = None,
                 zero_init: bool = False):  # fmt: skip
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"heads={heads} must be >= 1 and divide channels={channels}")
        self.channels, self.heads, self.context_dim = channels, heads, context_dim
        self.norm = norm if norm is not None else nn.Identity()
        if context_dim is None:
            self.qkv = nn.Linear(channels, 3 * channels)
        else:
            self.q = nn.Linear(channels, channels)
            self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(
        self,
        x: Tensor,  # [B, C, *spatial]
        context: Tensor | None = None,  # [B, L, E] token features (cross-attention only)
        mask: Tensor | None = None,  # [B, L] bool, True = attend
    ) -> Tensor:  # [B, C, *spatial]
        b, c = x.shape[:2]
        d = c // self.heads
        h = self.norm(x).flatten(2).transpose(1, 2)  # [B, N, C], N = prod(spatial)
        if self.context_dim is None:
            if context is not None:
                raise ValueError("a self-attention block takes no context: build it with context_dim")
            q, k, v = self.qkv(h).view(b, -1, 3, self.heads, d).permute(2, 0, 3, 1, 4)  # [B, heads, N, d] each
        else:
            if context is None:
                raise ValueError("a cross-attention block needs a context [B, L, E]")
            q = self.q(h).view(b, -1, self.heads, d).transpose(1, 2)  # [B, heads, N, d]
            k, v = self.kv(context.to(x.dtype)).view(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # [B, heads, L, d]
        attn_mask = None if mask is None else mask.bool()[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, heads, N, d]
        out = self.proj(a.transpose(1, 2).reshape(b, -1, c))  # [B, N, C]
        return x + out.transpose(1, 2).reshape(x.shape)
