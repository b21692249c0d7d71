"""3DVADER's articulated data: hinge kinematics in closed form, renders whose part ids agree with the stored poses
and cameras, the folder-of-frames reader (round trip and every bad file as one line), and the command."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from latent3d.data.formats.video_frames import list_video_folders, read_video_folder, write_video_folder
from latent3d.data.procedural.articulated import ARTICULATED, hinge, hinge_box, joint_motion
from latent3d.data.procedural.articulated_videos import read_truth, write_articulated_videos
from latent3d.data.procedural.object_sets_config import ArticulatedVideosConfig
from latent3d.errors import UserError


def test_a_hinge_turns_points_about_its_line_by_the_angle():
    pivot, axis = (0.3, -0.2, 0.5), (1.0, 2.0, 2.0)  # |axis| = 3
    a = np.array(axis) / 3
    T = hinge(pivot, axis, torch.tensor([37.0, -120.0])).numpy()
    on_line = np.array([*(np.array(pivot) + 0.7 * a), 1.0])
    assert np.allclose(T @ on_line, on_line)  # the hinge line does not move
    off = np.array([0.9, 0.4, -0.1])
    r0 = off - pivot - ((off - pivot) @ a) * a  # the point's offset from the line
    for k, angle in enumerate((37.0, -120.0)):
        moved = (T[k] @ np.array([*off, 1.0]))[:3]
        r1 = moved - pivot - ((moved - pivot) @ a) * a
        signed = math.degrees(math.atan2(np.cross(r0, r1) @ a, r0 @ r1))  # right-handed about the axis
        assert signed == pytest.approx(angle, abs=1e-9)
        assert np.linalg.norm(r1) == pytest.approx(np.linalg.norm(r0))


def test_chains_compose_and_motion_stays_inside_the_limits():
    obj = ARTICULATED["desk_lamp"]()
    angles = joint_motion(obj, 30, torch.Generator().manual_seed(3))
    lo = torch.tensor([j.limits[0] for j in obj.joints[1:]], dtype=torch.float64)
    hi = torch.tensor([j.limits[1] for j in obj.joints[1:]], dtype=torch.float64)
    assert ((angles >= lo - 1e-9) & (angles <= hi + 1e-9)).all()
    assert (angles[1:] - angles[:-1]).abs().max() < 15.0  # smooth: a few degrees per frame
    T = obj.transforms(angles[7])
    j1, j2, j3 = obj.joints[1], obj.joints[2], obj.joints[3]
    expected = hinge(j1.pivot, j1.axis, angles[7, 0]) @ hinge(j2.pivot, j2.axis, angles[7, 1]) @ hinge(
        j3.pivot, j3.axis, angles[7, 2])
    assert torch.allclose(T[3], expected) and torch.equal(T[0], torch.eye(4, dtype=torch.float64))
    shade_pivot = torch.tensor([*j3.pivot, 1.0], dtype=torch.float64)  # where the shade hangs moves with the arm
    assert torch.allclose(T[3] @ shade_pivot, T[2] @ shade_pivot)


def project(V: np.ndarray, K: np.ndarray, x: np.ndarray) -> tuple[int, int]:
    c = V[:3, :3] @ x + V[:3, 3]
    u = K @ (c / c[2])
    return int(u[1]), int(u[0])  # row, column of the pixel containing the point


def test_part_ids_masks_and_stored_poses_agree(tmp_path):
    cfg = ArticulatedVideosConfig(n_videos=2, frames=6, size=64, kinds=("hinge_box", "walker"))
    write_articulated_videos(tmp_path, cfg, seed=5, progress=False)
    folder = tmp_path / "video_000"
    video, t = read_video_folder(folder), read_truth(folder)
    assert t["object"] == "hinge_box" and video.caption == hinge_box(video.caption.split()[1]).caption
    lid_center = np.array([*hinge_box().parts[1][0].center, 1.0])  # the lid plate, rest pose
    for k, name in enumerate(video.names):
        from PIL import Image

        parts = np.asarray(Image.open(folder / "eval" / "parts" / name))
        assert np.array_equal(parts > 0, video.masks[k])  # every object pixel has its part
        assert set(np.unique(parts)) == {0, 1, 2}
        posed = t["part_transforms"][k, 1] @ lid_center
        assert parts[project(t["viewmats"][k], t["Ks"][k], posed[:3])] == 2, f"frame {k}: the lid is not there"
        white = (video.frames[k] == 255).all(-1)
        assert (white & video.masks[k]).mean() < 0.01 and white[~video.masks[k]].mean() > 0.95  # white background
    angles = t["angles_deg"][:, 0]
    assert angles.max() - angles.min() > 10  # the lid moves


def test_video_folders_round_trip_and_bad_files_are_one_line(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    masks = rng.random((3, 10, 12)) > 0.5
    write_video_folder(tmp_path / "clip", frames, masks, "a  waving\nhand")
    got = read_video_folder(tmp_path / "clip")
    assert np.array_equal(got.frames, frames) and np.array_equal(got.masks, masks) and got.caption == "a waving hand"
    assert list_video_folders(tmp_path) == [tmp_path / "clip"]

    def refused(match: str) -> None:
        with pytest.raises(UserError, match=match):
            read_video_folder(tmp_path / "clip")

    clip = tmp_path / "clip"
    (clip / "00010.png").write_bytes((clip / "00002.png").read_bytes())
    refused("00010.png: missing; masks/ holds one mask per frame")
    (clip / "masks" / "00010.png").write_bytes((clip / "masks" / "00002.png").read_bytes())
    assert read_video_folder(clip).names == ["00000.png", "00001.png", "00002.png", "00010.png"]  # by number
    (clip / "00010.png").unlink()
    refused("a mask without its frame 00010.png")
    (clip / "masks" / "00010.png").unlink()
    (tmp_path / "clip" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    refused("00001.png: not a readable video frame")
    write_video_folder(tmp_path / "clip", np.zeros((2, 8, 8, 3), np.uint8))
    refused("every frame of a video has one size")
    with pytest.raises(UserError, match="is a single video folder"):
        list_video_folders(tmp_path / "clip")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "clip" / "masks" / "elsewhere")
    refused("leaves the dataset folder")
    with pytest.raises(UserError, match="no numbered frames"):
        read_video_folder(outside)


def test_data_articulated_command(tmp_path, capsys):
    from latent3d.cli import main

    args = ["data", "articulated", "--n-videos", "2", "--frames", "3", "--size", "24", "--seed", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for p in sorted((tmp_path / "a").rglob("*.png")):
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()  # same seed, same files
    assert len(list_video_folders(tmp_path / "a")) == 2
    assert main([*args[:-2], "--kinds", "hinge_box,octopus", "--out", str(tmp_path / "c")]) == 2
    assert "unknown articulated object octopus" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
