"""Cameras learned from scratch (``train autodecoder --cameras learn``; 3DVADER Sec. 3.1: camera supervision "can be
learned during training"): every training view starts on a sphere around the object and is found jointly with the
object, by the scheme of single-particle cryo-EM's ab-initio reconstruction (projection matching with poses
marginalised out, as in cryoSPARC, Punjani et al. 2017), here on an upright orbit:

1. **Search** (the first ``search`` fraction of the steps): each object is rendered from H hypotheses on the sphere
   (``search_azimuths`` x ``search_elevations``, radius ``camera_radius``, looking at the centre) at R x R pixels, and
   each of its views v scores e[v, h] = mean |render_h - view_v| over RGB and mask. The loss is the soft minimum
   ``-T log mean_h exp(-e[v, h] / T)`` (the negative log marginal likelihood of a Laplace noise model of scale T), T
   annealed from 0.1 to 0.02: the object is pulled towards what explains each view under *some* pose, without
   committing early to a wrong one.
2. **Assign**: each view takes its best hypothesis (azimuth, elevation).
3. **Refine**: the usual patch losses train the object and the cameras (azimuth, elevation, log radius and an se(3)
   correction, :class:`CameraRefiner`) by gradient; until :data:`JUMP_UNTIL` of the steps, a view jumps to a hypothesis
   that explains it 3% better than its current pose every :data:`JUMP_EVERY` steps.

Each object is found in its own frame (the truth is known up to one rotation per object):
:func:`latent3d.metrics.poses.rotation_errors` aligns them before it measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from latent3d.render.camera import look_at, spherical_to_cartesian
from latent3d.render.volume import render_grids
from latent3d.systems.autodecoder.stage1.cameras import CameraRefiner

ANGLE_UNIT = 30.0  # degrees per unit of the angle parameters: Adam's steps of ~lr move a camera by ~lr x 30 degrees
JUMP_EVERY = 25  # steps between two pose searches of the refine phase
JUMP_UNTIL = 0.8  # ... which searches until this fraction of the steps (the rest refines by gradient alone)
SEARCH_STEPS_PER_OBJECT = 250  # search steps per object below which a run is warned (measured: 280 find a chair)
CAMERA_LR_SCALE = 10.0  # learned azimuths, elevations and radii move at 10 x the network's learning rate
JUMP_MARGIN = 0.97  # a view jumps to a hypothesis whose error is below 0.97 x its current pose's error
T_START, T_END = 0.1, 0.02  # the search's temperature, annealed geometrically over 60% of the search phase


def orbit_viewmats(azimuth_deg: Tensor, elevation_deg: Tensor, radius: Tensor) -> Tensor:  # [M] x 3 -> [M, 4, 4]
    """World-to-camera matrices (OpenCV) of upright cameras on a sphere (z up) looking at the origin; differentiable
    in all three."""
    eye = spherical_to_cartesian(radius, torch.deg2rad(elevation_deg), torch.deg2rad(azimuth_deg))
    return look_at(eye, torch.zeros_like(eye), dtype=eye.dtype)


def hypotheses(azimuths: int, elevations: tuple[float, ...]) -> tuple[Tensor, Tensor]:  # -> az [H], el [H] degrees
    """The sphere the cameras start on: ``azimuths`` evenly spaced azimuths at each elevation."""
    az = torch.arange(azimuths, dtype=torch.float32) * (360.0 / azimuths)
    el = torch.tensor(elevations, dtype=torch.float32)
    return az.repeat(len(el)), el.repeat_interleave(azimuths)


def temperature(step: int, search_steps: int) -> float:
    """T of the soft minimum at 0-based ``step`` of the search phase: T_START -> T_END geometrically over its first
    60%, then T_END."""
    frac = min(1.0, step / max(1.0, 0.6 * search_steps))
    return T_START * (T_END / T_START) ** frac


class OrbitCameras(nn.Module):
    """One learned camera per training view: ``forward(views [M] long) -> viewmats [M, 4, 4]``, the orbit camera of
    (azimuth, elevation, radius x exp(log_radius)) corrected by :class:`CameraRefiner`'s se(3) term."""

    def __init__(self, num_views: int, radius: float):
        super().__init__()
        self.radius = radius
        self.angles = nn.Parameter(torch.zeros(num_views, 2))  # (azimuth, elevation) / ANGLE_UNIT
        self.log_radius = nn.Parameter(torch.zeros(num_views))
        self.refiner = CameraRefiner(num_views)

    def spherical(self, views: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # -> az, el (degrees), radius [M]
        a = self.angles[views] * ANGLE_UNIT
        return a[:, 0], a[:, 1], self.radius * self.log_radius[views].exp()

    def forward(self, views: Tensor) -> Tensor:
        vm = orbit_viewmats(*self.spherical(views))
        return self.refiner(vm, views)

    @torch.no_grad()
    def place(self, views: Tensor, azimuth_deg: Tensor, elevation_deg: Tensor) -> None:
        """Move ``views`` onto the sphere at these angles (radius and correction back to their start)."""
        self.angles[views] = torch.stack([azimuth_deg, elevation_deg], dim=-1).to(self.angles) / ANGLE_UNIT
        self.log_radius[views] = 0
        self.refiner.xi[views] = 0


@dataclass
class SearchBatch:
    """What one step of the search needs: ``mode`` "soft" (the annealed loss), "assign" (every view to its best
    hypothesis) or "jump" (views to a clearly better hypothesis)."""

    mode: str
    ids: Tensor  # [O] object indices
    views: list[Tensor]  # per object: its training-view indices
    targets: list[Tensor]  # per object: [V_o, R, R, 4] float RGB + mask at the search resolution
    Ks: Tensor  # [O, 3, 3] each object's intrinsics at R x R
    temperature: float = T_END

    def to(self, device) -> SearchBatch:
        return SearchBatch(self.mode, self.ids.to(device), [v.to(device) for v in self.views],
                           [t.to(device) for t in self.targets], self.Ks.to(device), self.temperature)  # fmt: skip


def hypothesis_errors(grids: tuple[Tensor, Tensor], Ks: Tensor, targets: list[Tensor], az: Tensor, el: Tensor,
                      radius: float, box: float, samples: int) -> list[Tensor]:  # fmt: skip
    """Per object o of ``grids`` (density [O, 1, N, N, N], rgb [O, 3, N, N, N]): e [V_o, H], the mean absolute RGB +
    mask error of each of its views ``targets[o]`` against the object rendered from each hypothesis (az, el [H])."""
    O, H, R = len(Ks), len(az), targets[0].shape[1]
    vm = orbit_viewmats(az, el, torch.full_like(az, radius)).to(Ks)
    rgb, occ = render_grids(*grids, vm.repeat(O, 1, 1), Ks.repeat_interleave(H, 0), pixel_grid(R, O * H, Ks), box,
                            samples)  # fmt: skip
    img = torch.cat([rgb, occ[..., None]], dim=-1).reshape(O, H, R * R * 4)
    return [torch.cdist(t.reshape(len(t), -1), img[o], p=1) / (R * R * 4) for o, t in enumerate(targets)]


def downsample_views(views: Tensor, Ks: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``views [V, H, W, C]`` area-averaged to R x R (R = min(size, H, W)) and their intrinsics ``Ks [V, 3, 3]`` at
    that size: what the search compares renders with."""
    import torch.nn.functional as F

    H, W = views.shape[1:3]
    R = min(size, H, W)
    small = F.interpolate(views.permute(0, 3, 1, 2), size=(R, R), mode="area").permute(0, 2, 3, 1)
    Ks = Ks.clone()
    Ks[:, 0] *= R / W
    Ks[:, 1] *= R / H
    return small, Ks


def pixel_grid(R: int, M: int, like: Tensor) -> Tensor:  # -> [M, R R, 2] pixel centres (column, row)
    jj, ii = torch.meshgrid(torch.arange(R) + 0.5, torch.arange(R) + 0.5, indexing="xy")
    return torch.stack([jj, ii], dim=-1).reshape(1, R * R, 2).expand(M, -1, -1).to(like)


def soft_min_loss(errors: list[Tensor], T: float) -> Tensor:
    """Mean over all views of ``-T log mean_h exp(-e / T)`` (step 1 of the module docstring)."""
    e = torch.cat(errors)
    return (-T * (torch.logsumexp(-e / T, dim=1) - math.log(e.shape[1]))).mean()


@torch.no_grad()
def search_step(cameras: OrbitCameras, grids: tuple[Tensor, Tensor], batch: SearchBatch, az: Tensor, el: Tensor,
                box: float, samples: int) -> int:  # fmt: skip
    """Steps 2 and 3's pose search for ``batch``'s objects (``grids`` decoded from them): returns how many views
    moved."""
    errors = hypothesis_errors(grids, batch.Ks, batch.targets, az, el, cameras.radius, box, samples)
    moved = 0
    for o, (views, e) in enumerate(zip(batch.views, errors)):
        best, idx = e.min(dim=1)
        move = torch.ones_like(best, dtype=torch.bool)
        if batch.mode == "jump":
            t = batch.targets[o]
            R, V = t.shape[1], len(t)
            rgb, occ = render_grids(grids[0][o:o + 1], grids[1][o:o + 1], cameras(views).to(t),
                                    batch.Ks[o:o + 1].expand(V, -1, -1), pixel_grid(R, V, t), box, samples)  # fmt: skip
            current = (torch.cat([rgb, occ[..., None]], dim=-1).reshape(V, -1) - t.reshape(V, -1)).abs().mean(dim=1)
            move = best < JUMP_MARGIN * current
        if move.any():
            cameras.place(views[move], az[idx[move]], el[idx[move]])
            moved += int(move.sum())
    return moved


def pose_views(grids: tuple[Tensor, Tensor], targets: Tensor, Ks: Tensor, az: Tensor, el: Tensor, radius: float,
               box: float, samples: int, steps: int = 100, rays: int = 1024, lr: float = 0.01,
               seed: int = 0) -> Tensor:  # fmt: skip
    """Cameras of new views of one fitted object (held-out views under ``--cameras learn``, as NeRFs without poses
    are scored: the object frozen, only the poses fitted): ``grids`` (density [1, 1, N, N, N], rgb [1, 3, N, N, N]),
    ``targets [V, H, W, 4]`` RGB + mask, ``Ks [V, 3, 3]`` at H x W -> viewmats [V, 4, 4]. Each view takes its best
    hypothesis at 16 x 16 pixels, then ``steps`` Adam steps on ``rays`` random pixels per view refine all six
    degrees of freedom."""
    V, H, W = targets.shape[:3]
    small, sKs = downsample_views(targets, Ks, 16)
    cams = OrbitCameras(V, radius).to(targets)
    views = torch.arange(V, device=targets.device)
    with torch.no_grad():
        for v in range(V):
            search_step(cams, grids, SearchBatch("assign", views[:1], [views[v:v + 1]], [small[v:v + 1]], sKs[v:v + 1]),
                        az, el, box, samples)  # fmt: skip
    grids = (grids[0].detach(), grids[1].detach())
    opt = torch.optim.Adam([{"params": [cams.angles, cams.log_radius], "lr": lr / ANGLE_UNIT * 10},
                            {"params": cams.refiner.parameters(), "lr": lr}])  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    flat = targets.reshape(V, H * W, 4)
    for _ in range(steps):
        idx = torch.randint(0, H * W, (V, min(rays, H * W)), generator=g).to(views)
        pix = torch.stack([idx % W, idx // W], dim=-1).to(targets) + 0.5
        rgb, occ = render_grids(*grids, cams(views), Ks, pix, box, samples)
        true = torch.gather(flat, 1, idx[..., None].expand(-1, -1, 4))
        loss = (torch.cat([rgb, occ[..., None]], dim=-1) - true).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cams(views).detach()
