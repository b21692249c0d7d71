"""NF-LDM's scene auto-encoder (`latent3d train scene-ae`): the grid does not depend on where the world's origin is,
a rendered wall lies at its z-depth, training on procedural episodes learns (held-out frames far better than the
untrained net), the run folder holds what the issue names and its model reloads to the same renders, and bad data
is one line before any training."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from typer.testing import CliRunner

from latent3d.cli import app
from latent3d.errors import UserError
from latent3d.io.image import load_image
from latent3d.metrics.image import psnr
from latent3d.render.camera import intrinsics_from_fov, look_at
from latent3d.systems.nfldm.config import SceneAEConfig
from latent3d.systems.nfldm.episodes import pooled_depth, read_episodes
from latent3d.systems.nfldm.scene_ae import SceneAutoencoder
from latent3d.systems.nfldm.train_scene_ae import load_scene_ae

SMALL = dict(width=16, features=8, depth_bins=12, grid=(16, 16, 4), samples=24)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "eps"
    res = CliRunner().invoke(app, ["data", "scenes", "--out", str(out), "--episodes", "2", "--frames", "12",
                                   "--size", "64", "--seed", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def _translate(viewmats, t):  # world-to-camera of the same cameras in a world moved by t
    T = torch.eye(4)
    T[:3, 3] = -t
    return viewmats @ T


@pytest.mark.numerics
def test_the_grid_moves_with_the_world(episodes):
    cfg = SceneAEConfig(**SMALL)
    torch.manual_seed(0)
    model = SceneAutoencoder(cfg).eval()
    ep = read_episodes(episodes, cfg)[0]
    t = torch.tensor([3.25, -1.5, 0.75])
    with torch.no_grad():
        a = model.encode(ep.images[:6], ep.viewmats[:6], ep.Ks[:6], ep.bbox_min, ep.bbox_max)
        b = model.encode(ep.images[:6], _translate(ep.viewmats[:6], t), ep.Ks[:6], ep.bbox_min + t, ep.bbox_max + t)
    assert float(a[-1].abs().max()) > 0.01  # the frames reach the grid
    torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-3)


def test_a_rendered_wall_lies_at_its_z_depth():
    """A dense slab filling x >= 6 of the box: every pixel of a camera at x = 2 looking along +x sees it at
    z-depth 4 (not at the ray length, which grows towards the image corners)."""
    cfg = SceneAEConfig(**SMALL, downsample=1)
    model = SceneAutoencoder(cfg).eval()
    lo, hi = torch.tensor([0.0, 0.0, -4.0]), torch.tensor([8.0, 8.0, 6.0])  # the wall fills a 60 degree view
    grid = torch.zeros(cfg.features + 1, *cfg.grid)
    grid[-1, 12:] = 200.0  # voxels 12..15 of 16 along x: x in [6, 8]
    eye = torch.tensor([[2.0, 4.0, 1.5]])
    viewmats = look_at(eye, eye + torch.tensor([1.0, 0, 0]))
    K = intrinsics_from_fov(math.radians(60), 24, 24)[None]
    with torch.no_grad():
        r = model.render(grid, lo, hi, viewmats, K, 24, 24)
    assert float(r.occupancy.min()) > 0.99
    # trilinear interpolation ramps the density up over the half voxel before the slab: the surface is within it
    assert float((r.depth - 4.0).abs().max()) < 0.25
    assert float(r.depth.max() - r.depth.min()) < 0.05  # z-depth is the same at the corners as at the centre


@pytest.mark.numerics
def test_training_learns_and_writes_the_run_folder(episodes, tmp_path):
    cfg = SceneAEConfig(**SMALL, holdout=4)
    eps = read_episodes(episodes, cfg)
    torch.manual_seed(0)
    untrained = SceneAutoencoder(cfg).eval()
    run = tmp_path / "run"
    args = ["train", "scene-ae", "--data", str(episodes), "--out", str(run), "--holdout", "4", "--steps", "150",
            "--width", "16", "--features", "8", "--depth-bins", "12", "--grid", "16,16,4", "--samples", "24",
            "--views-in", "6", "--views-out", "2", "--lr", "3e-3"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((run / "eval.json").read_text())
    model = load_scene_ae(run)
    errors = {"grid": [], "empty": []}  # L1 on the pixels whose surface lies in the box, per episode
    for ep in eps:
        assert ep.held == [3, 7, 11]
        tr, held = torch.tensor(ep.train), torch.tensor(ep.held)
        renders = {}
        for name, net in (("untrained", untrained), ("trained", model)):
            with torch.no_grad():
                grid = net.encode(ep.images[tr], ep.viewmats[tr], ep.Ks[tr], ep.bbox_min, ep.bbox_max)
                renders[name] = net.render(grid, ep.bbox_min, ep.bbox_max, ep.viewmats[held], ep.Ks[held], 64, 64)
        target = ep.images[held].permute(0, 2, 3, 1)
        trained = psnr(renders["trained"].rgb.permute(0, 2, 3, 1), target)
        assert trained > psnr(renders["untrained"].rgb.permute(0, 2, 3, 1), target) + 3.0
        gt = pooled_depth(ep.depths[held], cfg.downsample)
        surface = gt < renders["trained"].exit  # the first surface lies in the box: the grid must be opaque there
        assert float(renders["trained"].occupancy[surface].mean()) > 0.6
        with torch.no_grad():
            empty = model.render(grid * 0, ep.bbox_min, ep.bbox_max, ep.viewmats[held], ep.Ks[held], 64, 64)
        on = surface.repeat_interleave(cfg.downsample, 1).repeat_interleave(cfg.downsample, 2)  # [V, H, W]
        for k, v in (("grid", renders["trained"].rgb), ("empty", empty.rgb)):
            errors[k].append(float((v.permute(0, 2, 3, 1) - target).abs()[on].mean()))
        assert report["episodes"][ep.name]["psnr"] == pytest.approx(trained, abs=1e-3)
        for k, i in enumerate(ep.held):  # heldout/<episode>/<frame file>: the reloaded model's render, 8-bit
            saved = torch.as_tensor(load_image(run / "heldout" / ep.name / ep.files[i]))
            assert saved.shape == (64, 64, 3)
            assert float((saved - renders["trained"].rgb[k].permute(1, 2, 0)).abs().max()) <= 1 / 255 + 1e-6
    # the surfaces come from the grid, not from the ray's elevation alone (an open floor nearly does: hence the mean)
    assert sum(errors["empty"]) > 2 * sum(errors["grid"])
    assert set(report["mean"]) == {"psnr", "ssim", "depth_absrel"}
    assert report["mean"]["depth_absrel"] < 0.5
    card = (run / "model" / "MODEL_CARD.md").read_text()
    assert "latent3d train scene-ae" in card and "Held-out frames: PSNR" in card


def _invoke(args):
    res = CliRunner().invoke(app, args)  # a UserError leaves CliRunner as the exception (main() prints it, exit 2)
    assert isinstance(res.exception, UserError) or res.exit_code == 2, res.output
    return res


def test_bad_data_is_one_line_before_training(episodes, tmp_path):
    out = str(tmp_path / "run")
    res = _invoke(["train", "scene-ae", "--data", str(tmp_path), "--out", out])
    assert isinstance(res.exception, UserError) and "no episode folders" in str(res.exception)
    res = _invoke(["train", "scene-ae", "--data", str(episodes), "--out", out, "--near", "5", "--far", "4"])
    assert "--near 5 must be below --far 4" in str(res.exception) + res.output
    res = _invoke(["train", "scene-ae", "--data", str(episodes), "--out", out, "--box", "7,2"])
    assert "3 comma-separated" in res.output
    # an episode without depth images
    bare = tmp_path / "bare" / "ep"
    shutil.copytree(episodes / "episode_000", bare)
    doc = json.loads((episodes / "episode_000" / "transforms.json").read_text())
    for f in doc["frames"]:
        f.pop("depth_file_path", None)
    doc.pop("depth_file_path", None)
    (bare / "transforms.json").write_text(json.dumps(doc))
    res = _invoke(["train", "scene-ae", "--data", str(bare.parent), "--out", out])
    assert isinstance(res.exception, UserError) and "no depth" in str(res.exception)
    assert not (tmp_path / "run").exists()


def test_loading_something_else_is_one_line(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"latent3d": {"kind": "latent3d autodecoder",
                                                                              "format": 1}}))  # fmt: skip
    (tmp_path / "model" / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="not a 'latent3d scene autoencoder'"):
        load_scene_ae(tmp_path)
