"""Per-channel standardisation of latents and grids, ``(x - mean) / std`` with the statistics measured once on the
training data and saved with the weights as buffers (NF-LDM's latent auto-encoder and its diffusion models)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Standardizer(nn.Module):
    """``(x - mean) / std`` per channel (axis ``axis`` of ``[N, ..., C, ...]``), the statistics measured on the
    training data in float64 (:meth:`fit`, the std with Bessel's ``correction`` 0 or 1) and saved with the weights as
    buffers; a constant channel gets std ``min_std``."""

    def __init__(self, channels: int, axis: int = 1, correction: int = 0, min_std: float = 1e-6):
        super().__init__()
        self.axis, self.correction, self.min_std = axis, correction, min_std
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:  # [N, ..., C, ...]
        flat = x.detach().movedim(self.axis, 0).reshape(len(self.mean), -1).double()
        self.mean.copy_(flat.mean(1))
        self.std.copy_(flat.std(1, correction=self.correction).clamp_min(self.min_std))

    def _view(self, v: Tensor, like: Tensor) -> Tensor:  # [C] -> broadcastable along `axis` of `like`
        shape = [1] * like.dim()
        shape[self.axis] = -1
        return v.to(like).reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def inverse(self, z: Tensor) -> Tensor:
        return z * self._view(self.std, z) + self._view(self.mean, z)
