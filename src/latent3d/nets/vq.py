"""Vector quantisation of feature maps of any rank (VQ-VAE, van den Oord et al. 2017, "Neural Discrete Representation
Learning", arXiv 1711.00937, Sec. 3.1-3.2), as NF-LDM quantises its coarse and fine scene latents (Kim et al. 2023,
Sec. 3.2).

:class:`VectorQuantizer` ``(z [B, C, *spatial]) -> Quantized(z_q, indices [B, *spatial], loss)``:

- every C-vector of ``z`` is replaced by its nearest codebook entry (squared Euclidean distance, eq. 1-2);
- the gradient passes straight through the quantisation (``z_q = z + sg(e - z)``: the decoder's gradient reaches the
  encoder unchanged, Sec. 3.2);
- ``loss`` is eq. 3 without its reconstruction term: ``||sg[z] - e||^2 + beta ||z - sg[e]||^2`` (means over the
  elements), the codebook term moving the codes and the commitment term (beta 0.25, the paper's) the encoder.
  diffusers' ``VectorQuantizer`` with its default ``legacy=True`` puts beta on the codebook term instead;
- dead-code restarts (SoundStream, Zeghidour et al. 2021, arXiv 2107.03312: a code no input chose for several
  batches is replaced by a random input of the current batch; Jukebox's "random restarts", arXiv 2005.00341): in
  training mode, a code that no vector of ``restart_after`` consecutive batches chose is re-initialised to a
  random encoder output of the current batch (drawn with the caller's generator, so that a resumed run restarts the
  same codes); the counters are a buffer, saved with the weights. They start at ``restart_after - 1``, so that the
  first training batch already restarts every code it leaves unchosen: the codebook starts at encoder outputs.

The codebook is learnt by the loss (not by EMA updates), so any optimiser trains it with the rest of the model.
:func:`codebook_usage` reports the share of codes in use and the perplexity of an assignment.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Quantized", "VectorQuantizer", "codebook_usage", "nearest_code"]


class Quantized(NamedTuple):
    z_q: Tensor  # [B, C, *spatial] the codes, with the straight-through gradient to z
    indices: Tensor  # [B, *spatial] int64 code index of every vector
    loss: Tensor  # [] codebook + beta x commitment loss (VQ-VAE eq. 3)


@torch.no_grad()
def nearest_code(
    vectors: Tensor,  # [N, C]
    codebook: Tensor,  # [K, C]
) -> Tensor:  # [N] int64: argmin_k ||vectors[n] - codebook[k]||^2 (the first of equal ones)
    """The nearest codebook entry of every vector (VQ-VAE eq. 1), by ``|x|^2 - 2 x.e + |e|^2``."""
    d = vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codebook.T + codebook.pow(2).sum(1)[None]
    return d.argmin(dim=1)


def codebook_usage(indices: Tensor, num_codes: int) -> dict[str, float]:  # indices [...] int64
    """``usage``: the share of the ``num_codes`` codes chosen at least once; ``perplexity``: ``exp(H(p))`` of the
    codes' frequencies ``p`` (1 when one code takes everything, ``num_codes`` when all are equally used)."""
    counts = torch.bincount(indices.reshape(-1).cpu(), minlength=num_codes).double()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"usage": float((counts > 0).double().mean()), "perplexity": float(math.exp(float(entropy)))}


class VectorQuantizer(nn.Module):
    """VQ-VAE quantiser with a straight-through gradient, codebook + commitment loss and dead-code restarts (module
    docstring): ``forward(z [B, C, *spatial], generator=None) -> Quantized``. ``dim`` is C; the codebook starts
    uniform in ``[-1/K, 1/K]`` (the VQ-VAE reference implementation's)."""

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, restart_after: int = 100):
        super().__init__()
        self.num_codes, self.dim, self.beta, self.restart_after = num_codes, dim, beta, restart_after
        self.codebook = nn.Parameter(torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes))
        # batches since each code was last chosen; starting at restart_after - 1, every code the first training batch
        # leaves unchosen restarts at once: the codebook starts at random encoder outputs (data-dependent init)
        self.register_buffer("unused_steps", torch.full((num_codes,), restart_after - 1, dtype=torch.long))

    def forward(self, z: Tensor, generator: torch.Generator | None = None) -> Quantized:  # z [B, C, *spatial]
        if z.shape[1] != self.dim:
            raise ValueError(f"z has {z.shape[1]} channels, the codebook {self.dim}")
        flat = z.movedim(1, -1).reshape(-1, self.dim)  # [N, C]
        idx = nearest_code(flat.detach(), self.codebook.detach())
        e = F.embedding(idx, self.codebook)  # [N, C], gradient to the chosen codes only
        loss = F.mse_loss(e, flat.detach()) + self.beta * F.mse_loss(flat, e.detach())
        q = flat + (e - flat).detach()  # straight-through: the value of e, the gradient of the identity
        if self.training:
            self._restart_dead(flat.detach(), idx, generator)
        spatial = z.shape[2:]
        return Quantized(q.reshape(z.shape[0], *spatial, self.dim).movedim(-1, 1), idx.reshape(z.shape[0], *spatial),
                         loss)  # fmt: skip

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor, idx: Tensor, generator: torch.Generator | None) -> None:
        """Count the batches each code went unchosen; re-initialise those unchosen ``restart_after`` times in a row
        to random vectors of ``flat`` [N, C]."""
        used = torch.bincount(idx, minlength=self.num_codes) > 0
        self.unused_steps.copy_(torch.where(used, 0, self.unused_steps + 1))
        dead = (self.unused_steps >= self.restart_after).nonzero()[:, 0]
        if len(dead):
            pick = torch.randint(0, flat.shape[0], (len(dead),), generator=generator).to(flat.device)
            self.codebook.data[dead] = flat[pick].to(self.codebook.dtype)
            self.unused_steps[dead] = 0

    @torch.no_grad()
    def snap(self, z: Tensor) -> tuple[Tensor, Tensor]:  # z [B, C, *spatial] -> (codes [B, C, *spatial], [B, *spatial])
        """Every C-vector of ``z`` replaced by its nearest code (eq. 1-2) and the code indices, without a loss, a
        gradient or a restart in either mode (to quantise generated latents before decoding them)."""
        if z.shape[1] != self.dim:
            raise ValueError(f"z has {z.shape[1]} channels, the codebook {self.dim}")
        idx = nearest_code(z.movedim(1, -1).reshape(-1, self.dim), self.codebook.detach().to(z))
        idx = idx.reshape(z.shape[0], *z.shape[2:])
        return self.lookup(idx).to(z), idx

    def lookup(self, indices: Tensor) -> Tensor:  # [B, *spatial] int64 -> [B, C, *spatial]
        """The codes of ``indices`` (to decode saved indices)."""
        return F.embedding(indices, self.codebook).movedim(-1, 1)
