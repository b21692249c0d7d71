"""EWA projection (``render/project.py``) against hand computations: non-square intrinsics and the 1.3x field-of-view
clamp of the projection Jacobian (issue 12, item 5).

Everything runs in float64 (``project_gaussians`` follows its inputs' dtype). Values are O(1..1e3) and pass through
~20 float64 operations, so round-off is below 1e-10 relative; ``RTOL = 1e-9`` holds on every CPU, and the errors
looked for (fy used for x, cx ignored by the clamp, the clamp missing or symmetric) change the results by >= 1 %.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from latent3d.render.camera import look_at
from latent3d.render.project import project_gaussians, quat_scale_to_covar
from latent3d.render.rasterize import rasterize

D = torch.float64
RTOL = 1e-9  # float64, see the module docstring
W, H = 40, 30
FX, FY, CX, CY = 30.0, 21.0, 10.0, 21.0  # fx != fy, principal point far off the centre (20, 15) in both axes

pytestmark = pytest.mark.numerics


def _K() -> torch.Tensor:
    return torch.tensor([[[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]]], dtype=D)


def _random_covars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g, dtype=D)
    scales = torch.rand(n, 3, generator=g, dtype=D) * 0.3 + 0.05
    return quats, scales, quat_scale_to_covar(quats, scales)


def _hand_ewa(p_cam: torch.Tensor, cov_cam: torch.Tensor, x_for_J: float, y_for_J: float, fx: float = FX,
              fy: float = FY, eps2d: float = 0.3):
    """Zwicker et al. 2002 / Kerbl et al. 2023 Eq. 5 written out: J = d(u, v) / d(x, y, z) of u = fx x / z + cx,
    v = fy y / z + cy at (x_for_J, y_for_J, z), cov2d = J Sigma_cam J^T + eps2d I. Returns (mean2d, cov2d)."""
    x, y, z = p_cam.tolist()
    J = torch.tensor([[fx / z, 0.0, -fx * x_for_J / z**2], [0.0, fy / z, -fy * y_for_J / z**2]], dtype=D)
    cov2d = J @ cov_cam @ J.T + eps2d * torch.eye(2, dtype=D)
    return torch.tensor([fx * x / z + CX, fy * y / z + CY], dtype=D), cov2d


def _conic(cov2d: torch.Tensor) -> torch.Tensor:
    inv = torch.linalg.inv(cov2d)
    return torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]])


def test_non_square_intrinsics_match_the_ewa_closed_form():
    """Means, conics, radii and compensations of anisotropic, rotated Gaussians seen by a rotated camera with
    fx != fy and an off-centre principal point, against J W Sigma W^T J^T with fx and fy in their own rows."""
    V = look_at(torch.tensor([[0.4, -3.0, 1.1]]), torch.tensor([[0.1, 0.2, -0.1]]), dtype=D)
    R, t = V[0, :3, :3], V[0, :3, 3]
    g = torch.Generator().manual_seed(1)
    n = 8
    # camera-space means well inside the frustum (|x / z| <= 0.35, |y / z| <= 0.3): the clamp is inactive
    z = torch.rand(n, generator=g, dtype=D) * 2.0 + 2.0
    p_cam = torch.stack([(torch.rand(n, generator=g, dtype=D) - 0.5) * 0.7 * z,
                         (torch.rand(n, generator=g, dtype=D) - 0.5) * 0.6 * z, z], -1)  # fmt: skip
    means = (p_cam - t) @ R  # world
    _, _, covars = _random_covars(n, seed=2)
    proj = project_gaussians(means, covars, V, _K(), W, H, calc_compensations=True)
    assert proj.means2d.dtype == D
    for i in range(n):
        cov_cam = R @ covars[i] @ R.T
        m2, c2 = _hand_ewa(p_cam[i], cov_cam, float(p_cam[i, 0]), float(p_cam[i, 1]))
        assert_close(proj.means2d[0, i], m2, rtol=RTOL, atol=0)
        assert_close(proj.depths[0, i], p_cam[i, 2], rtol=RTOL, atol=0)
        assert_close(proj.conics[0, i], _conic(c2), rtol=RTOL, atol=RTOL * float(_conic(c2).abs().max()))
        # radius: ceil(3 sqrt(lambda_max)) with gsplat's floor of 0.1 on the eigenvalue half-gap
        mid, det = 0.5 * float(c2[0, 0] + c2[1, 1]), float(torch.linalg.det(c2))
        lam = mid + math.sqrt(max(mid * mid - det, 0.01))
        assert int(proj.radii[0, i]) == math.ceil(3.0 * math.sqrt(lam))
        det0 = float(torch.linalg.det(c2 - 0.3 * torch.eye(2, dtype=D)))
        assert_close(proj.compensations[0, i], torch.tensor(math.sqrt(det0 / det), dtype=D), rtol=RTOL, atol=0)
    # the test has power: with fx and fy swapped, or one focal length for both axes, every Gaussian's conic moves
    # by far more than RTOL
    for fx, fy in ((FY, FX), (FX, FX), (FY, FY)):
        for i in range(n):
            wrong = _conic(_hand_ewa(p_cam[i], R @ covars[i] @ R.T, float(p_cam[i, 0]), float(p_cam[i, 1]), fx, fy)[1])
            assert float((wrong - proj.conics[0, i]).abs().max()) > 0.01 * float(proj.conics[0, i].abs().max())


def _clamp_hand(x: float, y: float, z: float) -> tuple[float, float]:
    """gsplat ``_persp_proj`` / 3DGS ``computeCov2D``: the mean used for J is clamped to the image extent plus 0.3x
    the half field of view on each side, measured from the principal point (limits in units of x / z):
    lim_x+ = (W - cx) / fx + 0.3 tan(fovx / 2), lim_x- = cx / fx + 0.3 tan(fovx / 2), tan(fovx / 2) = W / (2 fx);
    same for y with H, cy, fy. (For a centred principal point these are 1.3 tan(fov / 2) of INRIA's code.)"""
    tan_x, tan_y = 0.5 * W / FX, 0.5 * H / FY
    lim_xp, lim_xn = (W - CX) / FX + 0.3 * tan_x, CX / FX + 0.3 * tan_x
    lim_yp, lim_yn = (H - CY) / FY + 0.3 * tan_y, CY / FY + 0.3 * tan_y
    return z * min(max(x / z, -lim_xn), lim_xp), z * min(max(y / z, -lim_yn), lim_yp)


@pytest.mark.parametrize(
    "slope, active",
    [
        ((1.6, 0.1), "x+"),  # far right: x/z = 1.6 > lim_x+ = 30/30 + 0.2 = 1.2
        ((-1.2, -0.2), "x-"),  # far left: -1.2 < -lim_x- = -(10/30 + 0.2) = -0.533
        ((0.2, 1.3), "y+"),  # far below: 1.3 > lim_y+ = 9/21 + 0.214 = 0.643
        ((-0.1, -1.5), "y-"),  # far above: -1.5 < -lim_y- = -(21/21 + 0.214) = -1.214
        ((1.5, -1.6), "x+y-"),  # both axes clamped
        ((1.1, 0.6), "none"),  # off the image (u = 43 > W, v = 33.6 > H) but inside the 0.3 margin: not clamped
    ],
)  # fmt: skip
def test_fov_clamp_of_the_jacobian_matches_hand_computation(slope, active):
    """A big Gaussian off the side of the image: its 2D covariance uses J at the clamped mean (3DGS Sec. 6 / gsplat),
    while its 2D mean is the true projection. Checked against the clamp written out above, and (when the clamp is
    active) against the unclamped EWA covariance, which must differ."""
    z = 3.0
    x, y = slope[0] * z, slope[1] * z
    p_cam = torch.tensor([x, y, z], dtype=D)
    quats, scales, _ = _random_covars(1, seed=5)
    scales = scales * 4.0  # 0.2..1.4 m at 3 m: radii of 10..60 px, so that the 3-sigma box still reaches the image
    cov = quat_scale_to_covar(quats, scales)
    V = torch.eye(4, dtype=D)[None]  # world = camera: Sigma_cam = Sigma
    proj = project_gaussians(p_cam[None], cov, V, _K(), W, H)
    xc, yc = _clamp_hand(x, y, z)
    assert ("x" in active) == (xc != x) and ("y" in active) == (yc != y)  # the case is what its name says
    m2, c2 = _hand_ewa(p_cam, cov[0], xc, yc)
    assert_close(proj.means2d[0, 0], m2, rtol=RTOL, atol=0)  # the mean itself is never clamped
    assert_close(proj.conics[0, 0], _conic(c2), rtol=RTOL, atol=RTOL * float(_conic(c2).abs().max()))
    def gap(other: torch.Tensor) -> float:  # relative difference of the (undilated) 2D covariances
        eye = 0.3 * torch.eye(2, dtype=D)
        return float((other - c2).norm() / (c2 - eye).norm())

    c2_free = _hand_ewa(p_cam, cov[0], x, y)[1]
    if active == "none":
        assert gap(c2_free) == 0.0
    else:
        assert gap(c2_free) > 0.05, gap(c2_free)  # the clamp matters: a missing clamp fails the check above
        # and so would a clamp of +-1.3 tan(fov / 2) about the image centre (ignoring cx, cy)
        lim_c = 1.3 * 0.5 * torch.tensor([W / FX, H / FY], dtype=D)
        xs, ys = (z * torch.clamp(torch.tensor([x, y], dtype=D) / z, -lim_c, lim_c)).tolist()
        assert gap(_hand_ewa(p_cam, cov[0], xs, ys)[1]) > 0.01, gap(_hand_ewa(p_cam, cov[0], xs, ys)[1])
    # the rasterizer uses exactly this projection: the Gaussian is drawn (3-sigma box overlaps the image) with
    # alpha = o exp(-power) of the clamped conic at a pixel inside the image
    o = 0.8
    img, alpha, meta = rasterize(p_cam[None], quats, scales, torch.tensor([o], dtype=D), torch.ones(1, 3, dtype=D),
                                 V, _K(), W, H, impl="reference")  # fmt: skip
    assert int(meta["radii"][0, 0]) > 0
    a, b, c = _conic(c2).tolist()
    col = min(max(math.floor(float(m2[0])), 0), W - 1)  # the image pixel nearest to the (maybe off-image) mean
    row = min(max(math.floor(float(m2[1])), 0), H - 1)
    dx, dy = col + 0.5 - float(m2[0]), row + 0.5 - float(m2[1])
    power = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    want = o * math.exp(-power)
    assert want > 2.0 / 255.0  # the pixel is really drawn (not skipped below alpha 1/255)
    assert_close(alpha[0, row, col, 0], torch.tensor(want, dtype=D), rtol=RTOL, atol=0)
