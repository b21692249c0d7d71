"""3DVADER stage 3, generation side: the decoder's skinning head saved and read back with the run's motions, part
motions (root-relative, resampled: closed forms), the animation renderer against the rigid volume renderer, and
`latent3d object --animate` refusing what it cannot animate before any weights load."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from latent3d.errors import UserError
from latent3d.systems.autodecoder.stage1.cameras import axis_angle_to_matrix
from latent3d.systems.autodecoder.stage3.motion import check_motions, resample, root_relative
from latent3d.systems.autodecoder.stage3.skinning import part_transforms


def _turn(axis: list[float], deg: torch.Tensor) -> torch.Tensor:  # [F] -> [F, 3] axis-angle
    return torch.tensor(axis, dtype=torch.float64) * torch.deg2rad(deg.double())[:, None]


def test_root_relative_motion_is_the_hinge_alone_and_resampling_turns_along_it():
    """A root that drifts (turn about z + translation) carrying a child hinged about x by phi_f: relative to the root
    the child turns by exactly phi_f about x, and stretched to 2F - 1 frames it passes through the mid angles."""
    phi = torch.tensor([0.0, 20.0, 50.0, 90.0])
    root = part_transforms(_turn([0, 0, 1], torch.tensor([0.0, 5.0, 11.0, 18.0])),
                           torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0.05, 0], [0.3, 0.1, 0]], dtype=torch.float64))
    hinge = part_transforms(_turn([1, 0, 0], phi), torch.zeros(4, 3, dtype=torch.float64))
    motion = torch.stack([root, root @ hinge], 1)  # [F, 2, 4, 4]
    rel = root_relative(motion)
    torch.testing.assert_close(rel[:, 0], torch.eye(4, dtype=torch.float64).expand(4, 4, 4))
    torch.testing.assert_close(rel[:, 1], hinge)
    long = resample(rel, 7)
    mids = torch.tensor([10.0, 35.0, 70.0])  # halfway between consecutive phi
    torch.testing.assert_close(long[1::2, 1], part_transforms(_turn([1, 0, 0], mids), torch.zeros(3, 3).double()))
    torch.testing.assert_close(long[0::2], rel)


def test_motions_that_are_not_rigid_transforms_are_refused():
    good = part_transforms(torch.randn(3, 2, 3), torch.randn(3, 2, 3))[None]
    assert torch.equal(check_motions(good, 2, "m", "fix"), good)
    for bad in (good[..., :3, :], good.clone().mul_(1.1), torch.where(good == 0, math.nan, good), good[:, :, :1]):
        with pytest.raises(UserError, match=r"'motions' must be finite rigid transforms \[M, F, 2, 4, 4\]"):
            check_motions(bad, 2, "m", "fix")


def _two_blocks(N: int = 24) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A grey base (part 0) below a red lid (part 1), skinning logits +-8 by height."""
    density = torch.zeros(1, N, N, N)
    density[:, 6:18, 6:18, 6:11] = 30.0  # (x, y, z): base
    density[:, 6:18, 6:18, 12:15] = 30.0  # lid
    rgb = torch.full((3, N, N, N), 0.5)
    rgb[:, :, :, 12:] = torch.tensor([0.9, 0.1, 0.1])[:, None, None, None]
    z = torch.arange(N).float()
    lid = (z >= 12).float() * 16 - 8.0  # [N] along z
    skin = torch.stack([-lid, lid])[:, None, None, :].expand(-1, N, N, N)
    return density, rgb, skin.contiguous()


def test_an_unmoved_animation_is_the_rigid_render_and_turning_the_lid_leaves_the_base_alone():
    from latent3d.render.camera import orbit_cameras
    from latent3d.render.volume import render_grid_views
    from latent3d.systems.autodecoder.stage3.animate import animation_frames

    density, rgb, skin = _two_blocks()
    box, size = 1.3, 32
    rest = torch.eye(4).expand(1, 2, 4, 4)
    # the lid turns by 60 degrees about the x axis through its back edge (y = 0.5 box, z = the lid's bottom)
    pivot = torch.tensor([0.0, 0.5 * box, (12 / 24) * 2 * box - box])
    R = axis_angle_to_matrix(torch.tensor([math.radians(60), 0.0, 0.0]))
    lid = torch.eye(4)
    lid[:3, :3], lid[:3, 3] = R, pivot - R @ pivot
    motion = torch.cat([rest, torch.stack([torch.eye(4), lid])[None]])
    got = animation_frames(density, rgb, skin, motion, size, 3.0, 20.0, 0.7, box, 96)
    V, K = orbit_cameras(3.0, 20.0, 0.0, 0.7, size, size)
    want, _ = render_grid_views(density[None], rgb[None], V, K, size, size, box, 96)
    # stratified samples differ between the renderers: compare means and the bulk of the pixels
    diff = (got[0] - want[0].reshape(size, size, 3)).abs()
    assert diff.mean() < 0.01 and torch.quantile(diff.flatten(), 0.95) < 0.05
    moved = (got[1] - got[0]).abs().amax(-1)  # [H, W]
    red = (got[0][..., 0] - got[0][..., 1] > 0.4)  # the lid as frame 0 shows it
    assert moved[red].mean() > 0.2  # the lid has gone
    base = (got[0] - 0.5).abs().amax(-1) < 0.08  # the grey base as frame 0 shows it
    assert base.sum() > 100 and moved[base].median() < 0.01  # most of it stays (the lid swings over a corner)


@pytest.fixture(scope="module")
def articulated(tmp_path_factory):
    """`data articulated` -> `train autodecoder --articulated` (per-video fits, then one decoder for all) ->
    `train object-diffusion` -> `object --animate`, all through the command line, at a small scale."""
    from latent3d.cli import main

    tmp = tmp_path_factory.mktemp("articulated")
    assert main(["data", "articulated", "--out", str(tmp / "d"), "--n-videos", "2", "--frames", "8", "--size", "24",
                 "--kinds", "hinge_box", "--seed", "1"]) == 0  # fmt: skip
    assert main(["train", "autodecoder", "--data", str(tmp / "d"), "--out", str(tmp / "r"), "--articulated", "--steps",
                 "300", "--decoder-steps", "400", "--pose-steps", "300", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["train", "object-diffusion", "--autodecoder", str(tmp / "r"), "--out", str(tmp / "g"), "--steps", "8",
                 "--model-channels", "8", "--attention", "", "--batch-size", "2", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["object", "a red box with a lid", "--model", str(tmp / "g" / "model"), "--out", str(tmp / "o"),
                 "--n", "1", "--steps", "2", "--views", "1", "--frames", "6", "--size", "32", "--animate", "--motion",
                 "1", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["object", "a red box with a lid", "--model", str(tmp / "g" / "model"), "--out", str(tmp / "v"),
                 "--n", "1", "--steps", "2", "--views", "1", "--frames", "6", "--size", "32", "--animate",
                 "--motion-video", str(tmp / "d" / "video_000"), "--device", "cpu"]) == 0  # fmt: skip
    return tmp


def test_one_decoder_for_all_videos_renders_their_held_out_frames_near_the_per_video_fits(articulated):
    """The run's decoder, read back, renders each video's held-out frames (its saved motion) as eval.json says, within
    3 dB of the per-video fits and far above the white background; its latents are the ones stage 2 reads."""
    from safetensors.torch import load_file

    from latent3d.data.formats.video_frames import read_video_folder
    from latent3d.metrics.image import psnr
    from latent3d.systems.autodecoder.config import ArticulatedConfig
    from latent3d.systems.autodecoder.stage1.run import load_autodecoder
    from latent3d.systems.autodecoder.stage3.train import fixed_camera, render_frames

    run = articulated / "r"
    report = json.loads((run / "eval.json").read_text())
    decoder, meta = load_autodecoder(run)
    latents = load_file(str(run / "latents.safetensors"))["latents"]
    assert decoder.parts == 2 and meta["parts"] == 2 and meta["motions"].shape == (2, 8, 2, 4, 4)
    V, K = fixed_camera(ArticulatedConfig(), 24, 24)
    for k, name in enumerate(("video_000", "video_001")):
        fit = load_file(str(run / name / "fit.safetensors"))
        assert torch.equal(meta["motions"][k], fit["transforms"])  # the tracked poses, held-out frames interpolated
        with torch.no_grad():
            torch.testing.assert_close(decoder.latent(torch.tensor([k]))[0], latents[k])
            density, rgb, skin = decoder.decode_skinned(latents[k:k + 1])
        truth = torch.from_numpy(read_video_folder(articulated / "d" / name).frames[[3, 7]]).float() / 255
        got = psnr(render_frames(density[0], rgb[0], skin[0], fit["transforms"][[3, 7]], V, K, (24, 24), 1.3), truth)
        entry = report["videos"][name]
        assert abs(got - entry["decoder_heldout_psnr"]) < 0.3  # stratified samples differ from eval's render
        assert entry["decoder_heldout_psnr"] > entry["heldout_psnr"] - 3.0
        assert entry["decoder_heldout_psnr"] > psnr(torch.ones_like(truth), truth) + 5.0


def test_animate_writes_the_sample_moved_by_the_chosen_training_motion(articulated):
    """animation.mp4 is the sampled object (the same seed's latent, decoded with its skinning) moved by the run's
    motion 1 relative to its root, stretched to --frames; frame 0 is the sample at rest, its first orbit view."""
    from safetensors.torch import load_file

    from latent3d.io.image import read_pil_array
    from latent3d.io.video import read_video
    from latent3d.systems.autodecoder.generate import FOV, sample_latents
    from latent3d.systems.autodecoder.stage2.generator import load_generator
    from latent3d.systems.autodecoder.stage3.animate import animation_frames

    gen = load_generator(articulated / "g" / "model")
    run_motions = load_file(str(articulated / "r" / "motions.safetensors"))["motions"]
    assert torch.equal(gen.motions, run_motions)
    sample = articulated / "o" / "sample_00"
    entry = json.loads((articulated / "o" / "run.json").read_text())["samples"][0]
    assert entry["animation"] == "animation.mp4" and entry["motion"] == 1 and entry["animation_frames"] == 6
    video = torch.from_numpy(read_video(sample / "animation.mp4").copy()).float() / 255  # [6, 32, 32, 3]
    lat = sample_latents(gen, ["a red box with a lid"], 2, 3.0, 0)
    with torch.no_grad():
        density, rgb, skin = gen.decoder.decode_skinned(lat)
    want = animation_frames(density[0], rgb[0], skin[0], resample(root_relative(run_motions[1]), 6), 32, 3.0, 20.0,
                            FOV, 1.3, 128)  # fmt: skip
    err = (video - want).abs().mean((1, 2, 3))
    assert err.max() < 0.03  # H.264 and stratified samples apart, the same frames
    view0 = torch.from_numpy(read_pil_array(sample / "views" / "000.png", "RGB", "view")[0].copy()).float() / 255
    assert (video[0] - view0).abs().mean() < 0.03
    still = animation_frames(density[0], rgb[0], skin[0], root_relative(run_motions[1][:1]).expand(6, -1, -1, -1), 32,
                             3.0, 20.0, FOV, 1.3, 128)  # fmt: skip
    # and it moves as the motion does: where the motion changes the frames, the video is nearer the moving renders
    # than the still ones
    moving = (want - still).abs().mean((1, 2, 3)) > 0.01
    assert moving.any() and err[moving].sum() < (video - still).abs().mean((1, 2, 3))[moving].sum()


def test_the_pose_network_reads_the_tracked_poses_and_drives_the_animation_from_a_video(articulated):
    """The run's pose network, carried by the generator, gives each training frame's part transforms within a few
    degrees of the tracked ones, and `--motion-video` animates the sample with the motion it reads."""
    from latent3d.data.formats.video_frames import read_video_folder
    from latent3d.io.video import read_video
    from latent3d.metrics.poses import rotation_angle_deg
    from latent3d.systems.autodecoder.generate import FOV, sample_latents
    from latent3d.systems.autodecoder.stage2.generator import load_generator
    from latent3d.systems.autodecoder.stage3.animate import animation_frames
    from latent3d.systems.autodecoder.stage3.posenet import predict_motion

    gen = load_generator(articulated / "g" / "model")
    run_motions = load_file(str(articulated / "r" / "motions.safetensors"))["motions"]
    vf = read_video_folder(articulated / "d" / "video_000")
    frames, masks = torch.from_numpy(vf.frames).float() / 255, torch.from_numpy(vf.masks)
    pred = predict_motion(gen.posenet, frames, masks)  # [8, 2, 4, 4]
    train = [0, 1, 2, 4, 5, 6]  # --holdout 4 leaves frames 3 and 7 out
    R_pred, R_track = pred[train, :, :3, :3].double(), run_motions[0][train, :, :3, :3].double()
    err = rotation_angle_deg(R_pred @ R_track.transpose(-1, -2))
    assert err.mean() < 3.0 and (pred[train, :, :3, 3] - run_motions[0][train, :, :3, 3]).abs().max() < 0.1
    video = torch.from_numpy(read_video(articulated / "v" / "sample_00" / "animation.mp4").copy()).float() / 255
    lat = sample_latents(gen, ["a red box with a lid"], 2, 3.0, 0)
    with torch.no_grad():
        density, rgb, skin = gen.decoder.decode_skinned(lat)
    want = animation_frames(density[0], rgb[0], skin[0], resample(root_relative(pred), 6), 32, 3.0, 20.0, FOV, 1.3,
                            128)  # fmt: skip
    assert (video - want).abs().mean((1, 2, 3)).max() < 0.03


def test_what_cannot_be_animated_is_refused_in_one_line_before_any_weights_load(articulated, tmp_path, capsys,
                                                                                 monkeypatch):  # fmt: skip
    """A rigid model, a motion it does not keep, a model without pose network, a --motion-video that is not a video;
    and a damaged 'parts' or motions in an articulated generator."""
    import shutil

    from latent3d.cli import main
    from latent3d.systems.autodecoder.stage2 import generator

    model = str(articulated / "g" / "model")
    no_net = tmp_path / "no_net"
    shutil.copytree(model, no_net)
    cfg = json.loads((no_net / "config.json").read_text())
    (no_net / "config.json").write_text(json.dumps(cfg | {"posenet": False}))
    bad_parts = tmp_path / "bad_parts"
    shutil.copytree(model, bad_parts)
    (bad_parts / "config.json").write_text(json.dumps(cfg | {"parts": 11}))
    out = ["--out", str(tmp_path / "o"), "--animate"]
    cases = [
        (["object", "a chair", *out], "has no parts to move"),
        (["object", "a box", "--model", model, "--motion", "2", *out], "keeps 2 training motions (0..1)"),
        (["object", "a box", "--model", str(no_net), "--motion-video", str(articulated / "d" / "video_000"), *out],
         "has no pose network"),
        (["object", "a box", "--model", model, "--motion-video", str(tmp_path / "none"), *out], "is not a folder"),
        (["object", "a box", "--model", model, "--motion-video", str(articulated / "d"), *out], "numbered frames"),
    ]
    monkeypatch.setattr(generator, "load_generator", lambda *a: pytest.fail("weights loaded"))
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("latent3d: error:") and len(err.splitlines()) == 1 and expected in err, (argv, err)
    assert not (tmp_path / "o").exists()
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"'parts' must be an integer in 0\.\.10"):
        generator.load_generator(bad_parts)
    nan = load_file(str(articulated / "g" / "model" / "model.safetensors"))
    nan["motions"][0, 1, 1, 0, 0] = math.nan
    from safetensors.torch import save_file

    save_file(nan, str(no_net / "model.safetensors"))
    with pytest.raises(UserError, match="'motions' must be finite rigid transforms"):
        generator.load_generator(no_net)


def test_the_generator_card_names_the_videos_and_the_articulated_parts(articulated):
    card = (articulated / "g" / "model" / "MODEL_CARD.md").read_text()
    report = json.loads((articulated / "r" / "eval.json").read_text())
    assert "`latent3d data articulated --n-videos 2 --frames 8 --size 24 --kinds hinge_box`" in card
    assert f"PSNR {report['mean_heldout_psnr']} dB (per-video fits), {report['decoder']['mean_heldout_psnr']} dB" in card
    assert "- Articulated: 2 rigid parts" in card and "2 training motions" in card and "a pose network" in card
