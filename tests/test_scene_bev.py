"""NF-LDM's BEV-conditioned synthesis (Kim et al. 2023, Sec. 4.3): episode maps (format round trip, resampling into a
box against closed forms, the procedural scenes' exact footprints and VizDoom's sectors against where the walker
went), maps as PNGs in a model's colours (round trip, refusals), the map conditioning of psi_c / psi_f (the empty
map is the unconditional input, dropout draws), and ``latent3d scene --bev`` end to end on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from latent3d.cli import app
from latent3d.data.formats.bev import BevRaster, grid_to_image, image_to_grid, read_episode_bev
from latent3d.errors import UserError
from latent3d.io.image import save_image
from latent3d.systems.nfldm.bev import (BevVocabulary, bev_agreement, bev_map_image, read_bev, solid_columns,
                                        trajectory_fit)  # fmt: skip
from latent3d.systems.nfldm.config import SceneAEConfig

DIFF_ARGS = ["--mlp-width", "32", "--mlp-blocks", "2", "--width", "16", "--channel-mult", "1,2",
             "--channel-mult-fine", "1,2,2", "--trajectory-poses", "4", "--batch-size", "4",
             "--bev-width", "16"]  # fmt: skip


# ------------------------------------------------------------------------------------------------- maps
def test_fractions_are_the_class_shares_of_each_cell():
    """A 4x4 raster over [0, 4]^2: left half class 1, right half class 2, top-right pixel class 3 (unknown to the
    vocabulary); a 2x2 grid over [1, 3]^2 straddles the middle: every cell is half/half or its own class."""
    idx = np.zeros((4, 4), np.uint8)
    idx[:, :2], idx[:, 2:], idx[0, 3] = 1, 2, 3
    r = BevRaster(idx, (0.0, 0.0), (4.0, 4.0), ["a", "b", "c"], ["b"])
    f = r.fractions((1.0, 1.0), (3.0, 3.0), 2, 2, ["b", "a"])  # cell (i, j): x index i
    assert np.allclose(f[1, 0], 1) and np.allclose(f[0, 0], 0) and np.allclose(f[0, 1], 1)  # x < 2: a, else b
    g = r.fractions((2.0, 2.0), (6.0, 6.0), 2, 2, ["a", "b"])  # half outside the raster: no class there
    assert np.isclose(g[1, 0, 0], 0.75)  # a quarter of that cell is class c
    assert np.isclose(g[:, 1].sum(), 0) and np.isclose(g[:, :, 1].sum(), 0)
    top_right = r.fractions((3.0, 3.0), (4.0, 4.0), 1, 1, ["a", "b"])  # class c is not in the vocabulary
    assert np.allclose(top_right, 0)


def test_top_down_images_put_plus_y_up_like_the_bev_render():
    from latent3d.systems.nfldm.generate import bev_image

    a = np.zeros((5, 3))
    a[4, 0] = 1  # x = max, y = min: bottom right
    img = grid_to_image(a)
    assert img.shape == (3, 5) and img[2, 4] == 1 and np.array_equal(image_to_grid(img), a)
    dens = torch.zeros(5, 3, 2)
    dens[4, 0] = 50.0
    rgb = torch.zeros(3, 5, 3, 2)
    render = bev_image(dens, rgb, torch.zeros(3), torch.ones(3), background=1.0)[..., 0]
    assert torch.equal(render < 0.5, torch.from_numpy(img == 1))


def test_episode_maps_round_trip_and_bad_entries_are_one_line(tmp_path):
    from latent3d.data.formats.transforms_json import write_episode

    idx = np.random.default_rng(0).integers(0, 4, (6, 8)).astype(np.uint8)
    bev = BevRaster(idx, (-1.0, -2.0), (3.0, 1.0), ["floor", "wall", "tree"], ["wall", "tree"])
    vm = torch.eye(4)[None].repeat(2, 1, 1)
    vm[:, 2, 3] = 2.0
    K = torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]).expand(2, 3, 3)
    folder = write_episode(tmp_path, 0, torch.rand(2, 16, 16, 3), vm, K, depths=torch.ones(2, 16, 16), bev=bev)
    back = read_episode_bev(folder)
    assert np.array_equal(back.index, idx) and back.lo == bev.lo and back.hi == bev.hi
    assert back.classes == bev.classes and back.solid == bev.solid
    doc = json.loads((folder / "transforms.json").read_text())
    for key, value, words in (("file", "../bev.png", "leaves"), ("classes", ["floor"], "class index"),
                              ("max", [-5.0, 1.0], "must exceed")):  # fmt: skip
        bad = json.loads(json.dumps(doc))
        bad["latent3d"]["bev"][key] = value
        (folder / "transforms.json").write_text(json.dumps(bad))
        with pytest.raises(UserError, match=words):
            read_episode_bev(folder)


def test_procedural_maps_hold_the_objects_and_the_walk_stays_off_them():
    """The exact footprints: each placed object's centre lies on its own class, and a walking agent's cameras stand
    on ground (the walk keeps clear of objects and walls)."""
    from latent3d.data.procedural.scene_bev import scene_bev
    from latent3d.data.procedural.scenes import make_scene
    from latent3d.data.procedural.trajectories import walk

    for kind, seed in (("room", 1), ("forest", 2), ("street", 3)):
        scene = make_scene(kind, seed=seed)
        path = walk(scene, 24, 0.15, 6.0, seed)
        c = path.eyes[:, :2].mean(0)
        r = scene_bev(scene, (float(c[0]), float(c[1])), half=12.0, mpp=0.125)
        names = np.array(["unknown", *r.classes])

        def at(x, y):
            return names[r.index[int((r.hi[1] - y) / 0.125), int((x - r.lo[0]) / 0.125)]]

        on = [at(o["position"][0], o["position"][1]) == o["name"] for o in scene.objects
              if abs(o["position"][0] - c[0]) < 11 and abs(o["position"][1] - c[1]) < 11]  # fmt: skip
        assert on and np.mean(on) >= 0.8, (kind, on)
        stand = [at(float(x), float(y)) for x, y in path.eyes[:, :2]]
        assert not set(stand) & set(r.solid), (kind, set(stand))
        if kind == "room":
            assert "wall" in r.solid and "void" in r.classes


def test_vizdoom_sectors_map_floor_walls_and_void():
    """A 256 x 256 unit room (ceiling 128) holding a 64 x 64 pillar sector (ceiling at its floor) and a one-sided
    wall: inside the room floor, the pillar wall, outside void, the blocking line wall."""
    from latent3d.data.recorders.vizdoom_bev import Sector, inside, sectors_bev

    def square(x0, y0, x1, y1):
        return np.array([[x0, y0, x1, y0], [x1, y0, x1, y1], [x1, y1, x0, y1], [x0, y1, x0, y0]], float)

    room = np.concatenate([square(0, 0, 256, 256), square(96, 96, 160, 160)])  # the pillar is the room's hole
    blocking = np.array([True] * 4 + [False] * 4)
    secs = [Sector(0, 128, room, blocking), Sector(0, 0, square(96, 96, 160, 160), np.zeros(4, bool))]
    assert inside(np.array([10.0, 128.0, 300.0]), np.array([10.0, 128.0, 10.0]), room).tolist() == [True, False, False]
    r = sectors_bev(secs, (4.0, 4.0), 6.0, 0.25, 1 / 32)  # metres: the room spans 0..8, the pillar 3..5
    names = np.array(["unknown", *r.classes])

    def at(x, y):
        return names[r.index[int((r.hi[1] - y) / 0.25), int((x - r.lo[0]) / 0.25)]]

    assert at(1.5, 1.5) == "floor" and at(4.0, 4.0) == "wall" and at(9.0, 4.0) == "void" and at(-1.0, -1.0) == "void"
    assert at(8.0 - 0.05, 4.0) == "wall" and at(7.3, 4.0) == "floor"  # the room's blocking east wall, 1 px wide
    assert r.solid == ["wall", "void"]


def test_map_pngs_round_trip_and_foreign_colours_are_refused(tmp_path):
    vocab = BevVocabulary(["floor", "grass", "house", "tree", "wall"], ["house", "tree", "wall"])
    colors = vocab.colors().astype(int)
    assert min(np.abs(a - b).max() for i, a in enumerate(colors) for b in colors[i + 1:]) > 40
    cls = torch.randint(0, 6, (8, 8))  # 0: unknown
    bev = torch.stack([(cls == k + 1).float() for k in range(5)])
    save_image(tmp_path / "m.png", bev_map_image(bev, vocab))
    back = read_bev(tmp_path / "m.png", vocab, SceneAEConfig(), 8, 8)
    assert torch.equal(back, bev)
    img = bev_map_image(bev, vocab)
    img[3, 5] = (255, 0, 255)
    save_image(tmp_path / "bad.png", img)
    with pytest.raises(UserError, match="pixel \\(5, 3\\).*house #"):
        read_bev(tmp_path / "bad.png", vocab, SceneAEConfig(), 8, 8)


def test_agreement_and_trajectory_fit_closed_forms():
    vocab = BevVocabulary(["floor", "wall"], ["wall"])
    bev = torch.zeros(2, 4, 4)
    bev[0], bev[1, 0] = 1, 0  # floor everywhere ...
    bev[1, 0], bev[0, 0] = 1, 0  # ... but the column x = 0 is wall
    dens = torch.zeros(4, 4, 4)
    dens[0, :2, 1:3] = 100.0  # half of the wall column solid around the eye (box z -2..2, eye 0, band -1..0.5)
    dens[3, 3, 0] = 100.0  # density below the band: not solid
    op = solid_columns(dens, -2.0, 2.0, 0.0)
    assert op[0, 0] > 0.99 and op[3, 3] == 0
    assert bev_agreement(op, bev, vocab) == pytest.approx((2 * 12 + 0.5 * 2 * 12) / 48)  # ROC AUC, ties half
    assert np.isnan(bev_agreement(op, bev[:1] * 0 + torch.stack([bev.sum(0), 0 * bev[0]]), vocab))  # no solid
    traj = torch.tensor([[[-0.9, 0.0, 0, 1, 0], [0.5, 0.5, 0, 1, 0]]])  # first pose in column x = 0 (wall)
    assert trajectory_fit(traj, bev[None], vocab.solid_mask()).tolist() == [0.5]


# ------------------------------------------------------------------------------------------------- conditioning
def test_the_empty_map_is_the_unconditional_input_and_the_map_matters():
    from latent3d.systems.nfldm.config import SceneDiffusionConfig
    from latent3d.systems.nfldm.scene_diffusion import build_level

    cfg = SceneDiffusionConfig(bev=True, width=16, bev_width=16, channel_mult=(1, 2), channel_mult_fine=(1, 2, 2))
    shapes = {"g": [8], "c": [2, 4, 4, 2], "f": [3, 16, 16], "bev": [3, 16, 16]}
    torch.manual_seed(0)
    for level in ("c", "f"):
        m = build_level(level, cfg, shapes).eval()
        for p in m.parameters():  # the zero-initialised output layers would hide everything
            p.data.normal_(0, 0.3)
        x = torch.randn(2, *m.shape)
        cond = {"g": torch.randn(2, 8)} | ({"c": torch.randn(2, 2, 4, 4, 2)} if level == "f" else {})
        t = torch.tensor([500, 500])
        with torch.no_grad():
            none = m(x, t, **cond)
            empty = m(x, t, **cond, bev=torch.zeros(1, 3, 16, 16))
            some = m(x, t, **cond, bev=torch.eye(3)[torch.randint(0, 3, (1, 16, 16))].permute(0, 3, 1, 2))
        assert torch.equal(none, empty), level
        assert (none - some).abs().max() > 1e-3, level


def test_condition_draws_come_per_item_only_when_asked():
    from latent3d.train.diffusion_recipe import fit_diffusion

    seen = []

    def condition(rows, dev, u=None):
        seen.append(u)
        return {}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(net, x0, g, **kw):
        return ((net.w - x0.mean()) ** 2).sum()

    from latent3d.train.trainer import TrainConfig

    for p in (0.0, 0.3):
        seen.clear()
        tcfg = TrainConfig(out_dir=None, steps=200, lr=1e-3, warmup_steps=0, progress=False, device="cpu")
        fit_diffusion(Net(), 10, lambda i, g: torch.zeros(len(i), 1), loss, tcfg, 8, cond_drop=p, condition=condition)
        if p == 0:
            assert all(d is None for d in seen)
        else:  # two independent uniform draws per item
            u = torch.cat(seen)
            assert u.shape[1] == 2 and 0.45 < float(u.mean()) < 0.55 and abs(float(torch.corrcoef(u.T)[0, 1])) < 0.1


# ------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def bev_run(latent_ae_run, tmp_path_factory):
    """c and f trained with --bev (30 steps each) on the shared tiny latents, g without; the episodes' folder."""
    root = tmp_path_factory.mktemp("scene_bev")
    for level in ("g", "c", "f"):
        res = CliRunner().invoke(app, ["train", "scene-diffusion", "--latents", str(latent_ae_run), "--out",
                                       str(root / "sd"), "--level", level, "--steps", "30", *DIFF_ARGS,
                                       *(["--bev"] if level != "g" else [])])  # fmt: skip
        assert res.exit_code == 0, res.output
    data = json.loads((latent_ae_run / "run.json").read_text())["data"]
    return root, sorted(p for p in Path(data).iterdir() if p.is_dir())


def test_scene_follows_a_map_file_or_episode_and_writes_it_back(bev_run, tmp_path):
    from latent3d.io.model_folder import load_tensors

    root, episodes = bev_run
    args = ["scene", "--model", str(root / "sd"), "--n", "1", "--frames", "2", "--steps", "3", "--seed", "1"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--bev", str(episodes[0])])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    sample = tmp_path / "a" / "sample_00"
    auc = run["samples"][0]["bev_agreement"]
    assert run["bev"] == str(episodes[0]) and (auc is None or 0 <= auc <= 1)
    first = load_tensors(sample / "latents.safetensors")
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--bev", str(sample / "bev_map.png")])
    assert res.exit_code == 0, res.output
    second = load_tensors(tmp_path / "b" / "sample_00" / "latents.safetensors")
    k = first["bev"].sum(0) > 0.5  # the written map reads back as the same classes (majority per column)
    assert torch.equal(first["bev"].argmax(0)[k], second["bev"].argmax(0)[k])
    assert torch.equal(k, second["bev"].sum(0) > 0.5)
    res = CliRunner().invoke(app, ["scene", "edit", str(sample), "--region", "0.25,0.25,0.75,0.75", "--steps", "3",
                                   "--frames", "2", "--out", str(tmp_path / "e")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert torch.equal(load_tensors(tmp_path / "e" / "latents.safetensors")["bev"], first["bev"])


def test_bad_maps_are_one_line_before_weights_load(bev_run, latent_ae_run, tmp_path, monkeypatch):
    root, episodes = bev_run
    import latent3d.systems.nfldm.scene_model as sm

    monkeypatch.setattr(sm, "load_scene_model", lambda *a, **k: pytest.fail("weights loaded"))
    base = ["scene", "--model", str(root / "sd"), "--out", str(tmp_path / "o")]
    for bev, words in ((tmp_path / "none.png", "no such file"), (latent_ae_run, "not an episode folder")):
        res = CliRunner().invoke(app, [*base, "--bev", str(bev)])
        assert res.exit_code != 0 and isinstance(res.exception, UserError) and words in str(res.exception)
    save_image(tmp_path / "pink.png", np.full((8, 8, 3), (255, 0, 255), np.uint8))
    res = CliRunner().invoke(app, [*base, "--bev", str(tmp_path / "pink.png")])
    assert isinstance(res.exception, UserError) and "no class of this model" in str(res.exception)


def test_map_guidance_interpolates_between_the_empty_map_and_the_map():
    """``bev_scale`` 0 samples as without a map, 1 as with it, and 2 extrapolates: the same noise, the scale
    applied to every x0 prediction (classifier-free guidance)."""
    from latent3d.systems.nfldm.config import SceneDiffusionConfig
    from latent3d.systems.nfldm.scene_diffusion import build_level, sample_level

    cfg = SceneDiffusionConfig(bev=True, width=16, bev_width=16, channel_mult=(1, 2))
    torch.manual_seed(1)
    m = build_level("c", cfg, {"g": [8], "c": [2, 4, 4, 2], "f": [3, 16, 16], "bev": [3, 16, 16]}).eval()
    for p in m.parameters():
        p.data.normal_(0, 0.3)
    g, bev = torch.randn(2, 8), torch.eye(3)[torch.randint(0, 3, (1, 16, 16))].permute(0, 3, 1, 2)

    def run(scale, **kw):
        return sample_level(m, 2, 1, torch.Generator().manual_seed(0), 0.0, scale, g=g, **kw)["c"]

    assert torch.allclose(run(0.0, bev=bev), run(1.0), atol=1e-5)
    one, two, none = run(1.0, bev=bev), run(2.0, bev=bev), run(1.0)
    assert torch.allclose(two, 2 * one - none, atol=1e-4)  # one DDIM step from t = 999 with eta 0: x0 itself


def test_encoding_with_a_packed_model_gives_back_its_training_latents(bev_run, latent_ae_run, tmp_path):
    """`latent3d scene encode` through a packed model's auto-encoders reproduces the latents its latent auto-encoder
    run wrote for the same episodes (g, c, f and the code indices), in a folder `train scene-diffusion` takes."""
    from latent3d.io.model_folder import load_tensors

    root, episodes = bev_run
    res = CliRunner().invoke(app, ["scene", "pack", str(root / "sd"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    data = str(episodes[0].parent)
    res = CliRunner().invoke(app, ["scene", "encode", "--model", str(tmp_path / "m"), "--data", data, "--out",
                                   str(tmp_path / "lae")])  # fmt: skip
    assert res.exit_code == 0, res.output
    new, old = (load_tensors(p / "latents.safetensors") for p in (tmp_path / "lae", latent_ae_run))
    for k in ("g", "c", "f"):
        assert torch.allclose(new[k], old[k], atol=1e-4), k
    for k in ("c_indices", "f_indices"):
        assert torch.equal(new[k], old[k]), k
    res = CliRunner().invoke(app, ["train", "scene-diffusion", "--latents", str(tmp_path / "lae"), "--out",
                                   str(tmp_path / "sd"), "--level", "c", "--bev", "--steps", "2",
                                   *DIFF_ARGS])  # fmt: skip
    assert res.exit_code == 0, res.output
