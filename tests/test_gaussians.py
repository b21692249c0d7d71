"""Gaussian model: activations, initialisers, PLY round trip, rendering of the DC colour."""

from __future__ import annotations

import math

import torch

from latent3d.io.ply import GaussianPLY, read_gaussian_ply
from latent3d.render.camera import orbit_cameras
from latent3d.render.gaussians import GaussianModel, knn_mean_sq_dist
from latent3d.render.sh import SH_C0


def _model(n: int = 50, degree: int = 3, seed: int = 0) -> GaussianModel:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return GaussianModel(
        torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) - 3, torch.randn(n, 4, generator=g),
        torch.randn(n, generator=g), torch.randn(n, k, 3, generator=g),
    )  # fmt: skip


def test_activations_as_in_3dgs():
    m = _model()
    torch.testing.assert_close(m.scales, torch.exp(m.log_scales))
    torch.testing.assert_close(m.opacities, torch.sigmoid(m.opacity_logits))
    torch.testing.assert_close(m.rotations.norm(dim=-1), torch.ones(m.num))
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
    torch.testing.assert_close(torch.from_numpy(0.5 + SH_C0 * g.sh[:, 0]), rgb)
    assert g.sh.shape == (1, 4, 3) and float(abs(g.sh[:, 1:]).max()) == 0.0
    torch.testing.assert_close(torch.sigmoid(torch.from_numpy(g.opacity_logits)), torch.tensor([0.1]))
    assert g.quats.tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_from_points_scale_is_nearest_neighbour_spacing():
    s = torch.arange(6, dtype=torch.float32) * 0.2
    pts = torch.stack(torch.meshgrid(s, s, s, indexing="ij"), -1).reshape(-1, 3)
    m = GaussianModel.from_points(pts, (torch.rand(pts.shape[0], 3) * 255).to(torch.uint8), sh_degree=0)
    # interior points: 3 nearest neighbours all at 0.2
    interior = ((pts > 0.1) & (pts < 0.9)).all(-1)
    torch.testing.assert_close(m.scales[interior], torch.full((int(interior.sum()), 3), 0.2), rtol=1e-4, atol=1e-6)
    d = knn_mean_sq_dist(pts, chunk=50)  # chunking does not change the result
    torch.testing.assert_close(d, knn_mean_sq_dist(pts))
    assert float(m.sh_dc.detach().abs().max()) <= 0.5 / SH_C0 + 1e-5


def test_random_initialisers_stay_in_their_volume():
    g = torch.Generator().manual_seed(0)
    sph = GaussianModel.random(2000, extent=2.0, shape="sphere", sh_degree=2, generator=g)
    assert float(sph.means.detach().norm(dim=-1).max()) <= 2.0 + 1e-5 and sph.sh.shape == (2000, 9, 3)
    # uniform in the ball: about (1/2)^3 of the points inside half the radius
    assert abs(float((sph.means.detach().norm(dim=-1) < 1.0).float().mean()) - 0.125) < 0.03
    box = GaussianModel.random(2000, extent=0.5, shape="box", sh_degree=0, generator=g)
    assert float(box.means.detach().abs().max()) <= 0.5
    assert math.isclose(float(box.scales.detach()[0, 0]), 0.5 * (1.0 / 2000) ** (1 / 3), rel_tol=1e-5)


def test_model_render_degree0_colour_and_gradients():
    rgb = torch.tensor([[0.9, 0.2, 0.4]])
    m = GaussianModel.from_points(torch.zeros(1, 3), rgb, sh_degree=3, opacity=0.5)
    m.log_scales.data.fill_(math.log(0.3))
    m.active_sh_degree = 0
    V, K = orbit_cameras(3.0, 20.0, [0.0, 120.0], 0.6, 17, 17)
    K[:, :2, 2] = 8.5
    img, alpha, meta = m.render(V, K, 17, 17)
    torch.testing.assert_close(img[:, 8, 8] / alpha[:, 8, 8], rgb.expand(2, 3), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alpha[:, 8, 8, 0], torch.full((2,), 0.5), rtol=1e-5, atol=1e-6)
    img.sum().backward()
    for name in ("means", "log_scales", "opacity_logits", "sh_dc"):
        assert getattr(m, name).grad is not None and torch.isfinite(getattr(m, name).grad).all()
