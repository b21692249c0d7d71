"""The camera checks every reader and writer shares (latent3d.render.camera_checks, issue 30): the cases fuzzing
found, each one UserError line naming the file and the frame, and the writers refusing before writing anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from latent3d.errors import UserError
from latent3d.render.camera_checks import check_intrinsics, check_pose


def _rot(deg: float) -> np.ndarray:  # [4, 4] rotation about z, camera 3 units away
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = (0.0, -3.0, 0.5)
    return m


def _with(m: np.ndarray, **rows) -> np.ndarray:
    m = m.copy()
    for k, v in rows.items():
        m[int(k[1])] = v
    return m


POSES = {  # name -> (matrix, words of the message)
    "diag 1e20 1e20 1e-39": (np.diag([1e20, 1e20, 1e-39, 1.0]), "not orthonormal"),
    "scaled rotation at 1e29": (np.block([[np.diag([1e-10, 1e10, 1.0]), np.full((3, 1), 1e29)],
                                          [np.array([[0.0, 0, 0, 1]])]]), "not orthonormal"),
    "row of 1e29": (_with(_rot(30), r1=1e29), "not orthonormal"),
    "translation 1e29": (_with(_rot(30), r0=[np.cos(np.radians(30)), -np.sin(np.radians(30)), 0, 1e29]),
                         "translation |t| = 1e+29 exceeds 10000 world units"),
    "all zero": (np.zeros((4, 4)), "bottom row"),
    "not affine": (_with(_rot(10), r3=[0, 0, 1, 1]), "bottom row"),
    "mirror": (_rot(10) @ np.diag([-1.0, 1, 1, 1]), "reflection"),
    "nan": (_with(_rot(10), r2=[0, 0, 1, np.nan]), "non-finite"),
    "scaled by 1.01": (_rot(10) @ np.diag([1.01, 1.01, 1.01, 1]), "max |R^T R - I| = 0.0201 > 0.001"),
}


@pytest.mark.parametrize("case", sorted(POSES))
def test_check_pose_refuses_with_one_line_naming_the_frame(case):
    m, words = POSES[case]
    with pytest.raises(UserError) as e:
        check_pose(m, "pose/000003.txt")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("pose/000003.txt: ") and words in msg, msg


def test_check_pose_keeps_real_poses():
    for deg in (0.0, 33.0, 179.0):
        assert np.array_equal(check_pose(_rot(deg), "x"), _rot(deg))
    noisy = _rot(20)
    noisy[:3, :3] += 2e-4  # max |R^T R - I| = 5e-4, within ORTHO_TOL = 1e-3 (pose files print 6 decimals: ~1e-6)
    check_pose(noisy, "x")
    far = _rot(20)
    far[:3, 3] = (0.0, 9999.0, 0.0)  # within MAX_TRANSLATION = 1e4
    check_pose(far, "x")
    check_pose(np.linalg.inv(far), "x")  # a world-to-camera passes too


@pytest.mark.parametrize("args, words", [
    ((1e-300, 1e-300, 4, 4, 8, 8), "focal length fx = 1e-300"),
    ((10, 1e20, 4, 4, 8, 8), "focal length fy = 1e+20"),
    ((10, 10, 1e29, 4, 8, 8), "principal point cx"),
    ((10, 10, 4, float("nan"), 8, 8), "principal point cy"),
    ((10, 10, 4, 4, 1e-300, 8), "image width"),
    ((10, 10, 4, 4, 8, 8.5), "image height"),
    ((10, 10, 4, 4, 8, 2e6), "image height"),
])  # fmt: skip
def test_check_intrinsics_refuses(args, words):
    with pytest.raises(UserError) as e:
        check_intrinsics(*args, "intrinsics.txt")
    assert "\n" not in str(e.value) and str(e.value).startswith("intrinsics.txt: ") and words in str(e.value)


def test_check_intrinsics_keeps_real_cameras():
    check_intrinsics(131.25, 131.25, 64.0, 64.0, 128, 128, "SRN cars")  # SRN's own intrinsics
    check_intrinsics(1111.1, 1111.1, 400.0, 400.0, 800, 800, "NeRF synthetic")
    check_intrinsics(8 / 1e4, 8 / 1e4, 4, 4, 8, 8, "fov 179.98 degrees")  # the bound itself


# -------------------------------------------------------------------------------------------------- the readers
def _srn(folder: Path, intrinsics: str = "10. 4. 4. 0.\n0. 0. 0.\n1.\n8 8\n", pose1: np.ndarray | None = None):
    from PIL import Image

    (folder / "pose").mkdir(parents=True)
    (folder / "rgb").mkdir()
    (folder / "intrinsics.txt").write_text(intrinsics)
    for i, m in enumerate((_rot(0), _rot(90) if pose1 is None else pose1)):
        Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(folder / "rgb" / f"00000{i}.png")
        (folder / "pose" / f"00000{i}.txt").write_text(" ".join(repr(float(v)) for v in m.ravel()))
    return folder


@pytest.mark.parametrize("intrinsics, pose1, words", [
    ("1e-300 8 8 0\n0 0 0\n1\n8 8\n", None, "intrinsics.txt (scaled to the 8x8 images): focal length fx = 1e-300"),
    ("10 4 4 0\n0 0 0\n1\n8 1e-300\n", None, "intrinsics.txt line 4 (H W): image width"),
    (None, np.diag([1e20, 1e20, 1e-39, 1.0]), "000001.txt: rotation is not orthonormal"),
    (None, POSES["scaled rotation at 1e29"][0], "000001.txt: rotation is not orthonormal"),
])  # fmt: skip
def test_srn_reader_refuses_the_fuzz_findings(tmp_path, intrinsics, pose1, words):
    from latent3d.data.formats.multiview import read_object_folder

    kw = {"intrinsics": intrinsics} if intrinsics else {}
    obj = _srn(tmp_path / "obj", pose1=pose1, **kw)
    with pytest.raises(UserError) as e:
        read_object_folder(obj)
    assert "\n" not in str(e.value) and words in str(e.value), str(e.value)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["frames"][1].__setitem__("transform_matrix", [[1e29] * 4] * 3 + [[0, 0, 0, 1]]), "frame 1: rotation"),
    (lambda d: d["frames"][1].__setitem__("transform_matrix", np.zeros((4, 4)).tolist()), "frame 1: bottom row"),
    (lambda d: d["frames"][0].__setitem__("transform_matrix", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]),
     "frame 0: bottom row"),
    (lambda d: d.__setitem__("fl_x", 1e-300), "frame 0: focal length fx = 1e-300"),
    (lambda d: d.__setitem__("fl_y", 1e-300), "frame 0: focal length fy = 1e-300"),
    (lambda d: d.__setitem__("w", 1e-300), "frame 0 (w, h): image width"),
    (lambda d: d.__setitem__("h", 1e-300), "frame 0 (w, h): image height"),
])  # fmt: skip
def test_transforms_readers_refuse_the_fuzz_findings(tmp_path, edit, words):
    from latent3d.data import read_transforms_dataset, write_transforms_dataset
    from latent3d.data.formats.multiview import read_object_folder
    from latent3d.render.camera import intrinsics_from_fov, look_at

    vm = look_at(torch.tensor([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]]), torch.zeros(2, 3))
    Ks = intrinsics_from_fov(torch.full((2,), 0.8), 8, 6)
    write_transforms_dataset(tmp_path / "obj", torch.rand(2, 6, 8, 3), vm, Ks)
    doc = json.loads((tmp_path / "obj" / "transforms.json").read_text())
    edit(doc)
    (tmp_path / "obj" / "transforms.json").write_text(json.dumps(doc))
    for read in (read_transforms_dataset, read_object_folder):
        with pytest.raises(UserError) as e:
            read(tmp_path / "obj")
        assert "\n" not in str(e.value) and "transforms.json " + words in str(e.value), str(e.value)


# -------------------------------------------------------------------------------------------------- the writers
@pytest.mark.parametrize("fmt", ["srn", "transforms"])
@pytest.mark.parametrize("kw, words", [
    ({"radius": 1e308}, "--radius"),  # the declared range (latent3d.ranges) refuses these first
    ({"radius": (2.0, 2e4)}, "--radius"),
    ({"fov_y": 1e-300}, "--fov-y"),
])  # fmt: skip
def test_object_dataset_writer_refuses_settings_that_write_bad_cameras(tmp_path, fmt, kw, words):
    from latent3d.data.procedural.object_sets import write_multiview_dataset

    out = tmp_path / "objs"
    with pytest.raises(UserError) as e:
        write_multiview_dataset(out, ["chair"], 1, 2, 8, fmt, seed=0, progress=False, **kw)
    assert "\n" not in str(e.value) and words in str(e.value), str(e.value)
    assert not out.exists()  # nothing rendered or written


@pytest.mark.parametrize("radii, fov, words", [
    ((1e308, 1e308), 0.7, "--radius 1e+308: the camera pose at that distance: 12 non-finite"),
    ((2.0, 2e4), 0.7, "--radius 20000: the camera pose at that distance: translation |t| = 2e+04"),
    ((3.0, 3.0), 1e-300, "--fov 1e-300: the intrinsics of a 8x8 view: focal length fx = inf"),
])  # fmt: skip
def test_the_cameras_of_extreme_settings_are_checked_too(radii, fov, words):
    """Behind the declared ranges: the cameras the writer would write at the extreme settings pass the readers'
    checks, whatever ranges a later change declares."""
    from latent3d.data.procedural.object_sets import _check_extreme_cameras

    with pytest.raises(UserError, match=re.escape(words)):
        _check_extreme_cameras(*radii, 60.0, fov, 8)


def test_object_writers_refuse_bad_cameras_before_writing(tmp_path):
    from latent3d.data import write_transforms_dataset
    from latent3d.data.formats.multiview import ObjectViews, write_srn_object
    from latent3d.render.camera import intrinsics_from_fov, look_at

    vm = look_at(torch.tensor([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]]), torch.zeros(2, 3))
    Ks = intrinsics_from_fov(torch.full((2,), 0.8), 8, 8)
    bad_vm = vm.clone()
    bad_vm[1, :3, :3] *= 3.0
    masks = torch.ones(2, 8, 8, dtype=torch.bool)
    ov = ObjectViews("obj", torch.rand(2, 8, 8, 3), masks, bad_vm, Ks, ["a.png", "b.png"])
    with pytest.raises(UserError, match=r"obj/pose/b.txt: rotation is not orthonormal"):
        write_srn_object(tmp_path / "srn", ov)
    bad_K = Ks.clone()
    bad_K[:, 0, 0] = 1e-300
    with pytest.raises(UserError, match=r"transforms.json frame 0: focal length fx = 0"):
        write_transforms_dataset(tmp_path / "tj", torch.rand(2, 8, 8, 3), vm, bad_K)
    assert list(tmp_path.iterdir()) == []  # refused before the first file


@pytest.mark.parametrize("change, words", [
    (lambda K: K[0].__setitem__(0, 1e-300), "rgbd.json item 1: focal length fx = 1e-300"),
    (lambda K: K[1].__setitem__(2, 1e20), "rgbd.json item 1: principal point cy = 1e+20"),
    (lambda K: K[0].__setitem__(1, 0.5), "rgbd.json item 1: intrinsics must be [[fx, 0, cx]"),
    (lambda K: K.pop(), "rgbd.json: item 1's K must be a 3x3 matrix"),
])  # fmt: skip
def test_rgbd_set_reader_checks_each_K_against_its_image(tmp_path, change, words):
    from latent3d.data.formats.rgbd import RGBDSet, read_rgbd_set, write_rgbd_set
    from latent3d.render.camera import intrinsics_from_fov

    depth = torch.linspace(1.0, 2.0, 2 * 8 * 8).reshape(2, 1, 8, 8)
    Ks = intrinsics_from_fov(torch.full((2,), 0.8), 8, 8)
    write_rgbd_set(tmp_path, RGBDSet(torch.rand(2, 3, 8, 8), depth / 2, depth, Ks, ["a", "b"]))
    assert torch.equal(read_rgbd_set(tmp_path).K, Ks)
    index = json.loads((tmp_path / "rgbd.json").read_text())
    change(index["items"][1]["K"])
    (tmp_path / "rgbd.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match=re.escape(words)):
        read_rgbd_set(tmp_path)
