"""Radiance grid -> assets (latent3d.render.grid_assets) and the volume .npz format (latent3d.io.volume).

An analytic off-centre ball is the ground truth: its density ramps linearly through the default iso-level exactly
at radius r, so the marching-cubes surface is the sphere up to interpolation error; its colours are multilinear in
x, y, z, which trilinear sampling reproduces exactly. Index-to-world is checked end to end (the volume renderer's
silhouette vs the Gaussians' silhouette) and in closed form (one voxel at a known index)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gltf_check import gltf_validator, validate_gltf

from latent3d.errors import UserError
from latent3d.io.volume import read_volume_npz, write_volume_npz
from latent3d.render import grid_assets as ga
from latent3d.render.sh import SH_C0

N, BOX = 32, 1.0
H = 2 * BOX / N  # voxel step
LO, HI = [-BOX] * 3, [BOX] * 3
CENTRE, RADIUS, SLOPE = np.array([0.3, -0.25, 0.15]), 0.4, 100.0


def _colour(p: np.ndarray) -> np.ndarray:  # [..., 3] world -> [..., 3] rgb, multilinear in x, y, z
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    return np.stack([(x + 1) / 2, (1 - y) / 2, 0.5 + 0.4 * x * z], axis=-1)


@pytest.fixture(scope="module")
def ball():
    """density [N, N, N] = max(0, ln2/h + SLOPE (r - |p - c|)) at the voxel centres p, rgb [3, N, N, N]."""
    ctr = -BOX + (np.arange(N) + 0.5) * H
    p = np.stack(np.meshgrid(ctr, ctr, ctr, indexing="ij"), axis=-1)  # [N, N, N, 3], index (i, j, k) = (x, y, z)
    dist = np.linalg.norm(p - CENTRE, axis=-1)
    density = np.maximum(0.0, math.log(2.0) / H + SLOPE * (RADIUS - dist))
    return density, np.moveaxis(_colour(p), -1, 0)


@pytest.mark.numerics
def test_ball_mesh_is_the_sphere_with_its_colours_facing_out(ball):
    density, rgb = ball
    assert ga.default_level(density, LO, HI) == pytest.approx(math.log(2.0) / H)
    v, f, col = ga.grid_mesh(torch.from_numpy(density), torch.from_numpy(rgb), LO, HI)
    assert v.dtype == np.float32 and f.dtype == np.int64 and col.dtype == np.uint8 and len(f) > 1000
    r = np.linalg.norm(v - CENTRE, axis=1)
    assert np.abs(r - RADIUS).max() < 0.25 * H  # measured 0.02 h; a half-voxel index offset gives up to 0.5 h
    # trilinear sampling is exact on a multilinear colour: only the uint8 rounding remains
    assert np.abs(col - _colour(v.astype(np.float64)) * 255).max() <= 0.51  # measured 0.50
    tri = v[f].astype(np.float64)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = (normal * (tri.mean(1) - CENTRE)).sum(1) > 0
    assert outward.mean() > 0.99  # measured 1.0; the opposite winding gives 0.0


@pytest.mark.numerics
def test_grid_points_lie_on_the_sphere(ball):
    density, _ = ball
    pts = ga.grid_points(density, LO, HI, 2048, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (2048, 3) and pts.dtype == torch.float32
    r = np.linalg.norm(pts.double().numpy() - CENTRE, axis=1)
    assert np.abs(r - RADIUS).max() < 0.25 * H  # measured 0.06 h
    d = pts.double().numpy() - CENTRE  # area-uniform on a sphere: every octant holds ~1/8 of the points
    octant = (d[:, 0] > 0) * 4 + (d[:, 1] > 0) * 2 + (d[:, 2] > 0)
    assert np.bincount(octant, minlength=8).min() > 2048 / 8 * 0.7
    again = ga.grid_points(density, LO, HI, 2048, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pts, again)


@pytest.mark.numerics
def test_gaussian_silhouettes_match_the_volume_render(ball):
    """The same grid through render_volume and through grid_gaussians + the rasterizer, from two cameras: the masks
    agree, and a grid read in the wrong axis order (or one voxel off) does not."""
    from latent3d.render.camera import orbit_cameras, pixel_rays
    from latent3d.render.gaussians import GaussianModel
    from latent3d.render.volume import render_volume

    density, rgb = ball
    S = 48
    V, K = orbit_cameras(3.0, torch.tensor([20.0, 75.0]), torch.tensor([30.0, -60.0]), 0.55, S, S)
    o, d = pixel_rays(V, K, S, S)

    def volume_mask(dens: np.ndarray) -> torch.Tensor:  # [2, S, S]
        den = torch.from_numpy(dens).float()[None, None].expand(2, -1, -1, -1, -1)
        fea = torch.from_numpy(rgb).float()[None].expand(2, -1, -1, -1, -1)
        out = render_volume(den, fea, LO, HI, o.reshape(2, -1, 3), d.reshape(2, -1, 3), n_samples=128)
        return out.occupancy.reshape(2, S, S) > 0.5

    g = ga.grid_gaussians(density, rgb, LO, HI)
    _, alpha, _ = GaussianModel.from_gaussian_ply(g).render(V, K, S, S, backend="torch")
    gs = alpha[..., 0] > 0.5

    def iou(a, b):
        return ((a & b).sum((1, 2)) / (a | b).sum((1, 2))).tolist()

    def centroid(m):
        ii, jj = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
        w = m.float()
        return torch.stack([(w * ii).sum((1, 2)), (w * jj).sum((1, 2))], -1) / w.sum((1, 2))[:, None]

    vol = volume_mask(density)
    assert vol.sum() > 1000
    assert min(iou(vol, gs)) > 0.85, iou(vol, gs)  # measured 0.94, 0.93
    shift = (centroid(vol) - centroid(gs)).norm(dim=-1)
    assert shift.max() < 0.6, shift  # pixels; measured 0.19, 0.25
    # the checks can fail: the grid read as (z, y, x) gives IoU 0.61 / 0.66, one voxel along x moves a centroid 1.9 px
    assert min(iou(volume_mask(density.transpose(2, 1, 0).copy()), gs)) < 0.75
    assert (centroid(volume_mask(np.roll(density, 1, axis=0))) - centroid(gs)).norm(dim=-1).max() > 1.0


@pytest.mark.numerics
def test_one_voxel_lands_at_its_world_position():
    """Closed form on an anisotropic box and grid: voxel (i, j, k) is centred at lo + (i + 1/2, j + 1/2, k + 1/2) h.
    Its marching-cubes surface is the octahedron with vertices at centre +- t h_a e_a, t = (D - level) / D (linear
    interpolation towards the zero neighbours); its Gaussian sits at the centre with the voxel's alpha and colour."""
    shape, lo, hi, idx, D = (6, 8, 10), np.array([-1.0, -2.0, 0.5]), np.array([2.0, 0.0, 3.0]), (4, 1, 7), 50.0
    h = (hi - lo) / np.array(shape)
    density = np.zeros(shape)
    density[idx] = D
    rgb = np.zeros((3, *shape))
    rgb[:, idx[0], idx[1], idx[2]] = (0.9, 0.2, 0.6)
    centre = lo + (np.array(idx) + 0.5) * h
    level = math.log(2.0) / h.mean()
    t = (D - level) / D
    v, f, col = ga.grid_mesh(density, rgb, lo, hi)
    want = np.concatenate([centre + t * h * e for e in (np.eye(3), -np.eye(3))])  # [6, 3]
    assert (len(v), len(f)) == (6, 8)
    np.testing.assert_allclose(np.sort(v, axis=0), np.sort(want, axis=0), rtol=0, atol=1e-6)

    g = ga.grid_gaussians(torch.from_numpy(density)[None], rgb, lo, hi)
    assert g.num == 1 and g.sh_degree == 0
    np.testing.assert_allclose(g.means[0], centre, rtol=0, atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-g.opacity_logits[0])), -math.expm1(-D * h.mean()), atol=1e-6)
    np.testing.assert_allclose(np.exp(g.log_scales[0]), [ga.GAUSSIAN_SCALE * h.mean()] * 3, rtol=1e-6)
    np.testing.assert_allclose(g.sh[0, 0], (np.array([0.9, 0.2, 0.6]) - 0.5) / SH_C0, rtol=1e-6)
    np.testing.assert_array_equal(g.quats[0], [1, 0, 0, 0])


def test_gaussians_threshold_cap_and_stay_finite(ball):
    density, rgb = ball
    alpha = -np.expm1(-density * H)
    g = ga.grid_gaussians(density, rgb, LO, HI, min_alpha=0.05)
    assert g.num == int((alpha >= 0.05).sum())
    capped = ga.grid_gaussians(density * 1e6, rgb, LO, HI, max_points=100)  # alpha 1 everywhere inside
    assert capped.num == 100
    for a in (g.means, g.sh, g.opacity_logits, g.log_scales, capped.opacity_logits):
        assert np.isfinite(a).all()
    top = ga.grid_gaussians(density, rgb, LO, HI, max_points=50)
    kept = 1 / (1 + np.exp(-top.opacity_logits.astype(np.float64)))
    assert kept.min() >= np.sort(alpha.reshape(-1))[-50] - 1e-6  # the 50 most opaque voxels
    rgb_back = g.sh[:, 0] * SH_C0 + 0.5
    assert rgb_back.min() >= -1e-6 and rgb_back.max() <= 1 + 1e-6


def test_surface_touching_the_box_is_closed():
    import trimesh

    density = np.full((12, 12, 12), 100.0)
    v, f, _ = ga.grid_mesh(density, np.full((3, 12, 12, 12), 0.5), LO, HI)
    assert np.abs(v).max() <= BOX + 1e-6  # clipped to the box
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight
    assert 0.95 * 8 < mesh.volume <= 8 + 1e-6  # positive: faces wound outward; corners chamfered a little


def test_empty_and_faint_grids():
    empty = np.zeros((8, 8, 8))
    v, f, c = ga.grid_mesh(empty, np.zeros((3, 8, 8, 8)), LO, HI)
    assert v.shape == (0, 3) and f.shape == (0, 3) and c.shape == (0, 3)
    with pytest.raises(ValueError, match="empty"):
        ga.grid_points(empty, LO, HI, 16)
    with pytest.raises(ValueError, match="min_alpha"):
        ga.grid_gaussians(empty, np.zeros((3, 8, 8, 8)), LO, HI)
    faint = np.zeros((8, 8, 8))
    faint[3:5, 3:5, 3:5] = 0.1  # far below ln2/h = 2.8: the level falls back to half the maximum
    assert ga.default_level(faint, LO, HI) == pytest.approx(0.05)
    assert len(ga.grid_mesh(faint, np.zeros((3, 8, 8, 8)), LO, HI)[1]) > 0
    with pytest.raises(ValueError, match="NaN"):
        ga.grid_mesh(np.full((4, 4, 4), np.nan), np.zeros((3, 4, 4, 4)), LO, HI)


def test_ball_glb_passes_khronos_validator(ball, tmp_path):
    import trimesh

    from latent3d.io.mesh import export_mesh, z_up_to_y_up

    cmd = gltf_validator()
    if cmd is None:
        pytest.skip("node or gltf-validator is missing: run `npm ci --prefix tools`")
    density, rgb = ball
    v, f, col = ga.grid_mesh(density, rgb, LO, HI)
    path = export_mesh(tmp_path / "ball.glb", v, f, vertex_colors=col)
    code, report = validate_gltf(path, cmd)
    assert code == 0 and report["numErrors"] == 0, report["messages"]
    assert report["numWarnings"] == 0, report["messages"]
    (mesh,) = trimesh.load(path, process=False).geometry.values()
    np.testing.assert_allclose(mesh.vertices, z_up_to_y_up(v.astype(np.float64)), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mesh.visual.vertex_colors)[:, :3], col)


# ---------------------------------------------------------------------------------------------------------------
# volume .npz


def _volume(n: int = 6, seed: int = 0):
    g = np.random.default_rng(seed)
    return (g.random((n, n, n), dtype=np.float32) * 30, g.random((3, n, n, n), dtype=np.float32),
            np.array([-1.0, -0.5, 0.1]), np.array([1.0, 0.7, 1.3]))  # fmt: skip


def test_volume_npz_round_trips_exactly(tmp_path):
    d, c, lo, hi = _volume()
    path = write_volume_npz(tmp_path / "v.npz", torch.from_numpy(d)[None], c, lo, hi, seed=3, prompt="a chair",
                            scale=0.5, flag=True)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npz"]  # no temp file left
    out = read_volume_npz(path)
    for key, want in (("density", d), ("rgb", c), ("bbox_min", lo), ("bbox_max", hi)):
        np.testing.assert_array_equal(out[key], want)
    assert out["density"].dtype == out["rgb"].dtype == np.float32
    assert (out["axes"], out["up"]) == ("xyz", "+z")
    assert out["meta"] == {"seed": 3, "prompt": "a chair", "scale": 0.5, "flag": True}
    assert type(out["meta"]["seed"]) is int


def test_volume_writer_refuses_bad_arrays(tmp_path):
    d, c, lo, hi = _volume()
    bad = d.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_volume_npz(tmp_path / "v.npz", bad, c, lo, hi)
    with pytest.raises(ValueError, match="rgb"):
        write_volume_npz(tmp_path / "v.npz", d, c[:, :-1], lo, hi)
    with pytest.raises(ValueError, match="meta"):
        write_volume_npz(tmp_path / "v.npz", d, c, lo, hi, cams=[1, 2])
    assert list(tmp_path.iterdir()) == []  # nothing written under the final name


def _bad_files(tmp_path):
    d, c, lo, hi = _volume()
    good = dict(density=d, rgb=c, bbox_min=lo, bbox_max=hi, axes=np.array("xyz"), up=np.array("+z"))
    ok = write_volume_npz(tmp_path / "ok.npz", d, c, lo, hi).read_bytes()
    out = {}

    def save(name, **arrays):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        out[name] = tmp_path / f"{name}.npz"

    (tmp_path / "garbage.npz").write_bytes(b"not a zip at all\n" * 20)
    (tmp_path / "truncated.npz").write_bytes(ok[: len(ok) // 2])
    flipped = bytearray(ok)
    for i in range(200, 260):
        flipped[i] ^= 0xFF  # inside the compressed density member
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    out.update({k: tmp_path / f"{k}.npz" for k in ("garbage", "truncated", "flipped")})
    save("missing_rgb", **{k: v for k, v in good.items() if k != "rgb"})
    save("nan", **{**good, "density": np.where(d > 15, np.nan, d).astype(np.float32)})
    save("wrong_shape", **{**good, "rgb": c[:, :, :, :-1]})
    save("int_density", **{**good, "density": d.astype(np.int32)})
    save("negative", **{**good, "density": d - 100})
    save("object", **{**good, "rgb": np.array([c, "x"], dtype=object)})
    save("other_axes", **{**good, "axes": np.array("zyx")})
    np.save(tmp_path / "plain.npy", d)
    out["plain"] = tmp_path / "plain.npy"
    out["absent"] = tmp_path / "absent.npz"
    return out


WHY = {"garbage": "not a zip", "truncated": "not a readable", "flipped": "not a readable",
       "missing_rgb": "missing array(s) rgb", "nan": "NaN", "wrong_shape": "rgb must be [3, 6, 6, 6]",
       "int_density": "must hold floats", "negative": ">= 0", "object": "not a readable", "other_axes": "axes 'zyx'",
       "plain": ".npy array", "absent": "not found"}  # fmt: skip


def test_volume_reader_turns_every_bad_file_into_one_line(tmp_path):
    files = _bad_files(tmp_path)
    assert set(files) == set(WHY)
    for name, path in files.items():
        with pytest.raises(UserError) as info:
            read_volume_npz(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg and WHY[name] in msg, (name, msg)
