"""Part motions of articulated objects: every frame's rigid transforms ``[F, P, 4, 4]`` (canonical -> world) of P
parts, as the stage-3 fits track them (:mod:`.fit`), interpolated between frames and carried from a training video to
a generated object (``latent3d object --animate``).

A run of ``latent3d train autodecoder --articulated`` keeps every training video's motion in
``RUN/motions.safetensors`` (``motions [M, F, P, 4, 4]``, shorter videos padded with their last frame; the video names
and frame counts in its metadata); a generator trained on that run carries them in its weights as ``motions``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.systems.autodecoder.stage1.cameras import axis_angle_to_matrix, rotation_log

MOTIONS = "motions.safetensors"


def interpolate_transforms(known: Tensor, at: list[int], query: list[float]) -> Tensor:
    """Part transforms ``known [K, P, 4, 4]`` of the frames ``at`` (sorted) -> ``[Q, P, 4, 4]`` at (possibly
    fractional) frames ``query``: between two known frames, the rotation turns along the geodesic and the translation
    moves linearly; beyond the ends, the nearest known frame's transforms."""
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


def root_relative(transforms: Tensor) -> Tensor:  # [F, P, 4, 4] -> [F, P, 4, 4]
    """Every part's transform in the root part's frame, ``G_f^-1 T_fp`` (G = part 0): the object's own motion
    without the camera's (which the root carries in a fixed-camera fit); part 0 becomes the identity."""
    return torch.linalg.inv(transforms[:, :1]) @ transforms


def resample(transforms: Tensor, frames: int) -> Tensor:  # [F, P, 4, 4] -> [frames, P, 4, 4]
    """The motion stretched to ``frames`` frames, from its first to its last frame (:func:`interpolate_transforms`)."""
    n = len(transforms)
    query = [i * (n - 1) / max(1, frames - 1) for i in range(frames)]
    return interpolate_transforms(transforms, list(range(n)), query)


def check_motions(motions: Tensor | None, parts: int, where: str, fix: str) -> Tensor:  # -> [M, F, P, 4, 4]
    """``motions`` checked to be ``[M, F, P, 4, 4]`` finite rigid transforms (rotation blocks orthonormal to 1e-3,
    last row 0 0 0 1); anything else is one UserError line naming ``where``."""
    ok = motions is not None and motions.ndim == 5 and motions.shape[2:] == (parts, 4, 4) and len(motions) > 0
    if ok:
        m = motions.double()
        R = m[..., :3, :3]
        eye = torch.eye(3, dtype=m.dtype)
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype)
        ok = bool(torch.isfinite(m).all()) and bool((R @ R.transpose(-1, -2) - eye).abs().max() < 1e-3) and bool(
            (m[..., 3, :] - bottom).abs().max() < 1e-6)
    if not ok:
        got = "none" if motions is None else f"shape {tuple(motions.shape)}"
        raise UserError(f"{where}: 'motions' must be finite rigid transforms [M, F, {parts}, 4, 4], got {got}; {fix}")
    return motions.float()


def write_motions(path: Path, motions: list[Tensor], names: list[str]) -> None:
    """``motions.safetensors`` (module docstring) from each video's ``[F_i, P, 4, 4]``."""
    from latent3d.io.model_folder import save_tensors

    longest = max(len(m) for m in motions)
    padded = torch.stack([torch.cat([m, m[-1:].expand(longest - len(m), -1, -1, -1)]) for m in motions])
    save_tensors({"motions": padded.float()}, path, metadata={"videos": json.dumps(names),
                                                             "frames": json.dumps([len(m) for m in motions])})


def read_motions(run_dir: str | Path, parts: int) -> Tensor:  # -> [M, F, P, 4, 4]
    """``RUN/motions.safetensors`` of an articulated autodecoder run (every problem is one UserError line)."""
    from latent3d.io.model_folder import load_tensors

    path = Path(run_dir) / MOTIONS
    fix = "pass the --out folder of a finished `latent3d train autodecoder --articulated` run"
    if not path.is_file():
        raise UserError(f"{path}: missing (an articulated run keeps its videos' part motions there); {fix}")
    return check_motions(load_tensors(path, fix).get("motions"), parts, str(path), fix)
