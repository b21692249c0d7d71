"""Cameras: hand-checked cases of the OpenCV / z-up convention and the converters at the borders.

Precision (issue 12): the geometry is checked in float64 (``dtype=torch.float64`` of ``look_at``, ``orbit_cameras``,
``intrinsics_from_fov``, ``equirect_directions``; ``pixel_rays`` / ``project_points`` follow their inputs). The values
are O(1..100) and go through a handful of float64 operations, so the round-off is below 1e-13; ``TOL = 1e-10`` holds
on any CPU and kernel set, while every convention error these tests look for (a flipped axis, fx/fy or cx/cy swapped,
a missing +0.5 pixel offset) is O(0.1..10).
"""

import math

import pytest
import torch
from torch.testing import assert_close

from latent3d.render import camera as cam
from tolerances import f32_atol

D = torch.float64
TOL = 1e-10  # float64 geometry, see the module docstring

pytestmark = pytest.mark.numerics


def close(a, b, tol=TOL):
    assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=tol, rtol=0)


def apply(viewmat, p):
    return (viewmat[:3, :3] @ torch.as_tensor(p, dtype=viewmat.dtype)) + viewmat[:3, 3]


def test_look_at_hand_checked():
    # Camera 4 m in front (-y) of the origin, looking at it, world z up.
    V = cam.look_at(torch.tensor([0.0, -4.0, 0.0]), torch.zeros(3), dtype=D)
    assert V.dtype == D  # double precision all the way through
    close(apply(V, [0, 0, 0]), [0.0, 0.0, 4.0])  # straight ahead, 4 m
    close(apply(V, [1, 0, 0]), [1.0, 0.0, 4.0])  # world +x is image right
    close(apply(V, [0, 0, 1]), [0.0, -1.0, 4.0])  # world up is image up (-y)
    close(V[:3, :3] @ V[:3, :3].T, torch.eye(3))
    assert abs(torch.linalg.det(V[:3, :3]).item() - 1.0) < TOL  # proper rotation, not a reflection
    # the float32 default is the same camera to float32 round-off: entries are O(4), ~10 roundings -> k = 16
    V32 = cam.look_at(torch.tensor([0.0, -4.0, 0.0]), torch.zeros(3))
    assert V32.dtype == torch.float32
    close(V32.double(), V, tol=f32_atol(V, 16))


def test_look_at_straight_down_is_still_a_rotation():
    V = cam.look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3), dtype=D)
    close(apply(V, [0, 0, 0]), [0.0, 0.0, 3.0])
    assert abs(torch.linalg.det(V[:3, :3]).item() - 1.0) < TOL


def test_intrinsics_projection_and_fov_round_trip():
    K = cam.intrinsics_from_fov(math.radians(90.0), 64, 32, dtype=D)
    # 90 deg vertical fov on a 32-px-high image: f = 16; principal point at the centre.
    close(K, [[16.0, 0, 32], [0, 16.0, 16], [0, 0, 1]])
    assert abs(cam.fov_from_intrinsics(K, 32).item() - math.pi / 2) < TOL
    V = torch.eye(4, dtype=D)[None]
    uv, z = cam.project_points(torch.tensor([[0.0, 0.0, 2.0], [1.0, -2.0, 2.0]], dtype=D), V, K[None])
    close(uv[0], [[32.0, 16.0], [40.0, 0.0]])  # 16*1/2=8 right, 16*2/2=16 up
    close(z[0], [2.0, 2.0])


# non-square pixels and an off-centre principal point (issue 12, item 5): fx != fy, cx != W/2, cy != H/2, W != H,
# so that swapping fx/fy, cx/cy or width/height anywhere changes the numbers by O(1) pixels
FX, FY, CX, CY, W_NS, H_NS = 13.0, 7.5, 4.2, 6.9, 12, 10


def _K_nonsquare() -> torch.Tensor:
    return torch.tensor([[[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]]], dtype=D)


def test_project_points_non_square_intrinsics_closed_form():
    """u = fx x / z + cx, v = fy y / z + cy for camera-space (x, y, z), through a rotated, translated camera."""
    V = cam.look_at(torch.tensor([[1.0, -3.0, 2.0]]), torch.tensor([[0.2, 0.1, 0.0]]), dtype=D)
    g = torch.Generator().manual_seed(0)
    p_cam = torch.rand(20, 3, generator=g, dtype=D) * torch.tensor([2.0, 2.0, 3.0], dtype=D) - torch.tensor(
        [1.0, 1.0, -0.5], dtype=D
    )  # x, y in [-1, 1], z in [0.5, 3.5]
    R, t = V[0, :3, :3], V[0, :3, 3]
    p_world = (p_cam - t) @ R  # R^T (p_cam - t)
    uv, z = cam.project_points(p_world, V, _K_nonsquare())
    x, y, zc = p_cam.unbind(-1)
    close(uv[0], torch.stack([FX * x / zc + CX, FY * y / zc + CY], -1))
    close(z[0], zc)


def test_pixel_rays_non_square_intrinsics_closed_form_and_round_trip():
    """The ray of pixel (row i, column j) has camera-space direction ((j + .5 - cx) / fx, (i + .5 - cy) / fy, 1),
    starts at the camera centre, and every point on it projects back into that pixel's centre."""
    V = cam.look_at(torch.tensor([[0.5, 2.0, -1.0]]), torch.tensor([[0.0, 0.0, 0.3]]), dtype=D)
    K = _K_nonsquare()
    o, d = cam.pixel_rays(V, K, W_NS, H_NS, normalize=False)
    assert o.dtype == d.dtype == D and d.shape == (1, H_NS, W_NS, 3)
    close(o[0], cam.camera_centers(V)[0].expand(H_NS, W_NS, 3))
    jj, ii = torch.meshgrid(torch.arange(W_NS, dtype=D) + 0.5, torch.arange(H_NS, dtype=D) + 0.5, indexing="xy")
    d_cam_expected = torch.stack([(jj - CX) / FX, (ii - CY) / FY, torch.ones_like(jj)], -1)
    d_cam = torch.einsum("ij,hwj->hwi", V[0, :3, :3], d[0])  # world -> camera rotation
    close(d_cam, d_cam_expected)
    for depth in (0.7, 2.5):
        uv, z = cam.project_points((o + depth * d).reshape(-1, 3), V, K)
        close(uv[0], torch.stack([jj, ii], -1).reshape(-1, 2))
        close(z[0], torch.full((H_NS * W_NS,), depth, dtype=D))
    _, dn = cam.pixel_rays(V, K, W_NS, H_NS)
    close(dn.norm(dim=-1), torch.ones(1, H_NS, W_NS))
    close(dn, torch.nn.functional.normalize(d, dim=-1))


def test_orbit_front_view_and_radius():
    V, K = cam.orbit_cameras(radius=5.0, elevation_deg=0.0, azimuth_deg=0.0, fov_y=0.5, width=8, height=8, dtype=D)
    assert V.dtype == K.dtype == D
    c2w = cam.rigid_inverse(V[0])
    close(c2w[:3, 3], [5.0, 0.0, 0.0])  # azimuth 0 = on the +x axis
    close(c2w[:3, 2], [-1.0, 0.0, 0.0])  # looking back at the origin
    V2, _ = cam.orbit_cameras(5.0, 30.0, 90.0, 0.5, 8, 8, dtype=D)
    eye = cam.rigid_inverse(V2[0])[:3, 3]
    close(eye, [0.0, 5 * math.cos(math.pi / 6), 2.5])


def test_sample_orbit_ranges_and_seed():
    g = torch.Generator().manual_seed(0)
    s = cam.sample_orbit_cameras(64, 32, 32, generator=g)  # float32, as training uses it
    assert s.radius.min() >= 5.2 and s.radius.max() <= 5.5
    assert s.elevation_deg.min() >= -15 and s.elevation_deg.max() <= 45
    assert s.fov_y.min() >= 0.32 and s.fov_y.max() <= 0.60
    eyes = cam.rigid_inverse(s.viewmats)[:, :3, 3]
    # |eye| = radius up to float32 round-off: the eye goes through cos/sin products, look_at (t = -R eye) and
    # rigid_inverse (-R^T t), ~16 roundings of O(|r|) values -> k = 16 (a wrong radius is off by >= 0.01)
    close(eyes.norm(dim=-1), s.radius, tol=f32_atol(s.radius, 16))
    # stratified azimuths: sorted gaps are exactly 360/n. Each azimuth is lo + (hi - lo) (u + i) / n followed by two
    # remainders, ~6 float32 roundings of values up to 540 deg per azimuth, two azimuths per gap -> 16 eps32 * 540
    # (1e-3 deg); unstratified (uniform) azimuths would have gaps differing by degrees.
    gaps = torch.diff(torch.sort(torch.remainder(s.azimuth_deg, 360.0)).values)
    close(gaps, torch.full_like(gaps, 360.0 / 64), tol=f32_atol(torch.tensor(540.0), 16))
    s2 = cam.sample_orbit_cameras(64, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.viewmats, s2.viewmats)


def test_pixel_rays_hit_their_pixels():
    V, K = cam.orbit_cameras(4.0, 20.0, 35.0, 0.7, 12, 10, dtype=D)
    o, d = cam.pixel_rays(V, K, 12, 10, normalize=False)
    pts = (o + 2.5 * d).reshape(-1, 3)  # points at z-depth 2.5
    uv, z = cam.project_points(pts, V, K)
    jj, ii = torch.meshgrid(torch.arange(12) + 0.5, torch.arange(10) + 0.5, indexing="xy")
    close(uv[0], torch.stack([jj, ii], -1).reshape(-1, 2))
    close(z[0], torch.full((120,), 2.5))
    _, dn = cam.pixel_rays(V, K, 12, 10)
    close(dn.norm(dim=-1), torch.ones(1, 10, 12))


def test_equirect_directions_hand_checked_and_inverse():
    W, H = 8, 4
    d = cam.equirect_directions(W, H, dtype=D)
    # column 4 has lon = 2*pi*4.5/8 - pi = pi/8: a little right of +x, i.e. towards -y
    lon = math.pi / 8
    lat = math.pi / 2 - math.pi * 0.5 / 4  # row 0
    close(d[0, 4], [math.cos(lat) * math.cos(lon), -math.cos(lat) * math.sin(lon), math.sin(lat)])
    assert d[0, :, 2].min() > 0.9 and d[-1, :, 2].max() < -0.9  # top looks up, bottom down
    # centre of the image (between columns 3 and 4, rows 1 and 2) looks along +x exactly
    close(cam.direction_to_equirect(torch.tensor([1.0, 0.0, 0.0], dtype=D), W, H), [4.0, 2.0])
    close(cam.direction_to_equirect(torch.tensor([0.0, -1.0, 0.0], dtype=D), W, H), [6.0, 2.0])  # right
    jj, ii = torch.meshgrid(torch.arange(W) + 0.5, torch.arange(H) + 0.5, indexing="xy")
    close(cam.direction_to_equirect(d, W, H), torch.stack([jj, ii], -1))


def test_nerfstudio_round_trip_and_axes():
    # An OpenGL camera at (0, 0, 3) with identity rotation looks down world -z; a point at the origin is in front.
    # Entries are 0, +-1 and 3: every product and sum below is exact in float32, so equality is required.
    c2w_gl = torch.eye(4)
    c2w_gl[2, 3] = 3.0
    V = cam.viewmats_from_nerfstudio(c2w_gl[None])
    assert torch.equal(apply(V[0], [0, 0, 0]), torch.tensor([0.0, 0.0, 3.0]))  # +z forward
    assert torch.equal(apply(V[0], [0, 1, 0]), torch.tensor([0.0, -1.0, 3.0]))  # GL up = image up
    assert torch.equal(cam.nerfstudio_from_viewmats(V), c2w_gl[None])
    assert torch.equal(cam.viewmats_from_nerfstudio(c2w_gl[None, :3]), V)  # 3x4 input


def test_inria_converter():
    V = cam.look_at(torch.tensor([1.0, -3.0, 2.0]), torch.tensor([0.2, 0.1, 0.0]))
    R_inria, T_inria = V[:3, :3].T, V[:3, 3]  # what INRIA's Camera would hold for this COLMAP pose
    assert torch.equal(cam.viewmats_from_inria(R_inria, T_inria), V)  # a transpose and copies: exact


def test_rigid_inverse():
    V = cam.look_at(torch.tensor([[1.0, -3.0, 2.0], [0.5, 4.0, -1.0]]), torch.zeros(2, 3), dtype=D)
    close(cam.rigid_inverse(V), torch.linalg.inv(V))
    close(cam.rigid_inverse(V) @ V, torch.eye(4, dtype=D).expand(2, 4, 4))


def test_camera_centers():
    eyes = torch.tensor([[1.0, -3.0, 2.0], [0.5, 4.0, -1.0]], dtype=D)
    close(cam.camera_centers(cam.look_at(eyes, torch.zeros(2, 3), dtype=D)), eyes)
