"""``latent3d data articulated``: monocular videos of procedural articulated objects (3DVADER, arXiv 2307.05445,
Sec. 3: "monocular videos of rigid or articulated objects"), written in the folder-of-frames layout of
:mod:`latent3d.data.formats.video_frames`.

Each video shows one object of :mod:`latent3d.data.procedural.articulated` moving its joints smoothly
(:func:`~latent3d.data.procedural.articulated.joint_motion`) under a slowly turning camera (radius 3, the object
renders' field of view, azimuth drifting by up to ``camera_drift_deg``, elevation 20 +- 5 degrees). Besides the
frames, masks and caption, ``eval/`` keeps the truth for evaluation only: ``parts/NNNNN.png`` (0 = background, k + 1
= part k), ``poses.json`` (joint angles, each part's 4x4 rest -> posed transform, each frame's world-to-camera
matrix and intrinsics, the kinematic tree).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from latent3d.data.formats.video_frames import write_video_folder
from latent3d.data.procedural.articulated import ARTICULATED, ArticulatedObject, joint_motion
from latent3d.data.procedural.object_sets_config import OBJECT_FOV_Y, ArticulatedVideosConfig
from latent3d.data.procedural.raycast import render_views
from latent3d.data.procedural.shading import COLORS
from latent3d.errors import UserError
from latent3d.render.camera import orbit_cameras

RADIUS = 3.0


def camera_path(frames: int, size: int, drift_deg: float, generator: torch.Generator):
    """World-to-camera ``[F, 4, 4]`` and intrinsics ``[F, 3, 3]`` of a camera turning slowly around the object."""
    u = torch.rand(3, generator=generator, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, frames, dtype=torch.float64)
    az = 360.0 * u[0] + drift_deg * (2 * u[1] - 1) * t
    el = 20.0 + 5.0 * torch.sin(2 * math.pi * (t + u[2]))
    return orbit_cameras(RADIUS, el, az, OBJECT_FOV_Y, size, size)


def render_video(obj: ArticulatedObject, angles: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, size: int):
    """Frames ``[F, S, S, 3]`` uint8, masks ``[F, S, S]`` bool and part ids ``[F, S, S]`` uint8 (0 = none)."""
    frames, masks, parts = [], [], []
    for a, V, K in zip(angles, viewmats, Ks):
        prims, part_of = obj.posed(a)
        r = render_views(prims, V[None], K[None], size, size, ss=2)
        lut = torch.tensor([p + 1 for p in part_of] + [0], dtype=torch.uint8)
        frames.append((r.rgb[0].clamp(0, 1) * 255).round().to(torch.uint8))
        masks.append(r.mask[0])
        parts.append(lut[r.index[0]])
    return torch.stack(frames).numpy(), torch.stack(masks).numpy(), torch.stack(parts).numpy()


def truth(obj: ArticulatedObject, angles: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor) -> dict:
    """``eval/poses.json``: the kinematic tree and every frame's joint angles, part transforms and camera."""
    return {"object": obj.name, "parts": list(obj.part_names),
            "joints": [None if j is None else {"parent": j.parent, "pivot": list(j.pivot), "axis": list(j.axis),
                                               "limits_deg": list(j.limits)} for j in obj.joints],
            "angles_deg": angles.tolist(), "part_transforms": obj.transforms(angles).tolist(),
            "viewmats": viewmats.double().tolist(), "Ks": Ks.double().tolist(), "fov_y": OBJECT_FOV_Y}  # fmt: skip


def write_articulated_videos(out: str | os.PathLike, cfg: ArticulatedVideosConfig, seed: int = 0,
                             progress: bool = True) -> Path:  # fmt: skip
    """Render ``cfg.n_videos`` videos into ``out`` (see the module docstring) and ``out/videos.json``."""
    from tqdm.auto import tqdm

    from latent3d.io.atomic import write_text
    from latent3d.io.image import save_image

    unknown = [k for k in cfg.kinds if k not in ARTICULATED]
    if unknown or not cfg.kinds:
        raise UserError(f"--kinds: unknown articulated object {unknown[0] if unknown else '(none)'}; choose from "
                        f"{', '.join(ARTICULATED)}")  # fmt: skip
    out = Path(out)
    palette = sorted(COLORS)
    index = []
    for i in tqdm(range(cfg.n_videos), desc="data articulated", unit="video", disable=not progress):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        kind = cfg.kinds[i % len(cfg.kinds)]
        color = palette[int(torch.randint(len(palette), (1,), generator=g))]
        obj = ARTICULATED[kind](color)
        angles = joint_motion(obj, cfg.frames, g)
        viewmats, Ks = camera_path(cfg.frames, cfg.size, cfg.camera_drift_deg, g)
        frames, masks, parts = render_video(obj, angles, viewmats, Ks, cfg.size)
        folder = out / f"video_{i:03d}"
        write_video_folder(folder, frames, masks, obj.caption)
        for k, p in enumerate(parts):
            save_image(folder / "eval" / "parts" / f"{k:05d}.png", p[..., None])
        write_text(folder / "eval" / "poses.json", json.dumps(truth(obj, angles, viewmats, Ks)))
        index.append({"folder": folder.name, "object": kind, "caption": obj.caption, "frames": cfg.frames})
    write_text(out / "videos.json", json.dumps({"format": "latent3d-articulated-videos", "version": 1,
                                                "size": cfg.size, "videos": index}, indent=1))  # fmt: skip
    return out


def read_truth(folder: str | os.PathLike) -> dict:
    """A video's ``eval/poses.json`` with its arrays as float64 NumPy arrays (evaluation only)."""
    d = json.loads((Path(folder) / "eval" / "poses.json").read_text())
    for k in ("angles_deg", "part_transforms", "viewmats", "Ks"):
        d[k] = np.asarray(d[k], dtype=np.float64)
    return d
