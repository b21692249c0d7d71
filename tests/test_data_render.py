"""Procedural ground-truth renderer: closed-form geometry checks, determinism, scenes, captions."""

import math

import pytest
import torch
from torch.testing import assert_close

from latent3d.data import (
    OBJECT_NAMES, SCENE_KINDS, Light, caption, make_object, make_scene, render_equirect, render_orbit, render_views,
    view_bin,
)
from latent3d.data.primitives import bounds, box, quad, sphere
from latent3d.render.camera import equirect_directions, intrinsics_from_fov, look_at, orbit_cameras, pixel_rays


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: threading overhead dominates on shared CI cores
    yield
    torch.set_num_threads(n)


def test_sphere_depth_and_normals_match_closed_form():
    R, W, H = 0.6, 48, 40
    viewmats, Ks = orbit_cameras(3.0, 20.0, 35.0, 0.8, W, H)
    out = render_views([sphere(R, (0.1, -0.2, 0.05))], viewmats, Ks, W, H)
    o, d = pixel_rays(viewmats, Ks, W, H)  # unit directions
    c = torch.tensor([0.1, -0.2, 0.05])
    oc = o[0] - c
    b = (oc * d[0]).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - R * R)
    t = -b - disc.clamp(min=0).sqrt()
    hit = disc > 0
    assert hit.sum() > 200 and (~hit).sum() > 200
    assert torch.equal(out.hit[0], out.mask[0]) and torch.equal(out.mask[0], torch.isfinite(out.depth[0]))
    # hit pixels agree except rays grazing the silhouette (|disc| tiny)
    clear = disc.abs() > 1e-3
    assert torch.equal(out.hit[0][clear], hit[clear])
    z = t * (d[0] * viewmats[0, 2, :3]).sum(-1)  # camera z = distance * cos(angle to optical axis)
    sel = hit & clear
    assert_close(out.depth[0][sel], z[sel], atol=1e-4, rtol=1e-4)
    assert_close(out.distance[0][sel], t[sel], atol=1e-4, rtol=1e-4)
    n = out.normals[0][sel]
    assert_close(n.norm(dim=-1), torch.ones(n.shape[0]), atol=1e-5, rtol=0)
    p = o[0][sel] + t[sel, None] * d[0][sel]
    assert_close(n, (p - c) / R, atol=1e-3, rtol=0)
    assert (out.normals[0][~out.hit[0]] == 0).all() and torch.isinf(out.depth[0][~out.hit[0]]).all()


def test_ground_plane_depth_matches_closed_form_and_is_background():
    W, H = 32, 32
    viewmats = look_at(torch.tensor([[2.0, 1.0, 1.5]]), torch.tensor([[0.0, 0.0, 1.0]]))
    Ks = intrinsics_from_fov(torch.tensor([1.0]), W, H)
    out = render_views([quad(math.inf, math.inf, foreground=False)], viewmats, Ks, W, H)
    o, d = pixel_rays(viewmats, Ks, W, H, normalize=False)  # camera z of d is 1 -> t is the z-depth
    t = -o[0, ..., 2] / d[0, ..., 2]
    hit = t > 0
    assert hit.any() and (~hit).any()
    assert torch.equal(out.hit[0], hit)
    assert not out.mask.any()  # the ground is not foreground
    assert_close(out.depth[0][hit], t[hit], atol=1e-4, rtol=1e-5)
    assert_close(out.normals[0][hit], torch.tensor([0.0, 0.0, 1.0]).expand(int(hit.sum()), 3))


def test_rotated_box_normals_are_axis_aligned_in_its_frame():
    b = box((0.4, 0.3, 0.2), (0.0, 0.0, 0.0))
    b = b.transformed(1.0, (0.0, 0.0, 0.0), yaw_deg=30.0)
    out = render_orbit([b], [10.0, 100.0, 200.0], 35.0, radius=3.0, width=32, height=32)
    n = out.normals[out.hit]
    assert_close(n.norm(dim=-1), torch.ones(n.shape[0]), atol=1e-5, rtol=0)
    Rt = torch.tensor(b.rot, dtype=torch.float32).T
    local = n @ Rt.T
    assert_close(local.abs().amax(-1), torch.ones(n.shape[0]), atol=1e-4, rtol=0)  # one of +-x, +-y, +-z


def test_equirect_distance_in_room_is_the_analytic_wall_distance():
    scene = make_scene("room", seed=3, n_objects=0)
    lo, hi = bounds([p for p in scene.primitives if p.label in ("floor", "ceiling")])
    eye = torch.tensor([0.3, -0.2, 1.4])
    out = render_equirect(scene, eye, 64, 32)
    d = equirect_directions(64, 32).double()
    lo, hi = lo.double(), hi.double()
    wall = torch.where(d > 0, hi, lo)
    t = ((wall - eye.double()) / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)).amin(-1)
    assert out.hit.all() and not out.mask.any()
    assert_close(out.depth[0].double(), t, atol=1e-4, rtol=1e-5)


def test_pinhole_depth_and_equirect_distance_agree_on_a_shared_ray():
    scene = make_scene("floor", seed=1, n_objects=2)
    eye = torch.tensor([2.5, 0.4, 1.2])
    pano = render_equirect(scene, eye, 64, 32)
    u, v = 32, 20  # a pixel looking forward (+x) and slightly down, at the objects / floor
    d = equirect_directions(64, 32)[v, u]
    W = H = 33  # odd size: the centre pixel's ray is the optical axis
    viewmats = look_at(eye[None], (eye + d)[None])
    Ks = intrinsics_from_fov(torch.tensor([0.6]), W, H)
    pin = render_views(scene, viewmats, Ks, W, H)
    assert torch.isfinite(pano.depth[0, v, u])
    assert_close(pin.depth[0, 16, 16], pano.depth[0, v, u], atol=1e-4, rtol=1e-5)
    _, dirs = pixel_rays(viewmats, Ks, W, H)
    cos = (dirs[0] * viewmats[0, 2, :3]).sum(-1)
    ok = pin.hit[0]
    assert_close(pin.depth[0][ok], pin.distance[0][ok] * cos[ok], atol=1e-4, rtol=1e-5)


def test_objects_fit_the_unit_sphere_face_front_and_render():
    for name in OBJECT_NAMES:
        obj = make_object(name)
        lo, hi = bounds(obj.primitives)
        assert torch.maximum(lo.abs(), hi.abs()).norm() <= 1.0 + 1e-6, name
        assert_close((lo + hi) / 2, torch.zeros(3, dtype=lo.dtype), atol=1e-6, rtol=0)
    snowman = make_object("snowman")
    nose = next(p for p in snowman.primitives if p.label == "nose")
    assert nose.center[0] > 0.2 and abs(nose.center[1]) < 1e-6  # front faces +x
    out = render_orbit(snowman, [0.0, 180.0], 0.0, radius=2.5, width=96, height=96)
    assert out.mask.float().mean() > 0.05
    # the carrot nose points at +x: the front view is orange somewhere, the back view is not
    orange = (out.rgb[..., 0] > 0.5) & (out.rgb[..., 1] > 0.2) & (out.rgb[..., 1] < 0.5) & (out.rgb[..., 2] < 0.2)
    assert orange[0].any() and not orange[1].any()


def test_determinism_and_shape_variation():
    a = make_object("chair", "red", seed=5, variation=0.8)
    b = make_object("chair", "red", seed=5, variation=0.8)
    c = make_object("chair", "red", seed=6, variation=0.8)
    assert a.primitives == b.primitives and a.primitives != c.primitives
    fixed = [make_object("chair", "red", seed=s).primitives for s in (1, 2)]
    assert fixed[0] == fixed[1]  # variation 0: one shape per name
    ra = render_orbit(a, 30.0, 20.0, width=32, height=32)
    rb = render_orbit(b, 30.0, 20.0, width=32, height=32)
    rc = render_orbit(c, 30.0, 20.0, width=32, height=32)
    assert torch.equal(ra.rgb, rb.rgb) and torch.equal(ra.depth, rb.depth)
    assert not torch.equal(ra.mask, rc.mask)
    s1, s2 = make_scene("forest", seed=2), make_scene("forest", seed=2)
    assert s1.primitives == s2.primitives and s1.caption == s2.caption
    assert make_scene("forest", seed=3).primitives != s1.primitives


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_scenes_place_objects_without_overlap(kind):
    s = make_scene(kind, seed=0)
    assert s.caption and s.objects is not None
    obs = s.objects
    assert len(obs) >= 1
    for i in range(len(obs)):  # xy bounding circles are disjoint
        for j in range(i):
            (xi, yi, _), (xj, yj, _) = obs[i]["position"], obs[j]["position"]
            assert math.hypot(xi - xj, yi - yj) >= obs[i]["radius"] + obs[j]["radius"], (obs[i], obs[j])
    fg = [p for p in s.primitives if p.foreground and p.label != "rock"]  # rocks are half buried on purpose
    if fg:
        assert float(bounds(fg)[0][2]) >= -1e-6  # nothing sinks below the floor


def test_scene_mask_marks_objects_not_floor_and_ss_keeps_geometry():
    s = make_scene("floor", seed=0, n_objects=2)
    vm, K = orbit_cameras(4.0, 30.0, 0.0, 0.8, 40, 40)
    r1 = render_views(s, vm, K, 40, 40, ss=1)
    r2 = render_views(s, vm, K, 40, 40, ss=2)
    assert r1.mask.any() and (r1.hit & ~r1.mask).any()
    assert not (r1.mask & ~r1.hit).any()
    assert torch.equal(r1.depth, r2.depth) and torch.equal(r1.mask, r2.mask)
    assert 0 < (r1.rgb - r2.rgb).abs().mean() < 0.05


def test_hard_shadow_under_a_sphere():
    prims = [sphere(0.5, (0, 0, 1.0)), quad(math.inf, math.inf, foreground=False)]
    vm = look_at(torch.tensor([[0.01, 0.0, 5.0]]), torch.zeros(1, 3))
    K = intrinsics_from_fov(torch.tensor([1.2]), 33, 33)
    lit = render_views(prims, vm, K, 33, 33, light=Light(direction=(0.0, 0.4, 1.0)), shadows=False)
    sh = render_views(prims, vm, K, 33, 33, light=Light(direction=(0.0, 0.4, 1.0)), shadows=True)
    floor = sh.hit & ~sh.mask
    darker = (lit.rgb - sh.rgb).sum(-1) > 0.1
    assert (darker & floor).sum() > 5 and not (darker & ~floor).any()


def test_caption_view_bins():
    assert caption("snowman", "red", 90.0, 10.0) == "a red snowman, side view"
    assert caption("chair", "orange", 0.0, 0.0) == "an orange chair, front view"
    assert view_bin(45.0) == "front view" and view_bin(-45.0) == "front view" and view_bin(46.0) == "side view"
    assert view_bin(135.0) == "back view" and view_bin(-135.0) == "back view" and view_bin(180.0) == "back view"
    assert view_bin(-134.0) == "side view" and view_bin(360.0) == "front view" and view_bin(540.0) == "back view"
    assert view_bin(0.0, 61.0) == "overhead view" and view_bin(0.0, 60.0) == "front view"
    s = make_scene("floor", seed=4, n_objects=1)
    o = s.objects[0]
    assert s.caption.startswith(f"a {o['color']} {o['name']} on a ") or s.caption.startswith(f"an {o['color']}")
    assert s.caption.endswith(" floor")
