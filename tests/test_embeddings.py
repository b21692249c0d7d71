"""Per-object embeddings (3DVADER supp. B.3): hash indices against plain Python ints, the concatenation of codebook
rows, sharing / distinctness, sparse gradients, memory, and make_embedding's defaults and errors."""

import pytest
import torch

from latent3d.nets.embeddings import DenseEmbedding, HashEmbedding, embedding_nbytes, make_embedding

KS = [0, 1, 2, 12345, 2**31 + 7, 2**32 - 1]


def m_ref(i: int, k: int, r: int) -> int:
    """The paper's m_i(k) in Python's unbounded ints."""
    return (((2**31 + 2 * i * i + 1) * k) % 2**32) >> (32 - r)


def fmix32_ref(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    return h ^ (h >> 16)


@pytest.mark.parametrize("r", [1, 4, 10, 20])
@pytest.mark.parametrize("first_i", [1, 0, 40000])  # 40000: a_i > 2^32, reduced mod 2^32 inside
def test_hash_indices_are_the_papers_formula(r, first_i):
    emb = HashEmbedding(3, r, 2, first_i=first_i) if r <= 10 else HashEmbedding(3, r, 1, first_i=first_i)
    idx = emb.indices(torch.tensor(KS))
    assert idx.dtype == torch.long and idx.shape == (len(KS), 3)
    ref = [[m_ref(i, k, r) for i in range(first_i, first_i + 3)] for k in KS]
    assert idx.tolist() == ref
    assert int(idx.min()) >= 0 and int(idx.max()) < 2**r
    # hand-checked values (r = 10, i = 1, a_1 = 2^31 + 3): 12345 * a_1 mod 2^32 = 2^31 + 37035 -> 512
    if r == 10 and first_i == 1:
        # and (2^31 + 7) a_1 = 2^62 + 10 * 2^31 + 21 = 21 mod 2^32 -> 0
        assert idx[KS.index(12345), 0] == 512 and idx[KS.index(2**31 + 7), 0] == 0


def test_mixed_indices_match_python_and_spread_consecutive_ids():
    emb = HashEmbedding(4, 8, 2, mix=True)
    ref = [[fmix32_ref(((2**31 + 2 * i * i + 1) * k) % 2**32) >> 24 for i in range(1, 5)] for k in KS]
    assert emb.indices(torch.tensor(KS)).tolist() == ref
    ids = torch.arange(1000)
    paper = {tuple(t) for t in HashEmbedding(4, 8, 2).indices(ids).tolist()}
    mixed = emb.indices(ids)
    assert len(paper) == 2  # the formula as written: consecutive ids collapse by parity (module docstring)
    assert len({tuple(t) for t in mixed.tolist()}) == 1000
    for i in range(4):  # each codebook spreads 1000 ids over its 256 rows (a uniform hash leaves ~5 empty)
        assert mixed[:, i].unique().numel() > 230


@pytest.mark.parametrize("mix", [False, True])
def test_hash_forward_is_the_concatenation_of_codebook_rows(mix):
    torch.manual_seed(0)
    emb = HashEmbedding(3, 5, 4, mix=mix)
    ids = torch.tensor(KS)
    out = emb(ids)
    assert out.shape == (len(KS), 12) and emb.dim == 12
    idx = emb.indices(ids)
    ref = torch.stack([torch.cat([emb.codebooks[i, idx[b, i]] for i in range(3)]) for b in range(len(KS))])
    assert torch.equal(out, ref)


def test_shared_indices_share_the_vector_and_others_differ():
    torch.manual_seed(0)
    emb = HashEmbedding(2, 12, 3)
    ids = torch.arange(0, 2**32, 2**32 // 97, dtype=torch.long)[:64]  # spread ids so that some, not all, collide
    ids = torch.cat([ids, torch.tensor([2])])  # 2 shares every index with ids[0] = 0 (parity collapse)
    assert ids.unique().numel() == ids.numel()
    idx, out = emb.indices(ids), emb(ids)
    same = (idx[:, None] == idx[None]).all(-1)  # [B, B]
    eq = (out[:, None] == out[None]).all(-1)
    assert same[0, -1] and (~same).any()
    assert torch.equal(same, eq)  # random float rows: equal vectors exactly when all indices agree


def test_gradient_reaches_only_the_rows_used():
    torch.manual_seed(0)
    emb = HashEmbedding(3, 6, 2, mix=True)
    ids = torch.tensor([5, 17, 12345])
    (emb(ids) * torch.randn(3, 6)).sum().backward()
    used = torch.zeros(3, 64, dtype=torch.bool)
    idx = emb.indices(ids)
    for i in range(3):
        used[i, idx[:, i]] = True
    touched = emb.codebooks.grad.abs().sum(-1) > 0  # [n, 2^r]
    assert torch.equal(touched, used)


def test_dense_embedding_rows_and_gradient():
    torch.manual_seed(0)
    emb = DenseEmbedding(10, 16)
    ids = torch.tensor([3, 3, 7])
    out = emb(ids)
    assert out.shape == (3, 16) and torch.equal(out[0], emb.weight[3]) and torch.equal(out[2], emb.weight[7])
    out.sum().backward()
    rows = (emb.weight.grad.abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert rows == [3, 7] and torch.all(emb.weight.grad[3] == 2)
    assert 0.15 < float(DenseEmbedding(4000, 16).weight.detach().std()) < 0.35  # 1 / sqrt(16) = 0.25


def test_embedding_nbytes():
    for n in (10, 1000, 10**5):
        assert embedding_nbytes(make_embedding("dense", n, 32)) == n * 32 * 4
        assert embedding_nbytes(make_embedding("hash", n, 32, codebook_bits=6, num_codebooks=4)) == 4 * 2**6 * 8 * 4
    assert embedding_nbytes(HashEmbedding(2, 3, 5).double()) == 2 * 8 * 5 * 8


def test_make_embedding_defaults():
    e = make_embedding("hash", 5000, 1024)
    assert isinstance(e, HashEmbedding) and e.mix and e.dim == 1024
    assert (e.num_codebooks, e.sub_dim, e.codebook_bits) == (8, 128, 9)
    big = make_embedding("hash", 10**6, 64)
    assert (big.num_codebooks, big.sub_dim, big.codebook_bits) == (8, 8, 16)  # 2^16 rows: capped
    assert embedding_nbytes(big) * 15 < 10**6 * 64 * 4  # a fraction of the dense table
    small = make_embedding("hash", 5, 12)
    assert (small.num_codebooks, small.sub_dim, small.codebook_bits) == (6, 2, 4)
    assert make_embedding("hash", 4000, 64).codebook_bits == 8  # ~ N / 16 rows
    assert len({tuple(t) for t in small.indices(torch.arange(5)).tolist()}) == 5
    assert isinstance(make_embedding("dense", 5, 12), DenseEmbedding)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="hash", num_objects=10, dim=12, num_codebooks=5), "divide dim"),
        (dict(kind="hash", num_objects=10, dim=12, codebook_bits=33), r"\[1, 32\]"),
        (dict(kind="hash", num_objects=10, dim=12, codebook_bits=0), r"\[1, 32\]"),
        (dict(kind="hash", num_objects=2**32 + 1, dim=12), "alias"),
        (dict(kind="dense", num_objects=0, dim=12), "num_objects >= 1"),
        (dict(kind="dense", num_objects=10, dim=12, codebook_bits=4), "hash' only"),
        (dict(kind="sparse", num_objects=10, dim=12), "unknown embedding kind"),
    ],
)
def test_make_embedding_rejects_impossible_settings(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        make_embedding(**kwargs)
    assert "\n" not in str(e.value)
