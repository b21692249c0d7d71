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
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.systems.autodecoder.config import ArticulatedConfig
from latent3d.systems.autodecoder.stage1.cameras import axis_angle_to_matrix, rotation_log
from latent3d.systems.autodecoder.stage3.fit import FitConfig, VideoFit


def interpolate_transforms(known: Tensor, at: list[int], query: list[int]) -> Tensor:
    """Part transforms ``known [K, P, 4, 4]`` of the frames ``at`` (sorted) -> ``[Q, P, 4, 4]`` at frames ``query``:
    between two known frames, the rotation turns along the geodesic and the translation moves linearly; beyond the
    ends, the nearest known frame's transforms."""
    out = []
    for q in query:
        hi = next((i for i, a in enumerate(at) if a >= q), len(at) - 1)
        lo = max(0, hi - 1) if at[hi] > q else hi
        a, b = known[lo], known[hi]
        s = 0.0 if at[hi] == at[lo] else (q - at[lo]) / (at[hi] - at[lo])
        s = min(1.0, max(0.0, s))
        rel = rotation_log(b[:, :3, :3] @ a[:, :3, :3].transpose(-1, -2))  # [P, 3]
        T = a.clone()
        T[:, :3, :3] = axis_angle_to_matrix(rel * s) @ a[:, :3, :3]
        T[:, :3, 3] = (1 - s) * a[:, :3, 3] + s * b[:, :3, 3]
        out.append(T)
    return torch.stack(out)


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
    from latent3d.systems.autodecoder.stage3.fit import best_match_iou, part_maps, relative_angles_deg

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
    fitted_of = {true: k for k, true in enumerate(match)}
    joints = {}
    angles = torch.from_numpy(truth["angles_deg"])  # [F, P - 1]
    for child, joint in enumerate(truth["joints"]):
        if joint is None or child not in fitted_of or joint["parent"] not in fitted_of:
            continue
        got = relative_angles_deg(fit.transforms, fitted_of[child], root=fitted_of[joint["parent"]])
        true = (angles[:, child - 1] - angles[0, child - 1]).abs()
        err = (got - true).abs()
        joints[truth["parts"][child]] = {"mean_error_deg": round(float(err.mean()), 2),
                                         "max_error_deg": round(float(err.max()), 2),
                                         "true_range_deg": round(float(true.max()), 2)}  # fmt: skip
    return {"part_iou": round(iou, 4), "joints": joints}


def train_articulated(data: str | Path, out_dir: str | Path, cfg: ArticulatedConfig, progress: bool = True,
                      command: str | None = None) -> dict:  # fmt: skip
    """Fit every video of ``data`` and write the run (module docstring); returns ``eval.json``'s content."""
    from latent3d.data.formats.multiview import white_mask
    from latent3d.data.formats.video_frames import list_video_folders, read_video_folder
    from latent3d.io.atomic import write_text
    from latent3d.io.image import save_image
    from latent3d.io.model_folder import save_tensors
    from latent3d.metrics.image import psnr
    from latent3d.systems.autodecoder.stage3.fit import fit_video
    from latent3d.systems.autodecoder.stage3.skinning import render_skinned
    from latent3d.render.camera import pixel_rays

    out_dir = Path(out_dir)
    folders = list_video_folders(data)
    videos = [read_video_folder(f, root=data) for f in folders]  # every bad file is one line before any fit
    report: dict = {"videos": {}}
    for vf in videos:
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
        full = VideoFit(fit.density, fit.rgb, fit.skin_logits, every, fit.losses)
        entry: dict = {"frames": n, "heldout_frames": len(held), "final_loss": round(fit.losses[-1], 5)}
        if held:
            o, d = pixel_rays(V.expand(len(held), 4, 4), K.expand(len(held), 3, 3), W, H, normalize=True)
            with torch.no_grad():
                rgb, _ = render_skinned(fit.density, fit.rgb, fit.skin_logits, every[held], o.reshape(len(held), -1, 3),
                                        d.reshape(len(held), -1, 3), fcfg.box, 64)  # fmt: skip
            rgb = rgb.reshape(len(held), H, W, 3).clamp(0, 1)
            entry["heldout_psnr"] = round(psnr(rgb, frames[held]), 3)
            for j, i in enumerate(held):
                save_image(out_dir / vf.folder.name / "heldout" / vf.names[i], rgb[j].numpy())
        entry.update(_score_truth(full, vf.folder, V, K, (H, W), cfg.parts))
        save_tensors({"density": fit.density, "rgb": fit.rgb, "skin_logits": fit.skin_logits, "transforms": every},
                     out_dir / vf.folder.name / "fit.safetensors",
                     metadata={"frames": json.dumps(vf.names), "box": str(fcfg.box)})  # fmt: skip
        report["videos"][vf.folder.name] = entry
    scored = [e["heldout_psnr"] for e in report["videos"].values() if "heldout_psnr" in e]
    report["mean_heldout_psnr"] = round(sum(scored) / len(scored), 3) if scored else None
    write_text(out_dir / "eval.json", json.dumps(report, indent=1))
    write_text(out_dir / "run.json", json.dumps({"command": command, "data": str(data)}, indent=1))
    return report
