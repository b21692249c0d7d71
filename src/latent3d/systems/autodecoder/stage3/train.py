"""``latent3d train autodecoder --articulated --parts P``: 3DVADER stage 3 on monocular videos (arXiv 2307.05445,
Sec. 3) without cameras. Every video of a folder-of-frames dataset (:mod:`latent3d.data.formats.video_frames`, e.g.
``latent3d data articulated``) is fitted by :func:`.fit.fit_video` with one fixed camera for all its frames (an
orbit camera at ``camera_radius`` and ``camera_elevation`` looking at the origin, vertical field of view ``fov_y``):
the root part's per-frame pose carries the camera's motion, as a fixed field of view and learned poses do in the
paper. Every ``holdout``-th frame (index % K == K - 1) is left out and rendered from its neighbours' interpolated part
poses (rotations by geodesic interpolation, translations linearly).

The run folder: ``RUN/<video>/fit.safetensors`` (canonical density [1, N, N, N], rgb [3, N, N, N], skinning logits
[P, N, N, N], every frame's part transforms [F, P, 4, 4]), ``RUN/<video>/heldout/NNNNN.png``, ``RUN/eval.json``
(per video: held-out PSNR; and where the video has ``eval/`` truth, as ``latent3d data articulated`` writes: the
best-matching part IoU over all frames and each joint's angle error, the fitted child part's rotation relative to its
fitted parent against the true joint angle, both from frame 0) and ``RUN/run.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.systems.autodecoder.config import ArticulatedConfig
from latent3d.systems.autodecoder.stage3.fit import FitConfig, VideoFit
from latent3d.systems.autodecoder.stage3.animate import render_frames
from latent3d.systems.autodecoder.stage3.motion import interpolate_transforms
from latent3d.systems.autodecoder.stage3.shared import Track


def fixed_camera(cfg: ArticulatedConfig, height: int, width: int) -> tuple[Tensor, Tensor]:  # -> [4, 4], [3, 3]
    """The one camera every frame of a video is seen from (module docstring)."""
    from latent3d.render.camera import orbit_cameras

    V, K = orbit_cameras(cfg.camera_radius, cfg.camera_elevation, 0.0, cfg.fov_y, width, height)
    return V[0], K[0]


def _score_truth(fit: VideoFit, folder: Path, V: Tensor, K: Tensor, size: tuple[int, int], parts: int) -> dict:
    """Part IoU over all frames and joint angle errors against the video's ``eval/`` truth (see the module docstring);
    {} when it has none."""
    import numpy as np

    from latent3d.data.procedural.articulated_videos import read_truth
    from latent3d.io.image import read_pil_array
    from latent3d.systems.autodecoder.stage3.fit import best_match_iou, part_maps

    try:
        truth = read_truth(folder)
        names = sorted(p.name for p in (folder / "eval" / "parts").iterdir())
        true_parts = torch.from_numpy(np.stack([read_pil_array(folder / "eval" / "parts" / n, "L", "part ids")[0]
                                                for n in names]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return {}
    n_true = len(truth["parts"])
    if n_true > parts or len(true_parts) != len(fit.transforms):
        return {"note": f"the video has {n_true} true parts; fitted {parts}: not scored"}
    maps = part_maps(fit, V.expand(len(fit.transforms), 4, 4), K.expand(len(fit.transforms), 3, 3), *size)
    iou, match = best_match_iou(maps, true_parts.long(), parts)  # match[k]: the true part of fitted part k
    joints = joint_errors(fit.transforms, truth, match)
    return {"part_iou": round(iou, 4), "part_match": match, "joints": joints}


def joint_errors(transforms: Tensor, truth: dict, match: list[int], frames: list[int] | None = None) -> dict:
    """Each true joint's angle error (mean, max, the true range; degrees) over ``frames`` (default: all): the fitted
    child part's rotation relative to its fitted parent against the true joint angle, both from frame 0; ``match[k]``
    is the true part of fitted part k (:func:`.fit.best_match_iou`)."""
    from latent3d.systems.autodecoder.stage3.fit import relative_angles_deg

    fitted_of = {true: k for k, true in enumerate(match)}
    angles = torch.from_numpy(truth["angles_deg"])  # [F, P - 1]
    idx = list(range(len(angles))) if frames is None else frames
    joints = {}
    for child, joint in enumerate(truth["joints"]):
        if joint is None or child not in fitted_of or joint["parent"] not in fitted_of:
            continue
        got = relative_angles_deg(transforms, fitted_of[child], root=fitted_of[joint["parent"]])[idx]
        true = (angles[idx, child - 1] - angles[0, child - 1]).abs()
        err = (got - true).abs()
        joints[truth["parts"][child]] = {"mean_error_deg": round(float(err.mean()), 2),
                                         "max_error_deg": round(float(err.max()), 2),
                                         "true_range_deg": round(float(true.max()), 2)}  # fmt: skip
    return joints


@dataclass
class Fitted:
    """A fitted video: its track (training frames and poses, :class:`.shared.Track`), every frame's transforms
    ``[F, P, 4, 4]`` (the held-out ones interpolated), the held-out frame indices, all frames and masks, its camera."""

    track: Track
    every: Tensor
    held: list[int]
    frames: Tensor  # [F, H, W, 3] in [0, 1]
    masks: Tensor  # [F, H, W] bool
    V: Tensor
    K: Tensor


def _fit_one(vf, cfg: ArticulatedConfig, out_dir: Path, progress: bool) -> tuple[dict, Fitted]:
    """Fit one video (``VideoFrames``), write ``RUN/<video>/`` and return its eval.json entry and the fit."""
    from latent3d.data.formats.multiview import white_mask
    from latent3d.io.image import save_image
    from latent3d.io.model_folder import save_tensors
    from latent3d.metrics.image import psnr
    from latent3d.render.camera import pixel_rays
    from latent3d.systems.autodecoder.stage3.fit import fit_video

    n, H, W = vf.frames.shape[:3]
    held = [i for i in range(n) if cfg.holdout and i % cfg.holdout == cfg.holdout - 1]
    keep = [i for i in range(n) if i not in held]
    frames = torch.from_numpy(vf.frames).float() / 255.0
    masks = torch.from_numpy(vf.masks if vf.masks is not None else white_mask(vf.frames))
    V, K = fixed_camera(cfg, H, W)
    fcfg = FitConfig(parts=cfg.parts, grid=cfg.grid, steps=cfg.steps, free_root=True,
                     root_smooth_weight=cfg.root_smoothness, seed=cfg.seed)  # fmt: skip
    torch.manual_seed(cfg.seed)
    fit = fit_video(frames[keep], masks[keep], V.expand(len(keep), 4, 4), K.expand(len(keep), 3, 3), fcfg,
                    progress=progress)  # fmt: skip
    every = torch.zeros(n, cfg.parts, 4, 4)
    every[keep] = fit.transforms.float()
    if held:
        every[held] = interpolate_transforms(fit.transforms.float(), keep, held)
    entry: dict = {"frames": n, "heldout_frames": len(held), "final_loss": round(fit.losses[-1], 5)}
    if held:
        rgb = render_frames(fit.density, fit.rgb, fit.skin_logits, every[held], V, K, (H, W), fcfg.box)
        entry["heldout_psnr"] = round(psnr(rgb, frames[held]), 3)
        for j, i in enumerate(held):
            save_image(out_dir / vf.folder.name / "heldout" / vf.names[i], rgb[j].numpy())
    entry.update(_score_truth(VideoFit(fit.density, fit.rgb, fit.skin_logits, every, fit.losses), vf.folder, V, K,
                              (H, W), cfg.parts))  # fmt: skip
    save_tensors({"density": fit.density, "rgb": fit.rgb, "skin_logits": fit.skin_logits, "transforms": every},
                 out_dir / vf.folder.name / "fit.safetensors",
                 metadata={"frames": json.dumps(vf.names), "box": str(fcfg.box)})  # fmt: skip
    o, d = pixel_rays(V[None], K[None], W, H, normalize=True)
    track = Track(frames[keep], masks[keep].float(), o.reshape(-1, 3), d.reshape(-1, 3), every[keep], fit)
    return entry, Fitted(track, every, held, frames, masks, V, K)


def _shared(videos, fitted: list[Fitted], report: dict, cfg: ArticulatedConfig, out_dir: Path, data,
            command: str | None, progress: bool) -> None:  # fmt: skip
    """Train the one decoder for all videos, score it on the held-out frames and write the stage-1 run files
    (``model/``, ``latents.safetensors``, ``motions.safetensors``; :mod:`.shared`)."""
    from latent3d.metrics.image import psnr
    from latent3d.systems.autodecoder.stage1.run import export_run
    from latent3d.systems.autodecoder.stage3.motion import MOTIONS, write_motions
    from latent3d.systems.autodecoder.stage3.shared import train_shared_decoder

    box = FitConfig.box
    model, losses = train_shared_decoder([f.track for f in fitted], cfg.parts, cfg.decoder_steps, box, cfg.seed,
                                         progress)  # fmt: skip
    scores = []
    for k, (vf, f) in enumerate(zip(videos, fitted)):
        if not f.held:
            continue
        with torch.no_grad():
            density, rgb, skin = model.decode_skinned(model.latent(torch.tensor([k])))
        got = render_frames(density[0], rgb[0], skin[0], f.every[f.held], f.V, f.K, f.frames.shape[1:3], box)
        scores.append(round(psnr(got, f.frames[f.held]), 3))
        report["videos"][vf.folder.name]["decoder_heldout_psnr"] = scores[-1]
    report["decoder"] = {"steps": cfg.decoder_steps, "final_loss": round(losses[-1], 5),
                         "mean_heldout_psnr": round(sum(scores) / len(scores), 3) if scores else None}  # fmt: skip
    names = [vf.folder.name for vf in videos]
    write_motions(out_dir / MOTIONS, [f.every for f in fitted], names)
    if cfg.pose_steps:
        report["pose_net"] = _pose_net(videos, fitted, report, cfg, out_dir, progress)
    export_run(out_dir, model, names, model.cfg, data, report, command, captions=[vf.caption or "" for vf in videos])


def _pose_net(videos, fitted: list[Fitted], report: dict, cfg: ArticulatedConfig, out_dir: Path,
              progress: bool) -> dict:  # fmt: skip
    """Train the pose network on every video's training frames and tracked poses, write ``RUN/posenet/`` and score
    it on the held-out frames: each joint's angle error against the data's truth where it has some (``eval/``)."""
    from latent3d.data.procedural.articulated_videos import read_truth
    from latent3d.io.model_folder import write_model_folder
    from latent3d.systems.autodecoder.stage3.posenet import INPUT, POSENET, pose_input, predict_motion, train_pose_net

    keep = [[i for i in range(len(f.frames)) if i not in f.held] for f in fitted]
    net, losses = train_pose_net([pose_input(f.frames, f.masks)[k] for f, k in zip(fitted, keep)],
                                 [f.every[k] for f, k in zip(fitted, keep)], cfg.parts, cfg.pose_steps, cfg.seed,
                                 progress)  # fmt: skip
    write_model_folder(out_dir / "posenet", POSENET, {"parts": cfg.parts, "input": INPUT}, net.state_dict())
    errors = []
    for vf, f in zip(videos, fitted):
        match = report["videos"][vf.folder.name].get("part_match")
        if not f.held or match is None:
            continue  # no truth, or a truth of other parts
        joints = joint_errors(predict_motion(net, f.frames, f.masks), read_truth(vf.folder), match, f.held)
        errors += [j["mean_error_deg"] for j in joints.values()]
    mean = round(sum(errors) / len(errors), 2) if errors else None
    return {"steps": cfg.pose_steps, "final_loss": round(losses[-1], 6), "heldout_joint_error_deg": mean}


def train_articulated(data: str | Path, out_dir: str | Path, cfg: ArticulatedConfig, progress: bool = True,
                      command: str | None = None) -> dict:  # fmt: skip
    """Fit every video of ``data`` (and, with ``decoder_steps``, the one decoder for all) and write the run (module
    docstring); returns ``eval.json``'s content."""
    from latent3d.data.formats.video_frames import list_video_folders, read_video_folder
    from latent3d.io.atomic import write_text

    out_dir = Path(out_dir)
    folders = list_video_folders(data)
    videos = [read_video_folder(f, root=data) for f in folders]  # every bad file is one line before any fit
    report: dict = {"videos": {}}
    fitted = []
    for vf in videos:
        report["videos"][vf.folder.name], f = _fit_one(vf, cfg, out_dir, progress)
        fitted.append(f)
    scored = [e["heldout_psnr"] for e in report["videos"].values() if "heldout_psnr" in e]
    report["mean_heldout_psnr"] = round(sum(scored) / len(scored), 3) if scored else None
    if cfg.decoder_steps:
        _shared(videos, fitted, report, cfg, out_dir, data, command, progress)
    else:
        write_text(out_dir / "eval.json", json.dumps(report, indent=1))
        write_text(out_dir / "run.json", json.dumps({"command": command, "data": str(data)}, indent=1))
    return report
