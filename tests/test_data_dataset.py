"""transforms.json datasets: write -> read round trip, real NeRF-blender/nerfstudio folders, user errors."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from latent3d.data import make_object, make_scene, object_views, read_transforms_dataset, write_transforms_dataset
from latent3d.data.formats.transforms_json import choose_depth_scale
from latent3d.data.procedural.generate import write_scene_dataset
from latent3d.errors import UserError
from latent3d.render.camera import look_at, nerfstudio_from_viewmats, viewmats_from_nerfstudio
from tolerances import EPS32, f32_atol


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.numerics
def test_object_dataset_round_trip(tmp_path):
    obj = make_object("rocket", "blue", seed=1, variation=0.5)
    r, caps = object_views(obj, 5, width=40, height=32, seed=2)
    scale = 2e-4
    write_transforms_dataset(tmp_path, r.rgb, r.viewmats, r.Ks, r.depth, r.mask, caps, depth_scale=scale)
    ds = read_transforms_dataset(tmp_path)
    assert len(ds) == 5 and ds.images.shape == (5, 32, 40, 3)
    assert ds.captions == caps and all(c.startswith("a blue rocket, ") for c in caps)
    # poses go through camera-to-world (rigid_inverse), JSON and back (viewmats_from_nerfstudio): two float32 3x3
    # products of O(|eye|) = 3 values, ~16 roundings (measured 4 eps32 * 3); a flipped axis or transposed rotation
    # is off by O(1)
    assert_close(ds.viewmats, r.viewmats, atol=f32_atol(r.viewmats, 16), rtol=0)
    assert torch.equal(ds.Ks, r.Ks)  # fl_x, fl_y, cx, cy are written with repr(): exact
    assert torch.equal(ds.masks, r.mask)
    # 8-bit PNG: |x - round(255 x) / 255| <= 0.5 / 255, plus the float32 rounding of the division (values <= 1)
    assert (ds.images - r.rgb).abs().max() <= 0.5 / 255 + 2 * EPS32
    fin = torch.isfinite(r.depth)
    assert torch.equal(torch.isfinite(ds.depths), fin)
    # 16-bit depth in steps of `scale`: <= scale / 2, plus float32 rounding of depth = q * scale (depths <= ~4 m)
    assert (ds.depths[fin] - r.depth[fin]).abs().max() <= scale / 2 + f32_atol(r.depth[fin], 4)
    doc = json.loads((tmp_path / "transforms.json").read_text())
    assert doc["depth_unit_scale_factor"] == scale and doc["frames"][0]["depth_file_path"] == "depth/00000.png"
    assert not [p for p in tmp_path.rglob(".*")]  # atomic writes leave no temp files behind


def test_scene_dataset_auto_depth_scale_and_per_frame_intrinsics(tmp_path):
    write_scene_dataset(tmp_path / "s", make_scene("outdoor", seed=1), 2, width=24, height=16)
    ds = read_transforms_dataset(tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "transforms.json").read_text())
    s = doc["depth_unit_scale_factor"]
    fin = torch.isfinite(ds.depths)
    assert fin.any() and (~fin).any()  # ground and sky
    assert float(ds.depths[fin].max()) <= 65535 * s
    assert choose_depth_scale(3.0) == 5e-5 and choose_depth_scale(65.0) == 1e-3 and choose_depth_scale(300.0) == 5e-3
    # different intrinsics per frame go into the frames
    imgs = torch.rand(2, 8, 10, 3)
    vm = look_at(torch.tensor([[2.0, 0, 1], [0, 2.0, 1]]), torch.zeros(2, 3))
    Ks = torch.tensor([[[10.0, 0, 5], [0, 11, 4], [0, 0, 1]], [[12.0, 0, 5.5], [0, 12, 4.5], [0, 0, 1]]])
    write_transforms_dataset(tmp_path / "k", imgs, vm, Ks)
    doc = json.loads((tmp_path / "k" / "transforms.json").read_text())
    assert "fl_x" not in doc and doc["frames"][1]["fl_x"] == 12.0
    ds = read_transforms_dataset(tmp_path / "k" / "transforms.json")
    assert_close(ds.Ks, Ks) and ds.depths is None and ds.masks is None and ds.captions is None


def _write_png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_reads_hand_written_nerf_blender_folder(tmp_path):
    angle = 0.6911112070083618  # lego's camera_angle_x
    c2w = [[[-0.99, 0.0, 0.14, 0.56], [0.14, 0.0, 0.99, 4.0], [0.0, 1.0, 0.0, 0.0]],  # 3x4 rows are allowed too
           [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, -4.0], [0.0, 1.0, 0.0, 0.5], [0, 0, 0, 1]]]
    doc = {"camera_angle_x": angle, "frames": [{"file_path": f"./train/r_{i}", "rotation": 0.0,
                                                "transform_matrix": m} for i, m in enumerate(c2w)]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(doc))
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[2:4, 3:6, 3] = 255  # opaque red block; the rest transparent
    for i in range(2):
        _write_png(tmp_path / "train" / f"r_{i}.png", rgba)
    ds = read_transforms_dataset(tmp_path, split="train")
    fx = 0.5 * 8 / math.tan(0.5 * angle)
    assert_close(ds.Ks[0], torch.tensor([[fx, 0, 4.0], [0, fx, 3.0], [0, 0, 1]]))
    assert ds.depths is None and ds.captions is None
    assert ds.masks.sum() == 2 * 6 and bool(ds.masks[0, 2, 3]) and not bool(ds.masks[0, 0, 0])
    assert_close(ds.images[0, 0, 0], torch.ones(3))  # transparent -> white background
    assert_close(ds.images[0, 2, 3], torch.tensor([200 / 255, 0.0, 0.0]))
    assert_close(ds.viewmats[1], viewmats_from_nerfstudio(torch.tensor(c2w[1:]))[0])
    # c2w[1] has entries 0, +-1, 4, 0.5: every product and sum of the round trip is exact in float32
    assert torch.equal(nerfstudio_from_viewmats(ds.viewmats[1:])[0], torch.tensor(c2w[1]))
    # camera 2 sits at world (0, -4, 0.5) looking along +y (OpenGL -z = forward)
    assert_close(ds.viewmats[1][:3, :3].T @ -ds.viewmats[1][:3, 3], torch.tensor([0.0, -4.0, 0.5]))
    assert_close(ds.viewmats[1][2, :3], torch.tensor([0.0, 1.0, 0.0]))


def test_reads_nerfstudio_folder_with_downscaled_images_and_mm_depth(tmp_path):
    frames = [{"file_path": "images/a.jpg", "depth_file_path": "d/a.png", "fl_x": 100.0, "fl_y": 90.0,
               "cx": 40.0, "cy": 30.0, "w": 80, "h": 60, "transform_matrix": np.eye(4).tolist()}]
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "k1": 0.01, "frames": frames}))
    _write_png(tmp_path / "images" / "a.jpg", np.full((30, 40, 3), 128, np.uint8))  # half resolution
    from latent3d.io.depth import write_depth_png16

    d = np.zeros((30, 40), np.uint16)
    d[5:, :] = 2500  # 2.5 m in nerfstudio's default millimetres; 0 = missing
    write_depth_png16(tmp_path / "d" / "a.png", d)
    ds = read_transforms_dataset(tmp_path)
    assert_close(ds.Ks[0], torch.tensor([[50.0, 0, 20], [0, 45, 15], [0, 0, 1]]))
    assert torch.isinf(ds.depths[0, :5]).all() and torch.allclose(ds.depths[0, 5:], torch.tensor(2.5))


def test_not_a_dataset_is_one_clear_user_error(tmp_path):
    with pytest.raises(UserError, match="not a transforms.json dataset") as e:
        read_transforms_dataset(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable JSON"):
        read_transforms_dataset(tmp_path)
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 1, "frames": [
        {"file_path": "missing.png", "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(UserError, match="not found"):
        read_transforms_dataset(tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        read_transforms_dataset(tmp_path / "nope")


def test_import_is_light():
    code = "import sys, latent3d.data; print(sorted(m for m in ('PIL', 'imageio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
