"""3DVADER stage 3's command, `train autodecoder --articulated`: the rotation logarithm and the interpolation of part
poses for held-out frames in closed form, the truth scoring (a fit that moves its parts as the truth scores 0°),
and the run folder a fit writes (held-out frames rendered and scored, weights that render them again)."""

from __future__ import annotations

import json
import math

import torch
from safetensors.torch import load_file

from latent3d.data.procedural.articulated import hinge_box, joint_motion
from latent3d.systems.autodecoder.stage1.cameras import axis_angle_to_matrix, rotation_log
from latent3d.systems.autodecoder.stage3.fit import VideoFit
from latent3d.systems.autodecoder.stage3.motion import interpolate_transforms
from latent3d.systems.autodecoder.stage3.train import _score_truth


def test_rotation_log_inverts_rodrigues():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(64, 3, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True) * torch.rand(64, 1, generator=g, dtype=torch.float64) * 3.0  # < pi
    torch.testing.assert_close(rotation_log(axis_angle_to_matrix(v)), v, rtol=0, atol=1e-9)
    tiny = torch.tensor([[1e-9, 0.0, -2e-9]], dtype=torch.float64)
    torch.testing.assert_close(rotation_log(axis_angle_to_matrix(tiny)), tiny, rtol=0, atol=1e-15)


def test_held_out_poses_turn_along_the_geodesic_between_their_neighbours():
    axis = torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64).repeat(3, 2, 1, 1)  # frames 0, 2, 5 known; 2 parts
    for k, deg in enumerate((0.0, 40.0, 100.0)):
        T[k, 1, :3, :3] = axis_angle_to_matrix(axis * math.radians(deg))
        T[k, 1, :3, 3] = torch.tensor([deg / 10, 0.0, 1.0])
    got = interpolate_transforms(T, [0, 2, 5], [1, 3, 6])
    torch.testing.assert_close(got[0, 1, :3, :3], axis_angle_to_matrix(axis * math.radians(20.0)))
    torch.testing.assert_close(got[1, 1, :3, :3], axis_angle_to_matrix(axis * math.radians(60.0)))  # 1/3 of 40 -> 100
    torch.testing.assert_close(got[1, 1, :3, 3], torch.tensor([6.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(got[2], T[2])  # past the last known frame: its pose
    torch.testing.assert_close(got[:, 0], T[:3, 0])  # a part that never moves stays put


def test_truth_scoring_gives_zero_for_the_true_motion_and_the_error_of_a_frozen_lid(tmp_path):
    """A fit carrying the true part transforms (seen from the video's own cameras: part IoU needs the grid, so a
    fit whose parts are the true parts' voxels) scores 0° on the lid; a fit whose lid never turns scores the true
    range."""
    from latent3d.cli import main

    assert main(["data", "articulated", "--out", str(tmp_path / "d"), "--n-videos", "1", "--frames", "6", "--size",
                 "24", "--kinds", "hinge_box"]) == 0  # fmt: skip
    folder = tmp_path / "d" / "video_000"
    truth = json.loads((folder / "eval" / "poses.json").read_text())
    T = torch.tensor(truth["part_transforms"], dtype=torch.float32)  # [F, 2, 4, 4]
    N = 8
    fit = VideoFit(torch.zeros(1, N, N, N), torch.zeros(3, N, N, N), torch.zeros(2, N, N, N), T, [0.0])
    V, K = torch.tensor(truth["viewmats"][0]).float(), torch.tensor(truth["Ks"][0]).float()
    s = _score_truth(fit, folder, V, K, (24, 24), 2)
    assert s["joints"]["lid"]["mean_error_deg"] < 1e-3, s
    frozen = T.clone()
    frozen[:, 1] = T[:1, 1]
    s = _score_truth(VideoFit(fit.density, fit.rgb, fit.skin_logits, frozen, [0.0]), folder, V, K, (24, 24), 2)
    true = torch.tensor(truth["angles_deg"])[:, 0]
    # float32 poses, rounded to 0.01
    assert abs(s["joints"]["lid"]["mean_error_deg"] - float((true - true[0]).abs().mean())) < 0.05, s
    assert abs(s["joints"]["lid"]["true_range_deg"] - float((true - true[0]).abs().max())) < 1e-2


def test_the_articulated_command_writes_fits_that_render_its_held_out_frames(tmp_path):
    from latent3d.cli import main
    from latent3d.io.image import read_pil_array
    from latent3d.metrics.image import psnr
    from latent3d.render.camera import pixel_rays
    from latent3d.systems.autodecoder.config import ArticulatedConfig
    from latent3d.systems.autodecoder.stage3.skinning import render_skinned
    from latent3d.systems.autodecoder.stage3.train import fixed_camera

    assert main(["data", "articulated", "--out", str(tmp_path / "d"), "--n-videos", "1", "--frames", "8", "--size",
                 "24", "--kinds", "hinge_box"]) == 0  # fmt: skip
    assert main(["train", "autodecoder", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--articulated",
                 "--steps", "60", "--decoder-steps", "0", "--device", "cpu"]) == 0  # fmt: skip
    report = json.loads((tmp_path / "r" / "eval.json").read_text())
    v = report["videos"]["video_000"]
    assert v["frames"] == 8 and v["heldout_frames"] == 2 and set(v["joints"]) == {"lid"}  # --holdout 4: frames 3, 7
    w = load_file(str(tmp_path / "r" / "video_000" / "fit.safetensors"))
    assert w["transforms"].shape == (8, 2, 4, 4) and torch.equal(w["transforms"][0], torch.eye(4).repeat(2, 1, 1))
    V, K = fixed_camera(ArticulatedConfig(), 24, 24)
    o, d = pixel_rays(V[None].expand(2, 4, 4), K[None].expand(2, 3, 3), 24, 24, normalize=True)
    with torch.no_grad():
        rgb, _ = render_skinned(w["density"], w["rgb"], w["skin_logits"], w["transforms"][[3, 7]], o.reshape(2, -1, 3),
                                d.reshape(2, -1, 3), 1.3, 64)  # fmt: skip
    saved = torch.stack([torch.tensor(read_pil_array(tmp_path / "r" / "video_000" / "heldout" / n, "RGB", "x")[0])
                         for n in ("00003.png", "00007.png")]).float() / 255  # fmt: skip
    torch.testing.assert_close(rgb.reshape(2, 24, 24, 3).clamp(0, 1), saved, rtol=0, atol=1 / 255)
    true = torch.stack([torch.tensor(read_pil_array(tmp_path / "d" / "video_000" / n, "RGB", "x")[0])
                        for n in ("00003.png", "00007.png")]).float() / 255  # fmt: skip
    assert abs(psnr(saved, true) - v["heldout_psnr"]) < 0.1
