"""3D blocks of 3DVADER's volume generator G1 (Ntavelis et al. 2023, arXiv 2307.05445, supplement B).

G1: embedding -> FC -> 4^3 x 512 -> up-res blocks (each doubles resolution, halves channels: 8^3 x 256 = the diffusion
latent, 16^3 x 128, 32^3 x 64, 64^3 x 32) -> BN + 1x1x1 conv -> density + RGB; self-attention at 8^3 and 16^3, 1-4
residual blocks per resolution. The assembly lives in ``systems/autodecoder``; these are its parts.

Normalisation: the paper uses BatchNorm; with a few objects per step its batch statistics are noisy, so every block
takes ``norm="group"`` (GroupNorm with ``gcd(groups, channels)`` groups) as well (:mod:`latent3d.nets.norm`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.nets.attention import Attention
from latent3d.nets.norm import Norm, make_norm

norm3d = make_norm  # (kind, channels, groups=8, dims=3): the 3-D norm of :mod:`latent3d.nets.norm`


def upsample2(x: Tensor) -> Tensor:  # [B, C, D, H, W] -> [B, C, 2D, 2H, 2W]
    """Nearest-neighbour x2 upsampling (supp. B says "upsample"; nearest is our choice: it keeps the block cheap,
    see :class:`UpBlock3D`)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class UpBlock3D(nn.Module):
    """The residual up-res block of G1 (supp. B): ``out = main(x) + skip(x)`` with

    - main: ``up(x) -> ReLU -> Norm -> Conv3d(3, pad 1) -> ReLU -> Norm -> Conv3d(3, pad 1)``,
    - skip: ``Conv3d(1)(up(x))``,

    ``up`` nearest x2 (or the identity with ``upsample=False``). Nearest upsampling commutes exactly with ReLU, with
    the norms (a replicated voxel leaves batch / group means and variances unchanged; eval BN is per element) and with
    the 1x1x1 conv, so they run at the input's resolution and the upsampled tensor is formed only as conv1's input
    and as the skip's output (same function, less memory; the one trace is BatchNorm's running variance, whose
    unbiased ``n / (n - 1)`` uses the smaller count). ``zero_init=True`` zeroes the main path's last conv so the
    block starts as its skip.
    """

    def __init__(
        self, cin: int, cout: int, upsample: bool = True, norm: Norm = "batch", groups: int = 8,
        zero_init: bool = False,
    ):  # fmt: skip
        super().__init__()
        self.cin, self.cout, self.upsample = cin, cout, upsample
        self.norm1, self.conv1 = make_norm(norm, cin, groups), nn.Conv3d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = make_norm(norm, cout, groups), nn.Conv3d(cout, cout, 3, padding=1)
        self.skip = nn.Conv3d(cin, cout, 1)
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, cin, D, H, W] -> [B, cout, 2D, 2H, 2W] (same size if not upsample)
        up = upsample2 if self.upsample else (lambda t: t)
        h = self.conv1(up(self.norm1(F.relu(x))))  # = conv1(norm1(relu(up(x))))
        h = self.conv2(self.norm2(F.relu(h)))
        return h + up(self.skip(x))  # = skip(up(x))


class SelfAttention3D(Attention):
    """Multi-head self-attention over the ``D*H*W`` voxels (G1 uses it at 8^3 and 16^3, supp. B), residual:
    ``x + proj(attn(norm(x)))`` with ``attn = softmax(Q K^T / sqrt(C / heads)) V`` per head: the
    :class:`~latent3d.nets.attention.Attention` block with a ``norm`` of :func:`~latent3d.nets.norm.make_norm`.
    ``zero_init=True`` zeroes ``proj`` so the block starts as the identity.
    """

    def __init__(self, channels: int, heads: int = 1, norm: Norm = "group", groups: int = 8, zero_init: bool = False):
        super().__init__(channels, heads, norm=make_norm(norm, channels, groups), zero_init=zero_init)
