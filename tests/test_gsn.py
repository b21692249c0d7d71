"""GSN's VizDoom / Replica episodes (latent3d.data.formats.gsn): a GSN-layout folder built from a procedural room
(OpenGL ``Rt`` in GSN's units and y-up world, ``K`` at GSN's stored resolution, depth by GSN's laws: 8-bit png
``/ 14 * 100`` or float tiff ``* 1000``), read back: poses and intrinsics round-trip exactly (a known point lands on
the same pixel), depths reproject between frames, NF-LDM's episode reader trains on GSN's folder as it is, and every
bad input is one error line."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from latent3d.data.formats.gsn import gsn_viewmat, list_gsn_episodes, read_gsn_episode
from latent3d.errors import UserError
from latent3d.render.camera import intrinsics_from_fov, look_at, project_points
from latent3d.render.reproject import reprojection_error

SIZE = 48  # stored image side
GL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))  # OpenCV <-> OpenGL camera axes
# GSN's world is y-up, latent3d's z-up: p_latent3d = Z_UP @ p_GSN ((x, y, z)_GSN -> (x, -z, y))
Z_UP = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float64)
# GSN's laws, written here independently of the reader (apple/ml-gsn datasets/vizdoom.py, replica.py, configs):
# focal lengths stored for a 480-pixel image (VizDoom) or in half image widths (Replica: x 256 / tan 45 deg at 512
# pixels); stored depth -> Rt's unit: VizDoom level / 14 * 100 (map units), Replica value * 1000 (metres); latent3d
# metres per unit: VizDoom 1/32 (the recorder's scale), Replica 1.
LAWS = {"vizdoom": {"k_size": 480.0, "to_units": 100 / 14, "metres_per_unit": 1 / 32},
        "replica": {"k_size": 2.0, "to_units": 1000.0, "metres_per_unit": 1.0}}


@pytest.fixture(scope="module")
def views():
    """Six first-person views walking through a procedural room (0.12 m and 3 degrees apart), rendered exactly."""
    from latent3d.data.procedural.raycast import render_views
    from latent3d.data.procedural.scenes import make_scene

    scene = make_scene("room", seed=3)
    eye = torch.tensor(scene.eye, dtype=torch.float64)
    eyes, targets = [], []
    for k in range(6):
        a = math.radians(20.0 + 3.0 * k)
        eyes.append(eye + torch.tensor([0.12 * k * math.cos(a), 0.12 * k * math.sin(a), 0.0], dtype=torch.float64))
        targets.append(eyes[-1] + torch.tensor([math.cos(a), math.sin(a), -0.05], dtype=torch.float64))
    viewmats = look_at(torch.stack(eyes), torch.stack(targets), dtype=torch.float64)  # [6, 4, 4] OpenCV
    Ks = intrinsics_from_fov(math.pi / 2, SIZE, SIZE).expand(6, 3, 3)  # 90 degrees, cx = cy = 24
    r = render_views(scene, viewmats.float(), Ks, SIZE, SIZE)
    return viewmats, Ks.double(), r.rgb, r.depth


def write_gsn(root, views, kind: str, split: str = "train", name: str = "00", neg_fy: bool = False, k4: bool = False):
    """Write ``views`` as one GSN episode ``root/split/name`` of ``kind`` (module docstring); returns the folder."""
    viewmats, Ks, rgb, depth = views
    law = LAWS[kind]
    folder = root / split / name
    folder.mkdir(parents=True)
    cams = []
    for i in range(viewmats.shape[0]):
        Rt = GL @ viewmats[i] @ Z_UP  # OpenGL world-to-camera in GSN's y-up world
        Rt[:3, 3] /= law["metres_per_unit"]  # GSN's units
        K = torch.eye(4 if k4 else 3, dtype=torch.float64)
        K[0, 0] = Ks[i, 0, 0] * law["k_size"] / SIZE
        K[1, 1] = Ks[i, 1, 1] * law["k_size"] / SIZE * (-1 if neg_fy else 1)
        cams.append({"Rt": Rt.tolist(), "K": K.tolist()})
        Image.fromarray((rgb[i].numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:03d}_rgb.png")
        d = depth[i].double().numpy() / law["metres_per_unit"] / law["to_units"]  # GSN's stored value
        if kind == "vizdoom":
            q = np.where(np.isfinite(d), np.clip(np.round(d), 1, 254), 0).astype(np.uint8)  # 8-bit, 0 = none
            Image.fromarray(q).save(folder / f"{i:03d}_depth.png")
        else:
            Image.fromarray(np.where(np.isfinite(d), d, 0).astype(np.float32)).save(folder / f"{i:03d}_depth.tiff")
    (folder / "cameras.json").write_text(json.dumps(cams))
    return folder


@pytest.mark.parametrize("kind,neg_fy,k4", [("vizdoom", False, False), ("vizdoom", True, True),
                                            ("replica", False, True)])
def test_round_trip_poses_intrinsics(tmp_path, views, kind, neg_fy, k4):
    """The reader's OpenCV viewmats and pixel K are the rendering cameras: a known world point projects to the same
    pixel; depths come back in metres (within GSN's quantisation)."""
    viewmats, Ks, rgb, depth = views
    folder = write_gsn(tmp_path, views, kind, neg_fy=neg_fy, k4=k4)
    assert list_gsn_episodes(tmp_path) == [folder]
    ds = read_gsn_episode(folder)
    assert ds.images.shape == (6, SIZE, SIZE, 3) and ds.masks is None
    torch.testing.assert_close(ds.viewmats.double(), viewmats, atol=2e-5, rtol=0)
    torch.testing.assert_close(ds.Ks.double(), Ks, atol=1e-4, rtol=0)
    centre = torch.linalg.inv(viewmats[0])[:3, 3]
    X = (centre + 2.0 * viewmats[0, 2, :3] + 0.4 * viewmats[0, 0, :3] - 0.3 * viewmats[0, 1, :3])[None]  # [1, 3]
    uv_true, _ = project_points(X, viewmats[:1], Ks[:1])
    uv_read, _ = project_points(X, ds.viewmats[:1].double(), ds.Ks[:1].double())
    torch.testing.assert_close(uv_read, uv_true, atol=2e-3, rtol=0)
    fin = torch.isfinite(depth)
    assert torch.equal(torch.isfinite(ds.depths), fin)
    step = LAWS[kind]["to_units"] * LAWS[kind]["metres_per_unit"] if kind == "vizdoom" else 1e-6  # one 8-bit level
    assert float((ds.depths[fin] - depth[fin]).abs().max()) <= 0.5 * step + 1e-4


@pytest.mark.parametrize("kind", ["vizdoom", "replica"])
def test_reprojection_of_gsn_episode(tmp_path, views, kind):
    """Frame j's depth warps frame i (i = j+1, j+2) onto frame j far better with i's pose than with a pose 4 frames
    off: the read geometry is consistent."""
    ds = read_gsn_episode(write_gsn(tmp_path, views, kind))
    for j in (0, 1):
        for i in (j + 1, j + 2):
            good, share = reprojection_error(ds.images[i], ds.viewmats[i], ds.Ks[i], ds.images[j], ds.depths[j],
                                             ds.viewmats[j], ds.Ks[j])  # fmt: skip
            bad, _ = reprojection_error(ds.images[i], ds.viewmats[(i + 4) % 6], ds.Ks[i], ds.images[j], ds.depths[j],
                                        ds.viewmats[j], ds.Ks[j])  # fmt: skip
            assert share > 0.6  # measured 0.72 .. 0.85 (forward motion: frame j's rim leaves frame i)
            assert good < 0.015 and bad > 3 * good, (j, i, good, bad)  # measured good 0.007, bad 0.030 .. 0.065


def test_gsn_world_is_turned_z_up():
    """Closed form: GSN's identity ``Rt`` is a camera at the origin looking down GSN's -z with GSN's +y up; in
    latent3d's z-up world it looks along +y (north) with +z up, so its OpenCV rows are right (1,0,0), down (0,0,-1),
    forward (0,1,0); a translation of 32 VizDoom units along GSN's y (up) puts the camera 1 m up."""
    V = gsn_viewmat(torch.eye(4).tolist(), 1.0).double()
    torch.testing.assert_close(V[:3, :3], torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=V.dtype))
    Rt = torch.eye(4)
    Rt[1, 3] = -32.0  # world-to-camera: the camera stands at GSN y = +32
    V = gsn_viewmat(Rt.tolist(), LAWS["vizdoom"]["metres_per_unit"]).double()
    torch.testing.assert_close(torch.linalg.inv(V)[:3, 3], torch.tensor([0.0, 0.0, 1.0], dtype=V.dtype))


@pytest.mark.parametrize("kind", ["vizdoom", "replica"])
def test_nfldm_reads_a_gsn_root(tmp_path, views, kind):
    """NF-LDM's episode reader takes GSN's data folder as it is (ROOT/train/NN), a split folder or one episode:
    the frames it yields reproject into each other with their poses (far better than with another frame's pose),
    and its scene box sits around the cameras in latent3d's z-up world."""
    from latent3d.systems.nfldm.config import SceneAEConfig
    from latent3d.systems.nfldm.episodes import episode_folders, read_episodes

    write_gsn(tmp_path, views, kind, name="00")
    write_gsn(tmp_path, views, kind, name="01")
    both = [tmp_path / "train" / "00", tmp_path / "train" / "01"]
    assert episode_folders(tmp_path) == both and episode_folders(tmp_path / "train") == both
    assert episode_folders(both[1]) == [both[1]]
    cfg = SceneAEConfig(holdout=3, box=(7.0, 1.0, 3.0))
    eps = read_episodes(tmp_path, cfg)
    assert [e.name for e in eps] == ["00", "01"] and eps[0].held == [2, 5]
    e = eps[0]
    I, D, V, K = e.images.permute(0, 2, 3, 1), e.depths, e.viewmats, e.Ks
    good, _ = reprojection_error(I[1], V[1], K[1], I[0], D[0], V[0], K[0])
    bad, _ = reprojection_error(I[1], V[5], K[1], I[0], D[0], V[0], K[0])
    assert good < 0.015 and bad > 3 * good, (good, bad)
    centre = torch.linalg.inv(views[0].double())[:, :3, 3].mean(0)
    lo, hi = e.bbox_min.double(), e.bbox_max.double()
    torch.testing.assert_close(lo, centre - torch.tensor([7.0, 7.0, 1.0], dtype=lo.dtype), atol=1e-4, rtol=0)
    torch.testing.assert_close(hi, centre + torch.tensor([7.0, 7.0, 3.0], dtype=hi.dtype), atol=1e-4, rtol=0)


def test_first_count_and_units(tmp_path, views):
    folder = write_gsn(tmp_path, views, "vizdoom")
    ds = read_gsn_episode(folder, first=2, count=3)
    assert len(ds) == 3 and ds.image_paths[0].name == "002_rgb.png"
    full = read_gsn_episode(folder)
    torch.testing.assert_close(ds.viewmats, full.viewmats[2:5])
    doubled = read_gsn_episode(folder, metres_per_unit=2 / 32)  # a world twice as large: depths and poses scale
    torch.testing.assert_close(doubled.depths[torch.isfinite(doubled.depths)],
                               2 * full.depths[torch.isfinite(full.depths)])  # fmt: skip
    torch.testing.assert_close(doubled.viewmats[:, :3, 3], 2 * full.viewmats[:, :3, 3])


def _one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    for w in words:
        assert w in msg, msg


def _cams(folder):
    return json.loads((folder / "cameras.json").read_text())


def test_bad_json(tmp_path, views):
    folder = write_gsn(tmp_path, views, "vizdoom")
    (folder / "cameras.json").write_text('[{"Rt": [[1, 0')
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "cameras.json", "JSON")
    (folder / "cameras.json").write_text('{"Rt": 1}')
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "list")


_NAN = float("nan")


@pytest.mark.parametrize("rt,word", [([[1, 0], [0, 1]], "Rt"), ("eye", "Rt"),
                                     ([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]], "orthonormal"),
                                     ([[1, 0, 0, _NAN], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "non-finite"),
                                     ([[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "reflection")])
def test_bad_rt(tmp_path, views, rt, word):
    folder = write_gsn(tmp_path, views, "vizdoom")
    cams = _cams(folder)
    cams[3]["Rt"] = rt
    (folder / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, word, "frame 3")


def test_bad_k_and_frames(tmp_path, views):
    folder = write_gsn(tmp_path, views, "vizdoom")
    cams = _cams(folder)
    cams[1]["K"] = [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    (folder / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "focal length", "frame 1")
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder, first=4, count=5)
    _one_line(e, "frames 4..8")


def test_paths_stay_inside_root(tmp_path, views):
    """A frame file or an episode folder that is a symbolic link out of the data folder is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(outside / "x.png")
    root = tmp_path / "gsn"
    folder = write_gsn(root, views, "vizdoom")
    (folder / "002_rgb.png").unlink()
    os.symlink(outside / "x.png", folder / "002_rgb.png")
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "002_rgb.png", "outside")
    (folder / "002_rgb.png").unlink()
    os.symlink(outside, root / "train" / "01")
    with pytest.raises(UserError) as e:
        list_gsn_episodes(root)
    _one_line(e, "leaves the dataset folder")
    with pytest.raises(UserError) as e:
        list_gsn_episodes(root, split="../outside")
    _one_line(e, "split")


def test_truncated_and_wrong_files(tmp_path, views):
    folder = write_gsn(tmp_path, views, "vizdoom")
    data = (folder / "001_rgb.png").read_bytes()
    (folder / "001_rgb.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "001_rgb.png")
    (folder / "001_rgb.png").write_bytes(data)
    depth = (folder / "004_depth.png").read_bytes()
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(folder / "004_depth.png")  # colour, not depth
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "004_depth.png", "greyscale")
    Image.fromarray(np.zeros((SIZE // 2, SIZE // 2), np.uint8)).save(folder / "004_depth.png")
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "004_depth.png", "24x24")
    (folder / "004_depth.png").write_bytes(depth)
    (folder / "005_rgb.png").unlink()
    assert len(read_gsn_episode(folder, count=5)) == 5  # frames 0..4 only
    with pytest.raises(UserError) as e:
        read_gsn_episode(folder)
    _one_line(e, "005_rgb.png")
