"""Exponential moving average of model weights (Polyak averaging), as used by LDM, EDM and 3DVADER training."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copy (float32) of every floating-point entry of ``model.state_dict()``.

    ``update`` uses the warm-up decay ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the schedule of
    TensorFlow's ExponentialMovingAverage with num_updates, also used by the LDM code base), so early averages are
    not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.shadow = {
            k: v.detach().float().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point
        }

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float().to(self.shadow[k].device), 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (non-float entries are left as they are)."""
        sd = model.state_dict()
        for k, v in self.shadow.items():
            sd[k].copy_(v.to(sd[k].dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, sd: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(sd)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}...")
        self.shadow = {k: sd[k].float().clone() for k in self.shadow}
        self.num_updates = num_updates
