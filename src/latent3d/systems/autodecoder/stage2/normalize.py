"""Robust normalisation of the autodecoder's latent volumes before diffusion (Ntavelis et al. 2023, Sec. 3.2).

``F_n = (F - median) / (0.7413 IQR)``: for a normal distribution ``0.7413 IQR`` is its standard deviation
(IQR = 2 x 0.6745 sigma and 1 / 1.349 = 0.7413), but unlike the standard deviation it ignores the latents' heavy
tails. The paper reports that diffusion does not converge without it and leaves open whether the statistics are
per channel or over everything; both are here (``mode="channel"``, our default: the channels of a learned latent
differ in scale by an order of magnitude, and one scalar would leave the small ones buried in noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

IQR_TO_STD = 0.7413  # 1 / (2 * 0.6745): the standard deviation of a normal distribution per unit of IQR

Mode = Literal["channel", "global"]


@dataclass
class LatentNormalizer:
    """``normalize(F) = (F - median) / scale`` with ``scale = 0.7413 IQR``; ``median``, ``scale``: [C] (per channel)
    or [1] (global), broadcast over ``[B, C, D, H, W]`` latents."""

    median: Tensor  # [C] or [1]
    scale: Tensor  # [C] or [1], > 0

    @classmethod
    def fit(cls, latents: Tensor, mode: Mode = "channel", eps: float = 1e-6) -> "LatentNormalizer":
        """Statistics of ``latents [N, C, ...]`` (quantiles in float64 by linear interpolation, as NumPy's
        default); a scale below ``eps`` (a constant channel) is raised to ``eps``."""
        if mode not in ("channel", "global"):
            raise ValueError(f"mode must be 'channel' or 'global', got {mode!r}")
        x = latents.detach().double()
        flat = x.transpose(0, 1).reshape(x.shape[1], -1) if mode == "channel" else x.reshape(1, -1)
        q = torch.quantile(flat, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=1)  # [3, C]
        scale = (IQR_TO_STD * (q[2] - q[0])).clamp_min(eps)
        return cls(q[1].float(), scale.float())

    def _view(self, t: Tensor, like: Tensor) -> Tensor:  # [C] -> [1, C, 1, ..., 1]
        return t.to(like.device, like.dtype).reshape(1, -1, *([1] * (like.ndim - 2)))

    def normalize(self, latents: Tensor) -> Tensor:  # [B, C, ...] -> [B, C, ...]
        return (latents - self._view(self.median, latents)) / self._view(self.scale, latents)

    def denormalize(self, z: Tensor) -> Tensor:  # [B, C, ...] -> [B, C, ...]
        """The inverse of :meth:`normalize` (applied to diffusion samples before decoding)."""
        return z * self._view(self.scale, z) + self._view(self.median, z)

    @property
    def mode(self) -> Mode:
        return "global" if self.median.numel() == 1 else "channel"

    def state_dict(self) -> dict[str, Tensor]:
        return {"median": self.median.contiguous(), "scale": self.scale.contiguous()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> "LatentNormalizer":
        """From :meth:`state_dict`'s tensors (checked: same shape, finite, positive scales)."""
        median, scale = state["median"].float(), state["scale"].float()
        if median.shape != scale.shape or median.ndim != 1:
            raise ValueError(f"median {tuple(median.shape)} and scale {tuple(scale.shape)} must be equal 1-D shapes")
        if not (torch.isfinite(median).all() and torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("the normalisation statistics must be finite with positive scales")
        return cls(median, scale)
