"""FID / KID / Chamfer COV-MMD / nearest distances against closed forms and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latent3d.metrics.generation import (
    chamfer_distance,
    chamfer_matrix,
    coverage_mmd,
    feature_stats,
    fid_from_stats,
    frechet_distance,
    kernel_inception_distance,
    nearest_distances,
)

D = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: threading overhead dominates on shared cores
    yield
    torch.set_num_threads(n)


def _with_sample_stats(rng, n: int, mu: np.ndarray, cov: np.ndarray) -> np.ndarray:  # -> [n, D]
    """Samples whose *sample* mean is exactly ``mu`` and unbiased sample covariance exactly ``cov``."""
    z = rng.standard_normal((n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # np.cov(z) == I
    return z @ np.linalg.cholesky(cov).T + mu


def _random_rotation(rng, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------------------------------------------- FID


def test_fid_matches_scipy_sqrtm_reference():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    d = 6
    la, lb = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    x = rng.standard_normal((400, d)) @ la.T + rng.standard_normal(d)
    y = rng.standard_normal((300, d)) @ lb.T + rng.standard_normal(d)
    sa, sb = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real)
    got = frechet_distance(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(ref, rel=1e-9)
    assert ref > 1.0  # a real difference, not a near-zero comparison
    mu, s = feature_stats(x)  # numpy in, unbiased normaliser as np.cov
    torch.testing.assert_close(s, torch.from_numpy(sa))
    assert fid_from_stats(mu, s, *feature_stats(y)) == pytest.approx(got, rel=1e-12)


def test_fid_closed_form_diagonal_and_commuting_gaussians():
    rng = np.random.default_rng(1)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 3.0, 0.0])
    va, vb = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # diagonal: |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2 = 9 + (4 + 1 + 0) = 14
    x, y = _with_sample_stats(rng, 50, mu_a, np.diag(va)), _with_sample_stats(rng, 80, mu_b, np.diag(vb))
    assert frechet_distance(x, y) == pytest.approx(14.0, rel=1e-10)
    # commuting covariances Q diag Q^T: the trace term is still sum (sqrt(a) - sqrt(b))^2
    q = _random_rotation(rng, 3)
    x = _with_sample_stats(rng, 50, mu_a, q @ np.diag(va) @ q.T)
    y = _with_sample_stats(rng, 80, mu_b, q @ np.diag(vb) @ q.T)
    assert frechet_distance(x, y) == pytest.approx(14.0, rel=1e-10)
    # 1-D: (m_a - m_b)^2 + (s_a - s_b)^2 with ddof=1 std (a biased normaliser would give a different number)
    u, w = rng.normal(0.0, 1.0, (30, 1)), rng.normal(2.0, 3.0, (40, 1))
    ref = (u.mean() - w.mean()) ** 2 + (u.std(ddof=1) - w.std(ddof=1)) ** 2
    assert frechet_distance(u, w) == pytest.approx(ref, rel=1e-10)
    assert abs(ref - ((u.mean() - w.mean()) ** 2 + (u.std() - w.std()) ** 2)) > 1e-3


def test_fid_self_translation_rotation():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((200, 8)) * np.linspace(0.5, 2.0, 8))
    y = torch.from_numpy(rng.standard_normal((150, 8)) + 0.3)
    assert abs(frechet_distance(x, x)) < 1e-10
    low_rank = torch.from_numpy(rng.standard_normal((6, 16)))  # N < D: singular covariance, eigh path stays real
    assert abs(frechet_distance(low_rank, low_rank)) < 1e-10
    v = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 0.0, 0.0, 1.0], dtype=torch.float64)  # |v|^2 = 15.25
    assert frechet_distance(x, x + v) == pytest.approx(15.25, rel=1e-10)
    base = frechet_distance(x, y)
    assert frechet_distance(x + v, y + v) == pytest.approx(base, rel=1e-10)
    q = torch.from_numpy(_random_rotation(rng, 8))
    assert frechet_distance(x @ q, y @ q) == pytest.approx(base, rel=1e-10)


# ---------------------------------------------------------------------------------------------------- KID


def _mmd2_double_loop(x: np.ndarray, y: np.ndarray) -> float:
    n, d = x.shape
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
    return kxx + kyy - 2.0 * kxy


def test_kid_equals_hand_written_unbiased_mmd_without_subsampling():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((12, 4)), rng.standard_normal((12, 4)) * 1.5 + 0.5
    ref = _mmd2_double_loop(x, y)
    mean, std = kernel_inception_distance(torch.from_numpy(x), torch.from_numpy(y), subsets=1, subset_size=1000)
    assert mean == pytest.approx(ref, rel=1e-12)
    assert abs(ref) > 1e-2 and std == 0.0
    # with subsampling: mean / std (ddof 0) over subsets of 5 rows, drawn a-then-b per subset from the generator
    g = torch.Generator().manual_seed(0)
    m3, s3 = kernel_inception_distance(x, y, subsets=3, subset_size=5, generator=g)
    g = torch.Generator().manual_seed(0)
    subsets = [(x[torch.randperm(12, generator=g)[:5]], y[torch.randperm(12, generator=g)[:5]]) for _ in range(3)]
    vals = [_mmd2_double_loop(xs, ys) for xs, ys in subsets]
    assert m3 == pytest.approx(np.mean(vals), rel=1e-12) and s3 == pytest.approx(np.std(vals), rel=1e-10)


def test_kid_near_zero_for_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))

    def kid(shift: float) -> float:
        return kernel_inception_distance(x, y + shift, subsets=20, subset_size=200,
                                         generator=torch.Generator().manual_seed(0))[0]  # fmt: skip

    k0, k1, k2 = kid(0.0), kid(0.25), kid(0.5)
    assert 0.0 < k1 < k2
    assert abs(k0) < 0.1 * k1  # unbiased: centred on 0, far below a quarter-sigma shift


# ---------------------------------------------------------------------------------------------------- Chamfer


def _chamfer_brute(a: np.ndarray, b: np.ndarray) -> float:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # explicit differences, no |a|^2+|b|^2-2ab expansion
    return float(d.min(1).mean() + d.min(0).mean())


def test_chamfer_closed_forms():
    rng = np.random.default_rng(5)
    pts = torch.from_numpy(rng.uniform(-1, 1, (300, 3)))
    assert abs(chamfer_distance(pts, pts)) < 1e-12
    a, b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[4.0, 6.0, 3.0]])  # d = 5: d^2 both ways = 2 * 25
    assert chamfer_distance(a, b) == pytest.approx(50.0, rel=1e-12)
    # {0, e1} vs {0}: a->b mean(0, 1) = 0.5, b->a 0: per-direction means, not sums
    assert chamfer_distance(torch.tensor([[0.0, 0, 0], [1.0, 0, 0]]), torch.zeros(1, 3)) == pytest.approx(0.5)


def test_chamfer_matches_brute_force_and_chunking():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(-1, 1, (37, 3)) + 5.0, rng.normal(5.0, 0.5, (53, 3))
    ref = _chamfer_brute(a, b)
    assert chamfer_distance(a, b) == pytest.approx(ref, rel=1e-12)
    assert chamfer_distance(a, b, max_elems=60) == pytest.approx(ref, rel=1e-12)  # P chunked by 1
    far = np.array([1e3, -2e3, 1.5e3])  # the common shift keeps |a|^2 + |b|^2 - 2 a.b exact enough far from 0
    assert chamfer_distance(a + far, b + far) == pytest.approx(_chamfer_brute(a + far, b + far), rel=1e-10)
    A, B = rng.uniform(-1, 1, (3, 20, 3)), rng.uniform(-1, 1, (4, 25, 3)) * np.array([1.0, 2.0, 0.5])
    ref = np.array([[_chamfer_brute(p, q) for q in B] for p in A])
    for max_elems in (2**22, 30, 1200):  # one chunk / P chunks of 1 / 2 B clouds per chunk, P unchunked
        np.testing.assert_allclose(chamfer_matrix(torch.from_numpy(A), B, max_elems).numpy(), ref, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------- COV / MMD


def test_coverage_mmd_hand_made():
    dist = torch.tensor([[0.1, 0.5, 0.9, 0.7],  # rows: 3 samples, columns: 4 references
                         [0.2, 0.4, 0.8, 0.6],
                         [0.3, 0.6, 1.0, 0.5]])  # fmt: skip
    out = coverage_mmd(dist)  # every sample's nearest reference is 0 -> COV 1/4
    assert out["cov"] == pytest.approx(0.25)
    assert out["mmd"] == pytest.approx((0.1 + 0.4 + 0.8 + 0.5) / 4)  # column minima
    out = coverage_mmd(torch.tensor([[0.0, 2.0, 3.0], [2.0, 0.5, 3.0], [4.0, 1.5, 1.0]]))  # argmins 0, 1, 2
    assert out["cov"] == pytest.approx(1.0) and out["mmd"] == pytest.approx((0.0 + 0.5 + 1.0) / 3)
    out = coverage_mmd(torch.tensor([[0.3, 0.2], [0.1, 0.9]]).numpy())  # argmins 1, 0: COV 1; minima 0.1, 0.2
    assert out["cov"] == pytest.approx(1.0) and out["mmd"] == pytest.approx(0.15)


# ---------------------------------------------------------------------------------------------------- nearest


def test_nearest_distances_exclude_self():
    t, direction = torch.tensor([0.0, 1.0, 3.0, 7.0], dtype=D), torch.tensor([0.6, 0.8, 0.0], dtype=D)
    line = t[:, None] * direction + torch.tensor([3712.3, -12157.9, 8301.7], dtype=D)
    # far from the origin: without the common shift, |q|^2 + |r|^2 - 2 q.r loses ~1e-8 relative here
    assert torch.all(nearest_distances(line, line) == 0)
    want = torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(nearest_distances(line, line, exclude_self=True), want, rtol=1e-10, atol=0)
    torch.testing.assert_close(nearest_distances(line, line, exclude_self=True, max_elems=4), want, rtol=1e-10, atol=0)
    q, r = torch.zeros(1, 3), torch.tensor([[3.0, 4.0, 0.0], [6.0, 8.0, 0.0]])
    assert float(nearest_distances(q, r)[0]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="one set"):
        nearest_distances(q, r, exclude_self=True)
    assert math.isfinite(float(nearest_distances(r, r, exclude_self=True).max()))
