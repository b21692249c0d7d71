"""Per-object embeddings of an autodecoder (3DVADER, Ntavelis et al. 2023, arXiv 2307.05445, supplement B).

The autodecoder learns one vector per training object and no encoder: G1 maps it to a latent volume.

- :class:`DenseEmbedding`: one learnable row per object (``num_objects * dim`` parameters), as in DeepSDF / UVA.
- :class:`HashEmbedding` (supplement B.3): the vector of object ``k`` is the concatenation of ``n`` sub-vectors;
  sub-vector ``i`` is row ``m_i(k) = ((a_i k) mod 2^32) >> (32 - r)`` of codebook ``i`` (``2^r`` rows), with
  ``a_i = 2^31 + 2 i^2 + 1``. Memory ``n * 2^r * sub_dim`` is independent of the number of objects.

Which ``i`` comes first: codebooks are numbered ``i = 1..n`` (``first_i=1``), reading the supplement's "n
sub-vectors" as 1-based like its other indices (the text was not at hand to confirm); ``i = 0`` would give
``a_0 = 2^31 + 1``, for which ``m_0(k)`` is just ``k``'s top bits plus its parity, the least hash-like multiplier.
``first_i=0`` switches it.

A finding about the formula as written: ``a_i k mod 2^32 = (2 i^2 + 1) k + 2^31 (k mod 2)``, so for the consecutive
ids of a dataset (``(2 i^2 + 1) k < 2^(32 - r)``) every index is ``0`` or ``2^(r-1)`` by parity: 1000 objects, 4
codebooks of 2^8 rows get only 2 distinct vectors. Mixing the id first does not cure it: the ``a_i`` differ only in
their low bits, so codebook ``i``'s index is nearly a function of codebook ``j``'s (4 codebooks of 2^8 rows: ~16
bits of tuple, 33 full collisions among 1000 ids scrambled by ``fmix32``). ``mix=True`` passes each product through murmur3's ``fmix32`` finaliser before taking its top bits,
``fmix32((a_i k) mod 2^32) >> (32 - r)``: every codebook spreads consecutive ids over its rows and the codebooks
become nearly independent. :func:`make_embedding` uses it by default; ``mix=False`` is the paper's formula exactly.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_M32 = (1 << 32) - 1


def _mulmod32(a: Tensor | int, k: Tensor) -> Tensor:
    """``(a * k) mod 2^32`` for ``0 <= a, k < 2^32`` in int64 without overflow: ``k`` split into 16-bit halves keeps
    every product below ``2^48``."""
    lo, hi = k & 0xFFFF, k >> 16
    return (a * lo + (((a * hi) & 0xFFFF) << 16)) & _M32


def fmix32(k: Tensor) -> Tensor:  # [...] int64 in [0, 2^32) -> same
    """murmur3's 32-bit finaliser, a bijection of ``[0, 2^32)`` with full avalanche: the ``mix`` of
    :class:`HashEmbedding`."""
    h = k ^ (k >> 16)
    h = _mulmod32(0x85EBCA6B, h)
    h = h ^ (h >> 13)
    h = _mulmod32(0xC2B2AE35, h)
    return h ^ (h >> 16)


class DenseEmbedding(nn.Module):
    """One learnable ``dim``-vector per object, initialised ``N(0, init_std^2)`` (``init_std`` defaults to
    ``1 / sqrt(dim)``, DeepSDF's choice, so vectors start with norm ~1). 3DVADER uses ``dim = 1024`` (supp. B)."""

    def __init__(self, num_objects: int, dim: int, init_std: float | None = None):
        super().__init__()
        if num_objects < 1 or dim < 1:
            raise ValueError(f"DenseEmbedding needs num_objects >= 1 and dim >= 1, got {num_objects} and {dim}")
        self.num_objects, self.dim = num_objects, dim
        std = 1.0 / math.sqrt(dim) if init_std is None else init_std
        self.weight = nn.Parameter(torch.randn(num_objects, dim) * std)  # [N, dim]

    def forward(self, ids: Tensor) -> Tensor:  # ids [B] long in [0, N) -> [B, dim]
        return F.embedding(ids.long(), self.weight)


class HashEmbedding(nn.Module):
    """3DVADER's hash embedding (supplement B.3): ``num_codebooks`` codebooks of ``2^codebook_bits`` rows of
    ``sub_dim``; ``dim = num_codebooks * sub_dim``. Sub-vectors start ``N(0, init_std^2)`` with ``init_std``
    defaulting to ``1 / sqrt(dim)`` (concatenations of norm ~1, as :class:`DenseEmbedding`).

    ``mix=False`` (default) is the paper's ``m_i(k)``; ``mix=True`` takes the top bits of ``fmix32((a_i k) mod
    2^32)`` instead (see the module docstring for why consecutive ids need it). Ids are taken mod ``2^32``.
    """

    def __init__(
        self, num_codebooks: int, codebook_bits: int, sub_dim: int, init_std: float | None = None,
        *, mix: bool = False, first_i: int = 1,
    ):  # fmt: skip
        super().__init__()
        if num_codebooks < 1 or sub_dim < 1 or not 1 <= codebook_bits <= 32 or first_i < 0:
            raise ValueError(
                f"HashEmbedding needs num_codebooks >= 1, sub_dim >= 1, 1 <= codebook_bits <= 32 and first_i >= 0, "
                f"got {num_codebooks}, {sub_dim}, {codebook_bits}, {first_i}"
            )
        self.num_codebooks, self.codebook_bits, self.sub_dim = num_codebooks, codebook_bits, sub_dim
        self.dim, self.mix, self.first_i = num_codebooks * sub_dim, mix, first_i
        # a_i = 2^31 + 2 i^2 + 1, reduced mod 2^32 (same m_i) so that _mulmod32 stays in int64 for any i
        self.multipliers = tuple(((1 << 31) + 2 * i * i + 1) & _M32 for i in range(first_i, first_i + num_codebooks))
        self.register_buffer("_a", torch.tensor(self.multipliers, dtype=torch.long), persistent=False)  # [n]
        std = 1.0 / math.sqrt(self.dim) if init_std is None else init_std
        self.codebooks = nn.Parameter(torch.randn(num_codebooks, 1 << codebook_bits, sub_dim) * std)  # [n, 2^r, s]

    def indices(self, ids: Tensor) -> Tensor:  # ids [B] long -> [B, n] long in [0, 2^r)
        """``m_i(k) = ((a_i k) mod 2^32) >> (32 - r)`` for each codebook ``i`` (exact int64 arithmetic; with ``mix``
        the product goes through ``fmix32`` first)."""
        h = _mulmod32(self._a, (ids.long() & _M32)[..., None])  # [B, n] in [0, 2^32)
        return (fmix32(h) if self.mix else h) >> (32 - self.codebook_bits)

    def forward(self, ids: Tensor) -> Tensor:  # ids [B] long -> [B, n * sub_dim]
        """The concatenation over ``i`` of row ``m_i(k)`` of codebook ``i`` (codebook 0 first)."""
        idx = self.indices(ids)  # [B, n]
        rows = self.codebooks[torch.arange(self.num_codebooks, device=idx.device), idx]  # [B, n, s]
        return rows.flatten(-2)


def embedding_nbytes(module: nn.Module) -> int:
    """Bytes of ``module``'s parameters (``DenseEmbedding``: ``N * dim * 4`` in float32; ``HashEmbedding``:
    ``n * 2^r * sub_dim * 4``, independent of ``N``)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _largest_divisor_at_most(n: int, most: int) -> int:
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def make_embedding(
    kind: Literal["dense", "hash"], num_objects: int, dim: int, *,
    codebook_bits: int | None = None, num_codebooks: int | None = None, mix: bool = True,
    init_std: float | None = None,
) -> nn.Module:  # fmt: skip
    """A per-object embedding for ``num_objects`` objects of width ``dim`` (supp. B; ``"hash"``: B.3).

    Hash defaults: ``num_codebooks`` = the largest divisor of ``dim`` that is <= 8 (``sub_dim = dim //
    num_codebooks``); ``codebook_bits`` = ``bit_length(num_objects - 1) - 4`` clamped to [4, 16], i.e. about
    ``num_objects / 16`` rows per codebook (hash memory ~1/16 of dense, less above 2^20 objects); ``mix=True``
    (without it consecutive ids collapse, see the module docstring).
    """
    if num_objects < 1 or dim < 1:
        raise ValueError(f"an embedding needs num_objects >= 1 and dim >= 1, got {num_objects} and {dim}")
    if kind == "dense":
        if codebook_bits is not None or num_codebooks is not None:
            raise ValueError("codebook_bits / num_codebooks apply to kind='hash' only; drop them for 'dense'")
        return DenseEmbedding(num_objects, dim, init_std)
    if kind != "hash":
        raise ValueError(f"unknown embedding kind {kind!r}: use 'dense' or 'hash'")
    if num_objects > 1 << 32:
        raise ValueError(f"hash ids are taken mod 2^32, so {num_objects} objects would alias; use <= 2^32 objects")
    n = _largest_divisor_at_most(dim, 8) if num_codebooks is None else num_codebooks
    if n < 1 or dim % n:
        raise ValueError(f"num_codebooks={n} must be >= 1 and divide dim={dim} (each codebook holds dim // n)")
    r = min(max((num_objects - 1).bit_length() - 4, 4), 16) if codebook_bits is None else codebook_bits
    if not 1 <= r <= 32:
        raise ValueError(f"codebook_bits={r} must be in [1, 32]: indices are the top r bits of a 32-bit hash")
    return HashEmbedding(n, r, dim // n, init_std, mix=mix)
