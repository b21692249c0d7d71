"""Cameras: hand-checked cases of the OpenCV / z-up convention and the converters at the borders."""

import math

import torch
from torch.testing import assert_close

from latent3d.render import camera as cam

ATOL = 1e-5  # float32 geometry


def apply(viewmat, p):
    return (viewmat[:3, :3] @ torch.as_tensor(p, dtype=torch.float32)) + viewmat[:3, 3]


def test_look_at_hand_checked():
    # Camera 4 m in front (-y) of the origin, looking at it, world z up.
    V = cam.look_at(torch.tensor([0.0, -4.0, 0.0]), torch.zeros(3))
    assert_close(apply(V, [0, 0, 0]), torch.tensor([0.0, 0.0, 4.0]), atol=ATOL, rtol=0)  # straight ahead, 4 m
    assert_close(apply(V, [1, 0, 0]), torch.tensor([1.0, 0.0, 4.0]), atol=ATOL, rtol=0)  # world +x is image right
    assert_close(apply(V, [0, 0, 1]), torch.tensor([0.0, -1.0, 4.0]), atol=ATOL, rtol=0)  # world up is image up (-y)
    assert_close(V[:3, :3] @ V[:3, :3].T, torch.eye(3), atol=ATOL, rtol=0)
    assert abs(torch.linalg.det(V[:3, :3]).item() - 1.0) < ATOL  # proper rotation, not a reflection


def test_look_at_straight_down_is_still_a_rotation():
    V = cam.look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3))
    assert_close(apply(V, [0, 0, 0]), torch.tensor([0.0, 0.0, 3.0]), atol=ATOL, rtol=0)
    assert abs(torch.linalg.det(V[:3, :3]).item() - 1.0) < ATOL


def test_intrinsics_projection_and_fov_round_trip():
    K = cam.intrinsics_from_fov(math.radians(90.0), 64, 32)
    # 90 deg vertical fov on a 32-px-high image: f = 16; principal point at the centre.
    assert_close(K, torch.tensor([[16.0, 0, 32], [0, 16.0, 16], [0, 0, 1]]), atol=ATOL, rtol=0)
    assert abs(cam.fov_from_intrinsics(K, 32).item() - math.pi / 2) < 1e-6
    V = torch.eye(4)[None]
    uv, z = cam.project_points(torch.tensor([[0.0, 0.0, 2.0], [1.0, -2.0, 2.0]]), V, K[None])
    assert_close(uv[0], torch.tensor([[32.0, 16.0], [40.0, 0.0]]), atol=ATOL, rtol=0)  # 16*1/2=8 right, 16*2/2=16 up
    assert_close(z[0], torch.tensor([2.0, 2.0]))


def test_orbit_front_view_and_radius():
    V, K = cam.orbit_cameras(radius=5.0, elevation_deg=0.0, azimuth_deg=0.0, fov_y=0.5, width=8, height=8)
    c2w = cam.rigid_inverse(V[0])
    assert_close(c2w[:3, 3], torch.tensor([5.0, 0.0, 0.0]), atol=ATOL, rtol=0)  # azimuth 0 = on the +x axis
    assert_close(c2w[:3, 2], torch.tensor([-1.0, 0.0, 0.0]), atol=ATOL, rtol=0)  # looking back at the origin
    V2, _ = cam.orbit_cameras(5.0, 30.0, 90.0, 0.5, 8, 8)
    eye = cam.rigid_inverse(V2[0])[:3, 3]
    assert_close(eye, torch.tensor([0.0, 5 * math.cos(math.pi / 6), 2.5]), atol=ATOL, rtol=0)


def test_sample_orbit_ranges_and_seed():
    g = torch.Generator().manual_seed(0)
    s = cam.sample_orbit_cameras(64, 32, 32, generator=g)
    assert s.radius.min() >= 5.2 and s.radius.max() <= 5.5
    assert s.elevation_deg.min() >= -15 and s.elevation_deg.max() <= 45
    assert s.fov_y.min() >= 0.32 and s.fov_y.max() <= 0.60
    eyes = cam.rigid_inverse(s.viewmats)[:, :3, 3]
    assert_close(eyes.norm(dim=-1), s.radius, atol=1e-4, rtol=0)
    # stratified azimuths: sorted gaps are exactly 360/n
    gaps = torch.diff(torch.sort(torch.remainder(s.azimuth_deg, 360.0)).values)
    assert_close(gaps, torch.full_like(gaps, 360.0 / 64), atol=1e-3, rtol=0)
    s2 = cam.sample_orbit_cameras(64, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.viewmats, s2.viewmats)


def test_pixel_rays_hit_their_pixels():
    V, K = cam.orbit_cameras(4.0, 20.0, 35.0, 0.7, 12, 10)
    o, d = cam.pixel_rays(V, K, 12, 10, normalize=False)
    pts = (o + 2.5 * d).reshape(-1, 3)  # points at z-depth 2.5
    uv, z = cam.project_points(pts, V, K)
    jj, ii = torch.meshgrid(torch.arange(12) + 0.5, torch.arange(10) + 0.5, indexing="xy")
    assert_close(uv[0], torch.stack([jj, ii], -1).reshape(-1, 2).float(), atol=1e-4, rtol=0)
    assert_close(z[0], torch.full((120,), 2.5), atol=1e-5, rtol=0)
    _, dn = cam.pixel_rays(V, K, 12, 10)
    assert_close(dn.norm(dim=-1), torch.ones(1, 10, 12))


def test_equirect_directions_hand_checked_and_inverse():
    W, H = 8, 4
    d = cam.equirect_directions(W, H)
    # column 4 has lon = 2*pi*4.5/8 - pi = pi/8: a little right of +x, i.e. towards -y
    lon = math.pi / 8
    lat = math.pi / 2 - math.pi * 0.5 / 4  # row 0
    assert_close(d[0, 4], torch.tensor([math.cos(lat) * math.cos(lon), -math.cos(lat) * math.sin(lon), math.sin(lat)]))
    assert d[0, :, 2].min() > 0.9 and d[-1, :, 2].max() < -0.9  # top looks up, bottom down
    # centre of the image (between columns 3 and 4, rows 1 and 2) looks along +x exactly
    assert_close(cam.direction_to_equirect(torch.tensor([1.0, 0.0, 0.0]), W, H), torch.tensor([4.0, 2.0]))
    assert_close(cam.direction_to_equirect(torch.tensor([0.0, -1.0, 0.0]), W, H), torch.tensor([6.0, 2.0]))  # right
    jj, ii = torch.meshgrid(torch.arange(W) + 0.5, torch.arange(H) + 0.5, indexing="xy")
    assert_close(cam.direction_to_equirect(d, W, H), torch.stack([jj, ii], -1).float(), atol=1e-4, rtol=0)


def test_nerfstudio_round_trip_and_axes():
    # An OpenGL camera at (0, 0, 3) with identity rotation looks down world -z; a point at the origin is in front.
    c2w_gl = torch.eye(4)
    c2w_gl[2, 3] = 3.0
    V = cam.viewmats_from_nerfstudio(c2w_gl[None])
    assert_close(apply(V[0], [0, 0, 0]), torch.tensor([0.0, 0.0, 3.0]), atol=ATOL, rtol=0)  # +z forward
    assert_close(apply(V[0], [0, 1, 0]), torch.tensor([0.0, -1.0, 3.0]), atol=ATOL, rtol=0)  # GL up = image up
    assert_close(cam.nerfstudio_from_viewmats(V), c2w_gl[None], atol=ATOL, rtol=0)
    assert_close(cam.viewmats_from_nerfstudio(c2w_gl[None, :3]), V)  # 3x4 input


def test_inria_converter():
    V = cam.look_at(torch.tensor([1.0, -3.0, 2.0]), torch.tensor([0.2, 0.1, 0.0]))
    R_inria, T_inria = V[:3, :3].T, V[:3, 3]  # what INRIA's Camera would hold for this COLMAP pose
    assert_close(cam.viewmats_from_inria(R_inria, T_inria), V)


def test_rigid_inverse():
    V = cam.look_at(torch.tensor([[1.0, -3.0, 2.0], [0.5, 4.0, -1.0]]), torch.zeros(2, 3))
    assert_close(cam.rigid_inverse(V), torch.linalg.inv(V), atol=1e-5, rtol=0)


def test_camera_centers():
    eyes = torch.tensor([[1.0, -3.0, 2.0], [0.5, 4.0, -1.0]])
    assert_close(cam.camera_centers(cam.look_at(eyes, torch.zeros(2, 3))), eyes, atol=1e-5, rtol=0)
