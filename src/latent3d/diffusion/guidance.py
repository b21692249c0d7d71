"""Classifier-free guidance (Ho & Salimans 2022) and negative guidance (NF-LDM, Kim et al. 2023, Sec. 3.4).

``cfg(uncond, cond, w) = uncond + w (cond - uncond)`` (Ho & Salimans 2022, eq. 6, written with ``w = 1 + w_paper``
as in Stable Diffusion / diffusers' ``guidance_scale``). The "unconditional" branch may be any embedding: the empty
prompt (plain CFG), or the embedding of artefact-laden samples (NF-LDM's negative guidance), or a negative prompt.
LucidDreamer's "reverse" CFG used inside its inversion, ``cond + w (uncond - cond)``, is ``cfg(cond, uncond, w)``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["cfg", "cfg_batched", "CFGModel"]

Cond = Tensor | dict[str, Tensor]  # [B, ...] or {name: [B, ...]}


def cfg(
    out_uncond: Tensor,  # [B, ...] model output with the unconditional / negative embedding
    out_cond: Tensor,  # [B, ...] model output with the conditional embedding
    scale: float | Tensor,  # guidance weight w (1 = no guidance); [] or broadcastable
) -> Tensor:  # [B, ...]
    """Classifier-free guidance ``uncond + scale (cond - uncond)`` (Ho & Salimans 2022, eq. 6). Works for eps, v or x0
    outputs alike (it is linear)."""
    return out_uncond + scale * (out_cond - out_uncond)


def _expand(c: Tensor, b: int) -> Tensor:
    return c.expand(b, *c.shape[1:]) if c.shape[0] == 1 and b > 1 else c


def _cat(uncond: Cond, cond: Cond, b: int) -> Cond:
    if isinstance(cond, dict):
        if not isinstance(uncond, dict) or uncond.keys() != cond.keys():
            raise ValueError("cond and uncond must both be tensors or dicts with the same keys")
        return {k: torch.cat([_expand(uncond[k], b), _expand(cond[k], b)]) for k in cond}
    return torch.cat([_expand(uncond, b), _expand(cond, b)])


def _single(c: Cond, b: int) -> Cond:
    return {k: _expand(v, b) for k, v in c.items()} if isinstance(c, dict) else _expand(c, b)


def _pass(c: Cond, key: str) -> dict[str, Any]:
    return dict(c) if isinstance(c, dict) else {key: c}


def cfg_batched(
    model: Callable[..., Tensor],
    x: Tensor,  # [B, ...]
    t: Tensor | float | int,  # [], [B] timestep or sigma
    cond: Cond,  # [B, ...] or [1, ...] (broadcast), or a dict of those
    uncond: Cond,  # [B, ...] or [1, ...]: empty prompt or any negative embedding, same structure as cond
    scale: float,
    cond_key: str = "encoder_hidden_states",
    **extra_args: Any,
) -> Tensor:  # [B, ...]
    """Guided model output with one batched call ``model(cat[x, x], cat[t, t], cond_key=cat[uncond, cond])``
    (Ho & Salimans 2022, Alg. 2; NF-LDM negative guidance when ``uncond`` is a negative embedding).

    A dict ``cond`` is passed as keyword arguments (each entry concatenated); a tensor goes under ``cond_key``.
    ``scale == 1`` calls the model once on ``cond`` only and ``scale == 0`` once on ``uncond`` only (same result).
    """
    b = x.shape[0]
    t = torch.as_tensor(t, device=x.device)
    t = t.expand(b) if t.ndim == 0 else t
    if scale == 1:
        return model(x, t, **_pass(_single(cond, b), cond_key), **extra_args)
    if scale == 0:
        return model(x, t, **_pass(_single(uncond, b), cond_key), **extra_args)
    out = model(torch.cat([x, x]), torch.cat([t, t]), **_pass(_cat(uncond, cond, b), cond_key), **extra_args)
    out_uncond, out_cond = out.chunk(2)
    return cfg(out_uncond, out_cond, scale)


class CFGModel:
    """Wrap ``model(x, t, **kw)`` into a guided ``model(x, t, **kw)`` for :func:`~latent3d.diffusion.ddim.ddim_sample`,
    :func:`~latent3d.diffusion.edm.sample_heun` etc. (Ho & Salimans 2022, eq. 6; NF-LDM negative guidance)."""

    def __init__(
        self,
        model: Callable[..., Tensor],
        cond: Cond,  # [B or 1, ...] or dict
        uncond: Cond,  # [B or 1, ...] or dict; negative embedding allowed
        scale: float,
        cond_key: str = "encoder_hidden_states",
    ) -> None:
        self.model, self.cond, self.uncond, self.scale, self.cond_key = model, cond, uncond, scale, cond_key

    def __call__(self, x: Tensor, t: Tensor, **extra_args: Any) -> Tensor:  # x: [B, ...], t: [B] -> [B, ...]
        return cfg_batched(self.model, x, t, self.cond, self.uncond, self.scale, self.cond_key, **extra_args)
