"""Fitting one monocular video of an articulated object: a canonical radiance grid with skinning weights over P
rigid parts and every frame's part poses, from the frames, their masks and the cameras (3DVADER, arXiv 2307.05445,
Sec. 3, "rigid components whose poses are estimated and refined during training").

What is learned: the canonical grid (density, RGB, skinning logits; :mod:`.skinning`), and per frame and part an
axis-angle rotation and a translation. The poses are autodecoded (free parameters per frame, like stage 1's latents)
rather than regressed from the image: a regressor only pays off across many videos, and free poses give the
reconstruction its exact optimum on the frames it has. Part 0 is the root (it moves with the world: the camera
carries the object's global motion) and frame 0 is the canonical pose (its transforms are the identity), which
removes the gauge freedom of canonical space.

Tracking schedule: frames join the optimisation one by one (the first ``grow`` share of the steps), each starting
from its predecessor's pose, so that a part's pose only ever has to move by one frame's worth of motion; a temporal
smoothness term (squared differences of consecutive poses) keeps the motion continuous. Losses: RGB MSE on random
rays of random frames, binary cross-entropy of the rendered occupancy against the mask, and a joint term that keeps
the parts attached: where an occupied canonical voxel x is shared by parts p and q (skinning weights w_p, w_q), both
must carry it to the same place, ``sum occ(x) w_p(x) w_q(x) |T_p x - T_q x|^2`` (a lid torn from its box, or turned
about any line but its hinge, moves the shared edge apart; monocular views alone leave that freedom open).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latent3d.metrics.poses import rotation_angle_deg
from latent3d.render.camera import pixel_rays
from latent3d.systems.autodecoder.stage3.skinning import part_transforms, render_skinned


@dataclass
class FitConfig:
    parts: int = 2  # P rigid parts (the paper: 10)
    grid: int = 24  # canonical grid resolution N (N^3 voxels)
    box: float = 1.3  # the grid fills [-box, box]^3
    steps: int = 900
    grow: float = 0.7  # share of the steps over which frames join one by one
    rays: int = 512  # rays per frame and step
    frames_per_step: int = 4
    samples: int = 32  # samples per ray
    lr_grid: float = 0.1
    lr_pose: float = 0.02
    mask_weight: float = 0.1
    smooth_weight: float = 0.01
    joint_weight: float = 1.0
    free_root: bool = False  # part 0 moves too (one fixed camera for all frames: the root carries the camera's motion)
    root_smooth_weight: float = 0.0  # extra smoothness of part 0's motion (a camera that turns slowly)
    seed: int = 0


@dataclass
class VideoFit:
    """The result: canonical grids and every frame's part transforms ``[F, P, 4, 4]`` (canonical -> world)."""

    density: Tensor  # [1, N, N, N]
    rgb: Tensor  # [3, N, N, N]
    skin_logits: Tensor  # [P, N, N, N]
    transforms: Tensor  # [F, P, 4, 4]
    losses: list[float]


def _gauged(rot: Tensor, trans: Tensor, free_root: bool = False) -> Tensor:  # [F, P, 3] x 2 -> [F, P, 4, 4]
    """Frame 0 and, unless ``free_root``, part 0 held at the identity (module docstring)."""
    keep = torch.ones(rot.shape[:2] + (1,), dtype=rot.dtype)
    keep[0] = 0.0
    if free_root:  # part 0's pose G is the whole object's; the other parts move relative to it: G @ L_p
        T = part_transforms(rot * keep, trans * keep)
        return torch.cat([T[:, :1], T[:, :1] @ T[:, 1:]], dim=1)
    keep[:, 0] = 0.0
    return part_transforms(rot * keep, trans * keep)


def fit_video(
    frames: Tensor,  # [F, H, W, 3] float in [0, 1], white background
    masks: Tensor,  # [F, H, W] bool
    viewmats: Tensor,  # [F, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor,  # [F, 3, 3]
    cfg: FitConfig = FitConfig(),
    progress: bool = True,
) -> VideoFit:
    """Optimise canonical grid, skinning and poses on one video (module docstring)."""
    from tqdm.auto import trange

    g = torch.Generator().manual_seed(cfg.seed)
    n_frames, H, W, _ = frames.shape
    o, d = pixel_rays(viewmats.float(), Ks.float(), W, H, normalize=True)  # [F, H, W, 3]
    o, d = o.reshape(n_frames, -1, 3), d.reshape(n_frames, -1, 3)
    target, occ_target = frames.reshape(n_frames, -1, 3).float(), masks.reshape(n_frames, -1).float()
    N, P = cfg.grid, cfg.parts
    dens = torch.full((1, N, N, N), -2.0, requires_grad=True)
    col = torch.zeros(3, N, N, N, requires_grad=True)
    skin = (0.01 * torch.randn(P, N, N, N, generator=g)).requires_grad_()
    rot = torch.zeros(n_frames, P, 3, requires_grad=True)
    trans = torch.zeros(n_frames, P, 3, requires_grad=True)
    opt = torch.optim.Adam([{"params": [dens, col, skin], "lr": cfg.lr_grid},
                            {"params": [rot, trans], "lr": cfg.lr_pose}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if i < 0.85 * cfg.steps else 0.3)
    every = max(1, int(cfg.steps * cfg.grow) // n_frames)
    axis = (torch.arange(N, dtype=torch.float32) + 0.5) * (2 * cfg.box / N) - cfg.box
    centres = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)  # [N^3, 3] (x, y, z)
    active, losses = min(2, n_frames), []
    for step in trange(cfg.steps, desc="fit articulated video", disable=not progress):
        if step and step % every == 0 and active < n_frames:
            with torch.no_grad():  # the new frame starts where its predecessor is
                rot[active], trans[active] = rot[active - 1], trans[active - 1]
            active += 1
        fidx = torch.randint(active, (cfg.frames_per_step,), generator=g)
        pix = torch.randint(H * W, (cfg.frames_per_step, cfg.rays), generator=g)
        T = _gauged(rot, trans, cfg.free_root)
        take = lambda x: torch.gather(x[fidx], 1, pix[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
        out, occ = render_skinned(F.softplus(dens), torch.sigmoid(col), skin, T[fidx], take(o), take(d), cfg.box,
                                  cfg.samples, generator=g)  # fmt: skip
        loss = F.mse_loss(out, take(target)) + cfg.mask_weight * F.binary_cross_entropy(
            occ.clamp(1e-5, 1 - 1e-5), torch.gather(occ_target[fidx], 1, pix))
        step_sq = (rot[1:] - rot[:-1]).square().sum(-1) + (trans[1:] - trans[:-1]).square().sum(-1)  # [F - 1, P]
        loss = loss + cfg.smooth_weight * step_sq.mean() + cfg.root_smooth_weight * step_sq[:, 0].mean()
        if cfg.joint_weight > 0:
            loss = loss + cfg.joint_weight * joint_loss(F.softplus(dens), skin, T[:active], centres, 2 * cfg.box / N)
        step_optimiser(opt, sched, loss, losses)
    with torch.no_grad():
        return VideoFit(F.softplus(dens), torch.sigmoid(col), skin.detach().clone(), _gauged(rot, trans, cfg.free_root),
                        losses)  # fmt: skip


def step_optimiser(opt: torch.optim.Optimizer, sched, loss: Tensor, losses: list[float]) -> None:
    """One optimiser and scheduler step on ``loss``, its value appended to ``losses`` (stage 3's loops)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    losses.append(float(loss.detach()))


def joint_loss(density: Tensor, skin_logits: Tensor, transforms: Tensor, centres: Tensor, voxel: float) -> Tensor:
    """``mean_f sum_x occ(x) sum_{p<q} w_p(x) w_q(x) |T_fp x - T_fq x|^2 / sum_x occ(x)``: shared voxels move
    together (density [1, N, N, N], skin_logits [P, N, N, N], transforms [F, P, 4, 4], centres [N^3, 3])."""
    occ = -torch.expm1(-density.reshape(-1) * voxel)  # [V] opacity of one voxel
    w = torch.softmax(skin_logits.reshape(len(skin_logits), -1), 0)  # [P, V]
    pos = torch.einsum("fpij,vj->fpvi", transforms[..., :3, :3], centres) + transforms[:, :, None, :3, 3]
    total = density.new_zeros(())
    for p in range(len(w)):
        for q in range(p + 1, len(w)):
            gap = (pos[:, p] - pos[:, q]).square().sum(-1)  # [F, V]
            total = total + (occ * w[p] * w[q] * gap).sum(-1).mean()
    return total / occ.sum().clamp_min(1e-6)


@torch.no_grad()
def part_maps(fit: VideoFit, viewmats: Tensor, Ks: Tensor, height: int, width: int, box: float = 1.3,
              samples: int = 64) -> Tensor:  # fmt: skip  # -> [F, H, W] long, the part seen (-1: background)
    """Which fitted part each pixel of each frame shows (the part with the largest share of the ray's opacity;
    -1 where the ray's occupancy is below one half)."""
    o, d = pixel_rays(viewmats.float(), Ks.float(), width, height, normalize=True)
    n = len(viewmats)
    _, occ, share = render_skinned(fit.density, fit.rgb, fit.skin_logits, fit.transforms, o.reshape(n, -1, 3),
                                   d.reshape(n, -1, 3), box, samples, parts=True)  # fmt: skip
    return torch.where(occ >= 0.5, share.argmax(-1), -1).reshape(n, height, width)


def best_match_iou(pred: Tensor, true: Tensor, parts: int) -> tuple[float, list[int]]:
    """Mean IoU of predicted vs true part ids (``-1`` / ``0`` background vs ``k`` / ``k + 1``) under the best
    one-to-one matching of fitted parts to true parts (every permutation: P is small); returns it and the match."""
    from itertools import permutations

    best = (-1.0, [])
    for perm in permutations(range(parts)):
        ious = []
        for k, j in enumerate(perm):
            a, b = pred == k, true == j + 1
            union = (a | b).sum()
            ious.append(float((a & b).sum()) / float(union) if union else 1.0)
        score = sum(ious) / len(ious)
        if score > best[0]:
            best = (score, list(perm))
    return best


def relative_angles_deg(transforms: Tensor, part: int, root: int | None = None) -> Tensor:  # [F, P, 4, 4] -> [F]
    """The rotation angle of ``part`` in each frame relative to frame 0 (degrees, 0..180): the hinge opening a
    rigid part has turned through, whatever its axis and pivot; measured in ``root``'s frame when given (a fit
    whose root part moves: ``FitConfig.free_root``)."""
    R = transforms[:, part, :3, :3].double()
    if root is not None:
        R = transforms[:, root, :3, :3].double().transpose(-1, -2) @ R
    return rotation_angle_deg(R @ R[0].transpose(-1, -2))


def hinge_axis(transforms: Tensor, part: int) -> Tensor:  # [F, P, 4, 4] -> [3] unit
    """The mean rotation axis of ``part``'s motion from frame 0 (sign fixed to the first non-trivial frame's)."""
    R = transforms[:, part, :3, :3].double()
    rel = R @ R[0].transpose(-1, -2)
    v = torch.stack([rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0], rel[:, 1, 0] - rel[:, 0, 1]], -1)
    ref = v[v.norm(dim=-1).argmax()]
    v = torch.where((v @ ref)[:, None] < 0, -v, v)
    return F.normalize(v.sum(0), dim=0) if v.norm() > 0 else torch.tensor([math.nan] * 3, dtype=torch.float64)
