"""One recipe for training a diffusion model, shared by the text-conditioned object prior, LDM3D stage 2 (Rombach et
al. 2022, eq. 2) and 3DVADER stage 2 (Ntavelis et al. 2023, Sec. 3.2), and ready for NF-LDM's three latent models
(conditioned on the coarser latents of the same scene instead of a caption: ``captions=None`` and a ``condition`` of
the item rows):

- captions are tokenised once, the empty prompt appended as the last row (:class:`Captions`);
- each step draws a batch ``i`` of training items, the item itself (``sample(i, g)``: a stored image, a latent, or a
  draw from an autoencoder's posterior), and replaces each caption by the empty prompt with probability
  ``cond_drop`` (Ho & Salimans 2022, Sec. 3.2: what classifier-free guidance needs);
- a configured loss object draws the noise and scores the network (:class:`~latent3d.diffusion.ddpm.DDPMLoss` or
  :class:`~latent3d.diffusion.edm.EDMLoss`, called ``loss(net, x0, generator, **condition)``);
- the shared trainer runs it (checkpoints, resume, EMA), and the model leaves with the EMA weights in it: what is
  exported (:func:`fit_diffusion`).

Every random number of a step comes from the trainer's generator in this order: items, the item draw, the dropout,
then the loss's noise (the order the three trainers had, so their runs are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from latent3d.nets.text_denoiser import tokenize
from latent3d.train.trainer import TrainConfig, TrainResult, train

Condition = Callable[..., dict[str, Any]]  # (rows j [B], device[, u [B, 2] uniform]) -> the net's keywords


@dataclass
class Captions:
    """The training captions tokenised once, the empty prompt as the last row: ``ids``, ``mask`` ``[N + 1, L]``."""

    ids: Tensor  # [N + 1, L] int64
    mask: Tensor  # [N + 1, L] bool

    @classmethod
    def tokenized(cls, tokenizer: Any, captions: list[str], max_tokens: int) -> Captions:
        ids, mask = tokenize(tokenizer, captions, max_tokens)
        e_ids, e_mask = tokenize(tokenizer, [""], max_tokens)
        return cls(torch.cat([ids, e_ids]), torch.cat([mask, e_mask]))

    @property
    def empty(self) -> int:
        """The row of the empty prompt."""
        return len(self.ids) - 1

    def dropout(self, i: Tensor, p: float, generator: torch.Generator) -> Tensor:  # i [B] -> rows [B]
        """The caption rows of items ``i``, each replaced by the empty prompt with probability ``p`` (one uniform
        draw per item from ``generator``)."""
        drop = torch.rand(len(i), generator=generator) < p
        return torch.where(drop, torch.full_like(i, self.empty), i)

    def token_ids(self, rows: Tensor, device: torch.device) -> dict[str, Tensor]:
        """The keywords of a denoiser that encodes its own tokens without a mask (CLIP's causal text model)."""
        return {"input_ids": self.ids[rows].to(device)}


def fit_diffusion(
    model: nn.Module,
    n_items: int,
    sample: Callable[[Tensor, torch.Generator], Tensor],  # (items i [B], generator) -> x0 [B, ...]
    loss: Callable[..., Tensor],  # DDPMLoss / EDMLoss: loss(net, x0, generator, **condition) -> []
    tcfg: TrainConfig,
    batch_size: int,
    captions: Captions | None = None,  # row k: item k's caption (k < n_items), then the empty prompt
    cond_drop: float = 0.0,
    condition: Condition | None = None,
) -> TrainResult:
    """Train ``model`` by the recipe of the module docstring and leave the EMA weights in it (when the run keeps an
    EMA). ``condition(rows, device)`` gives the network's conditioning keywords: for caption rows after dropout
    (default: the token ids, :meth:`Captions.token_ids`), or, without ``captions``, for the items themselves (no
    keywords when ``condition`` is None too: an unconditional model); without ``captions`` and with ``cond_drop`` >
    0, ``condition(rows, device, u)`` with ``u [B, 2]``, two uniform draws per item from the run's generator, by
    which the callable drops conditions of its own (a scene's map, its g) to their empty values."""
    if captions is not None:
        condition = condition or captions.token_ids

    def batch_fn(step: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
        i = torch.randint(0, n_items, (batch_size,), generator=g)
        x0 = sample(i, g)
        if captions is not None:
            return x0, captions.dropout(i, cond_drop, g), None
        return x0, i, (torch.rand(len(i), 2, generator=g) if cond_drop > 0 else None)

    def loss_fn(m: nn.Module, batch: tuple[Tensor, Tensor, Tensor | None], g: torch.Generator) -> Tensor:
        x0, rows, drop = batch
        dev = next(iter(m.parameters())).device
        kw = {} if condition is None else condition(rows, dev) if drop is None else condition(rows, dev, drop)
        return loss(m, x0.to(dev), g, **kw)

    res = train(model, batch_fn, loss_fn, tcfg)
    if res.ema is not None:
        res.ema.copy_to(model)  # the exported weights are the EMA's
    return res
