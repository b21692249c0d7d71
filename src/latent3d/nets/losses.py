"""Image losses shared by latent3d's autoencoders (LDM3D's RGBD VAE, 3DVADER's autodecoder)."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor


def pyramid_mean(term: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, levels: int = 3) -> Tensor:
    """``term(x_k, y_k)`` averaged over an image pyramid (scales 1, 1/2, ..., 2^-(levels-1); 2x2 average pooling;
    levels stop early when the image is down to one pixel). ``x``, ``y``: [B, C, H, W]."""
    total = x.new_zeros(())
    for k in range(levels):
        if k:
            if min(x.shape[-2:]) < 2:
                return total / k
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        total = total + term(x, y)
    return total / levels


def pyramid_l1(x: Tensor, y: Tensor, levels: int = 3) -> Tensor:  # x, y [B, C, H, W]
    """Mean L1 over an image pyramid (:func:`pyramid_mean`): the perceptual term's stand-in when no perceptual
    network is available (coarse scales weigh structure, as in 3DVADER's pyramidal loss)."""
    return pyramid_mean(lambda a, b: (a - b).abs().mean(), x, y, levels)
