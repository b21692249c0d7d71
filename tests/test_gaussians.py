"""Gaussian model: activations, initialisers, PLY round trip, rendering of the DC colour.

Precision (issue 12): activations are compared with the very same torch op (bitwise), float32 round trips with
k * eps32 bounds from tests/tolerances.py (k = the number of roundings, stated at each), the render in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from latent3d.io.ply import GaussianPLY, read_gaussian_ply
from latent3d.render.camera import orbit_cameras
from latent3d.render.gaussians import GaussianModel, knn_mean_sq_dist
from latent3d.render.sh import SH_C0
from tolerances import EPS32, assert_close_f32


def _model(n: int = 50, degree: int = 3, seed: int = 0) -> GaussianModel:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return GaussianModel(
        torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) - 3, torch.randn(n, 4, generator=g),
        torch.randn(n, generator=g), torch.randn(n, k, 3, generator=g),
    )  # fmt: skip


def test_activations_as_in_3dgs():
    m = _model()
    assert torch.equal(m.scales, torch.exp(m.log_scales))  # the same op: bitwise
    assert torch.equal(m.opacities, torch.sigmoid(m.opacity_logits))
    assert_close_f32(m.rotations.norm(dim=-1), torch.ones(m.num), 8, "|q|")  # q / |q|, then |.|: ~8 roundings
    assert m.sh.shape == (50, 16, 3) and m.sh_degree == 3
    assert {n for n, _ in m.named_parameters()} == set(GaussianModel.param_names)


def test_ply_round_trip_is_exact(tmp_path):
    for degree in (0, 1, 3):
        m = _model(37, degree, seed=degree)
        path = m.save_ply(tmp_path / f"g{degree}.ply")
        back = GaussianModel.from_ply(path)
        for name in GaussianModel.param_names:
            assert torch.equal(getattr(back, name), getattr(m, name)), name
        assert back.sh_degree == degree
        g = read_gaussian_ply(path)
        assert isinstance(g, GaussianPLY) and g.num == 37


def test_ply_dc_convention_rgb_equals_half_plus_c0_fdc(tmp_path):
    rgb = torch.tensor([[0.25, 0.5, 1.0]])
    m = GaussianModel.from_points(torch.zeros(1, 3), rgb, sh_degree=1)
    g = m.to_ply()
    # (rgb - 0.5) / C0 then 0.5 + C0 * f: 4 float32 roundings of values <= 1 -> k = 4
    assert_close_f32(torch.from_numpy(0.5 + SH_C0 * g.sh[:, 0]), rgb, 4, "rgb")
    assert g.sh.shape == (1, 4, 3) and float(abs(g.sh[:, 1:]).max()) == 0.0
    # sigmoid(log(o / (1 - o))): 4 roundings, the log's absolute error ~2 eps32 becomes a relative one -> k = 8
    assert_close_f32(torch.sigmoid(torch.from_numpy(g.opacity_logits)), torch.tensor([0.1]), 8, "opacity")
    assert g.quats.tolist() == [[1.0, 0.0, 0.0, 0.0]]


@pytest.mark.numerics
def test_from_points_scale_is_nearest_neighbour_spacing():
    s = torch.arange(6, dtype=torch.float32) * 0.2
    pts = torch.stack(torch.meshgrid(s, s, s, indexing="ij"), -1).reshape(-1, 3)
    m = GaussianModel.from_points(pts, (torch.rand(pts.shape[0], 3) * 255).to(torch.uint8), sh_degree=0)
    # interior points: 3 nearest neighbours all at 0.2. cdist on > 25 points uses |a|^2 + |b|^2 - 2 a.b: terms up to
    # |p|^2 = 3 with ~3 roundings each cancel down to d^2 = 0.04, so d^2 carries ~12 * 3 eps32 absolute = 900 eps32
    # relative error, the scale sqrt(d^2) half of it: k = 512 of 0.2 (6e-5 relative; a neighbour at the wrong
    # distance, e.g. the diagonal 0.28, or the point itself at 0, is off by >= 0.03)
    interior = ((pts > 0.1) & (pts < 0.9)).all(-1)
    assert_close_f32(m.scales[interior], torch.full((int(interior.sum()), 3), 0.2), 512, "knn scale")
    # chunking changes only the blocking of cdist: both within that error of the float64 distances (k = 1024 of
    # d^2 = 0.04 for the mean of 3 such squared distances)
    ref = knn_mean_sq_dist(pts.double())
    assert_close_f32(knn_mean_sq_dist(pts, chunk=50), ref, 1024, "chunked knn")
    assert_close_f32(knn_mean_sq_dist(pts), ref, 1024, "knn")
    # |f_dc| <= 0.5 / C0 for colours in [0, 1]: (rgb - 0.5) / C0 is 2 roundings of a value <= 1.8
    assert float(m.sh_dc.detach().abs().max()) <= 0.5 / SH_C0 * (1 + 4 * EPS32)


def test_random_initialisers_stay_in_their_volume():
    g = torch.Generator().manual_seed(0)
    sph = GaussianModel.random(2000, extent=2.0, shape="sphere", sh_degree=2, generator=g)
    # radius r u^(1/3) times a unit direction: ~8 float32 roundings of values <= 2
    assert float(sph.means.detach().norm(dim=-1).max()) <= 2.0 * (1 + 8 * EPS32) and sph.sh.shape == (2000, 9, 3)
    # uniform in the ball: about (1/2)^3 of the points inside half the radius. Binomial(2000, 1/8) has standard
    # deviation sqrt(0.125 * 0.875 / 2000) = 0.0074; 0.03 is 4 sigma (and the seeded draw is fixed), while a
    # uniform-in-radius sampler gives 0.5 and a surface sampler 0
    assert abs(float((sph.means.detach().norm(dim=-1) < 1.0).float().mean()) - 0.125) < 0.03
    box = GaussianModel.random(2000, extent=0.5, shape="box", sh_degree=0, generator=g)
    assert float(box.means.detach().abs().max()) <= 0.5
    # exp(log(.)) of the spacing: the log's absolute error (~8 eps32 of a log of magnitude ~5) becomes relative
    assert math.isclose(float(box.scales.detach()[0, 0]), 0.5 * (1.0 / 2000) ** (1 / 3), rel_tol=64 * EPS32)


@pytest.mark.numerics
def test_model_render_degree0_colour_and_gradients():
    """The model's render in float64 (``.double()``): colour and alpha at the centre pixel are the closed forms to
    round-off (1e-12; a wrong DC convention or opacity activation is off by >= 0.01)."""
    rgb = torch.tensor([[0.9, 0.2, 0.4]])
    m = GaussianModel.from_points(torch.zeros(1, 3), rgb, sh_degree=3, opacity=0.5).double()
    m.log_scales.data.fill_(math.log(0.3))
    m.active_sh_degree = 0
    V, K = orbit_cameras(3.0, 20.0, [0.0, 120.0], 0.6, 17, 17, dtype=torch.float64)
    K[:, :2, 2] = 8.5
    img, alpha, meta = m.render(V, K, 17, 17)
    assert img.dtype == torch.float64
    # the DC coefficient was made in float32 by from_points (k = 4 of rgb, as above); the render is 0.5 + C0 f_dc
    want = 0.5 + SH_C0 * m.sh_dc.detach()[:, 0]
    assert_close_f32(want, rgb, 4, "f_dc")
    torch.testing.assert_close(img[:, 8, 8] / alpha[:, 8, 8], want.expand(2, 3), rtol=0, atol=1e-12)
    torch.testing.assert_close(alpha[:, 8, 8, 0], torch.full((2,), 0.5, dtype=torch.float64), rtol=0,
                               atol=8 * EPS32)  # logit(0.5) = 0 was computed in float32: |logit| <= 8 eps32
    img.sum().backward()
    for name in ("means", "log_scales", "opacity_logits", "sh_dc"):
        assert getattr(m, name).grad is not None and torch.isfinite(getattr(m, name).grad).all()
