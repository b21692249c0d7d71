"""Procedural scene episodes (`latent3d data scenes`, NF-LDM's data): the walking agent keeps clear of objects and
walls, walks forward and turns smoothly, and the written frames are geometrically consistent: reprojecting one
frame into its neighbours through the stored depth, pose and intrinsics matches far better than with the pose of
another frame."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from typer.testing import CliRunner

from latent3d.cli import app
from latent3d.errors import UserError
from latent3d.data.formats.transforms_json import read_transforms_dataset
from latent3d.data.procedural.trajectories import episode_scene, walk
from latent3d.data.procedural.trajectory_config import WALK_KINDS, SceneEpisodesConfig
from latent3d.render.reproject import reprojection_error


@pytest.mark.parametrize("kind", WALK_KINDS)
def test_the_agent_stays_clear_walks_and_turns_smoothly(kind):
    cfg = SceneEpisodesConfig(kinds=(kind,))
    scene = episode_scene(cfg, 1, 0)
    path = walk(scene, 120, cfg.speed, cfg.max_turn, 1)
    for o in scene.objects:  # never inside an object's footprint, never out of the place
        assert float((path.eyes[:, :2] - torch.tensor(o["position"][:2])).norm(dim=1).min()) > o["radius"], o["name"]
    assert float(path.eyes[:, :2].abs().max()) < scene.extent
    forward = path.viewmats()[:, 2, :3]  # the camera's +z axis in world coordinates: along the heading, pitch 0
    torch.testing.assert_close(forward, torch.stack([path.yaws.cos(), path.yaws.sin(), 0 * path.yaws], -1))
    assert torch.all(path.eyes[:, 2] == scene.eye[2])
    step = (path.eyes[1:, :2] - path.eyes[:-1, :2]).norm(dim=1)
    assert float(step.max()) <= cfg.speed + 1e-5  # float32 positions of up to ~15 m: round-off ~4e-6
    turn = torch.remainder(path.yaws[1:] - path.yaws[:-1] + math.pi, 2 * math.pi) - math.pi
    assert float(turn.abs().max()) <= math.radians(cfg.max_turn) * (1 + 1e-5)
    accel = (turn[1:] - turn[:-1]).abs()
    assert float(accel.max()) <= math.radians(cfg.max_turn) / 4 * (1 + 1e-4)  # the turn rate changes smoothly
    # it walks: rooms are crowded (the agent turns in place in a corner now and then), outdoor places open
    assert float((step > 0).float().mean()) >= (0.6 if kind == "room" else 0.95)
    assert float((path.eyes[:, :2] - path.eyes[0, :2]).norm(dim=1).max()) > 1.0


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    args = ["data", "scenes", "--out", str(out), "--episodes", "2", "--frames", "16", "--kinds", "room,forest",
            "--seed", "4"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return out


def test_written_frames_reproject_into_their_neighbours(episodes):
    """Frame j's depth carries frame i's colours (i = j+1, j+3) into frame j with the stored poses: measured error
    0.005-0.010 (forest: thin trunks, sky without depth) against a median 0.04-0.10 with the pose of a frame 4 or more
    frames away; the bound leaves a factor 1.6."""
    for e in range(2):
        ds = read_transforms_dataset(episodes / f"episode_{e:03d}")
        assert len(ds) == 16 and ds.depths is not None and ds.captions is not None
        for j in range(0, 12, 3):
            for i in (j + 1, j + 3):
                args = (ds.images[j], ds.depths[j], ds.viewmats[j], ds.Ks[j])
                good, share = reprojection_error(ds.images[i], ds.viewmats[i], ds.Ks[i], *args)
                bad = [reprojection_error(ds.images[i], ds.viewmats[k], ds.Ks[i], *args)[0] for k in range(16)
                       if abs(k - i) >= 4]  # fmt: skip
                assert share > 0.4, (e, j, i, share)
                assert good < 0.4 * statistics.median(b for b in bad if b == b), (e, j, i, good, bad)


def test_depth_lifts_the_floor_onto_z_0(episodes):
    """The stored z-depth is metric: lifted through the stored pose, the room's floor pixels (the bottom rows, below
    the furniture's height there) land on the plane z = 0 (16-bit depth steps of 2 mm)."""
    from latent3d.render.camera import pixel_rays

    ds = read_transforms_dataset(episodes / "episode_000")
    origins, dirs = pixel_rays(ds.viewmats.double(), ds.Ks.double(), 64, 64, normalize=False)
    z = (origins + ds.depths.double()[..., None] * dirs)[..., 2]  # [N, H, W] height of every pixel's point
    bottom = z[:, -6:]
    assert float(bottom.min()) > -0.01 and float(bottom.median()) < 0.01, (float(bottom.min()), float(bottom.median()))


def test_the_same_seed_writes_the_same_bytes_and_bad_kinds_are_one_line(episodes, tmp_path):
    args = ["data", "scenes", "--out", str(tmp_path / "again"), "--episodes", "2", "--frames", "16", "--kinds",
            "room,forest", "--seed", "4"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    for f in sorted(p for p in episodes.rglob("*") if p.is_file()):
        assert f.read_bytes() == (tmp_path / "again" / f.relative_to(episodes)).read_bytes(), f
    res = CliRunner().invoke(app, ["data", "scenes", "--out", str(tmp_path / "no"), "--kinds", "room,castle"])
    assert isinstance(res.exception, UserError) and "unknown scene kind(s) castle" in str(res.exception)
    assert not (tmp_path / "no").exists()


def test_reprojection_of_a_plane_shifts_by_focal_times_baseline_over_depth():
    """Closed form: a fronto-parallel plane at depth d seen by two cameras a baseline b apart along x: frame j's pixel
    u reads frame i's colour at u - f b / d (f = 32 px, b = 0.3, d = 2: 4.8 px); the colour is a slow sine of the
    column, so bilinear reading is exact to ~1e-3."""
    from latent3d.render.reproject import reproject

    H = W = 64
    K = torch.tensor([[32.0, 0, 32], [0, 32.0, 32], [0, 0, 1]])
    view_j = torch.eye(4)
    view_i = torch.eye(4)
    view_i[0, 3] = -0.3  # camera i stands 0.3 to the right (+x) of camera j: a point moves 4.8 px left in it
    u = torch.arange(W) + 0.5
    colour = lambda cols: torch.sin(2 * math.pi * cols / 40.0)  # noqa: E731
    image_i = colour(u).expand(H, W)[..., None].expand(H, W, 3).contiguous()
    warped, valid = reproject(image_i, view_i, K, torch.full((H, W), 2.0), view_j, K)
    expect = colour(u - 32 * 0.3 / 2.0).expand(H, W)
    assert valid[:, 5:].all() and not valid[:, :4].any()  # frame j's left edge falls outside camera i's image
    assert float((warped[..., 0] - expect)[valid].abs().max()) < 2e-3
