"""One decoder for all videos: 3DVADER's stage-1 autodecoder (:mod:`..stage1.decoder`, per-object embedding -> G1 ->
8^3 latent volume -> G2) with a head that also predicts skinning logits over P parts (arXiv 2307.05445, Sec. 3:
"a set of smaller, rigid components"; Unsupervised Volumetric Animation, Siarohin et al. 2023, Sec. 3.2: canonical
volume + per-voxel skinning weights decoded from a per-object code), so that stage 2 can diffuse articulated objects
as it diffuses rigid ones.

Training runs after the per-video fits (:mod:`.fit`), which give each video its tracked part poses and a canonical
grid. With the poses held at their tracked values, the decoder learns every video's latent from two terms:

* the frames: RGB MSE and mask BCE of rays rendered through inverse skinning (:func:`.skinning.render_skinned`), as
  in the per-video fit;
* the fits' canonical grids (distillation): the decoded per-voxel opacity ``1 - exp(-sigma * voxel)`` against the
  fit's (MSE), and, weighted by the fit's opacity, the colour (MSE) and the skinning weights (cross-entropy against
  the fit's softmax). A network decoder alone, from rays, needs thousands of steps to find the parts' layout that the
  per-video fits already hold; the grid targets give every voxel a gradient at every step.

Parts correspond across videos by their role: part 0 is each video's root (it carries the camera's motion), so a
sampled object's part 0 is its body; the other parts are in the order the fits gave them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latent3d.systems.autodecoder.config import AutodecoderConfig
from latent3d.systems.autodecoder.stage1.decoder import Autodecoder
from latent3d.systems.autodecoder.stage3.fit import VideoFit, step_optimiser
from latent3d.systems.autodecoder.stage3.skinning import render_skinned

MASK_WEIGHT = 0.1  # as the per-video fit (FitConfig.mask_weight)
SKIN_WEIGHT = 0.1  # distillation weight of the skinning cross-entropy
RAYS, FRAMES, VIDEOS = 512, 2, 4  # rays per frame, frames per video and videos per step
SAMPLES = 32


@dataclass
class Track:
    """One video with its tracked poses: training frames ``[F, H, W, 3]`` in [0, 1], masks ``[F, H, W]`` float,
    rays of its fixed camera ``origins, dirs [H W, 3]``, part transforms ``[F, P, 4, 4]`` and the fit's grids."""

    frames: Tensor
    masks: Tensor
    origins: Tensor
    dirs: Tensor
    transforms: Tensor
    fit: VideoFit


def shared_config(box: float) -> AutodecoderConfig:
    """The decoder: stage 1's defaults (8^3 x 64 latent, 32^3 grid) in the fits' cube ``[-box, box]^3``."""
    return AutodecoderConfig(box=box)


def grid_targets(fit: VideoFit, size: int, box: float) -> tuple[Tensor, Tensor, Tensor]:
    """The fit's canonical grids resampled (trilinearly, cell-centred: both grids fill the same cube) to ``size``^3:
    opacity per voxel [1, S, S, S], rgb [3, S, S, S], skinning weights [P, S, S, S]."""
    def up(x: Tensor) -> Tensor:
        return F.interpolate(x[None], size=(size,) * 3, mode="trilinear", align_corners=False)[0]

    occ = -torch.expm1(-up(fit.density) * (2 * box / size))
    return occ, up(fit.rgb), torch.softmax(up(fit.skin_logits), 0)


def distill_loss(density: Tensor, rgb: Tensor, skin: Tensor, target: tuple[Tensor, Tensor, Tensor],
                 box: float) -> Tensor:  # fmt: skip  # [1|3|P, S, S, S] each -> []
    """The grid term of the module docstring."""
    occ_t, rgb_t, w_t = target
    occ = -torch.expm1(-density * (2 * box / density.shape[-1]))
    norm = occ_t.sum().clamp_min(1e-6)
    colour = (occ_t * (rgb - rgb_t).square().mean(0, keepdim=True)).sum() / norm
    skin_ce = (occ_t * -(w_t * torch.log_softmax(skin, 0)).sum(0, keepdim=True)).sum() / norm
    return F.mse_loss(occ, occ_t) + colour + SKIN_WEIGHT * skin_ce


def frame_loss(density: Tensor, rgb: Tensor, skin: Tensor, track: Track, box: float,
               g: torch.Generator) -> Tensor:  # fmt: skip
    """RGB MSE + mask BCE on ``RAYS`` random rays of ``FRAMES`` random frames of one video (``track``: a
    :class:`Track`), the decoded grids ``[1|3|P, S, S, S]`` warped by the tracked poses."""
    n, hw = len(track.transforms), track.origins.shape[0]
    f = torch.randint(n, (FRAMES,), generator=g)
    pix = torch.randint(hw, (FRAMES, RAYS), generator=g)
    out, occ = render_skinned(density, rgb, skin, track.transforms[f], track.origins[pix], track.dirs[pix], box,
                              SAMPLES, generator=g)  # fmt: skip
    target = track.frames.reshape(n, hw, 3)[f[:, None], pix]
    mask = track.masks.reshape(n, hw)[f[:, None], pix]
    return F.mse_loss(out, target) + MASK_WEIGHT * F.binary_cross_entropy(occ.clamp(1e-5, 1 - 1e-5), mask)


def train_shared_decoder(tracks: list[Track], parts: int, steps: int, box: float, seed: int = 0,
                         progress: bool = True) -> tuple[Autodecoder, list[float]]:  # fmt: skip
    """Learn one latent per video and the decoder (module docstring); returns the decoder (eval mode) and the losses."""
    from tqdm.auto import trange

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = shared_config(box)
    model = Autodecoder(len(tracks), cfg, parts)
    targets = [grid_targets(t.fit, model.grid_size, box) for t in tracks]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if i < 0.8 * steps else 0.3)
    losses = []
    for _ in trange(steps, desc="articulated decoder", disable=not progress):
        ids = torch.randperm(len(tracks), generator=g)[:VIDEOS]
        density, rgb, skin = model.decode_skinned(model.latent(ids))
        loss = density.new_zeros(())
        for j, v in enumerate(ids.tolist()):
            loss = loss + frame_loss(density[j], rgb[j], skin[j], tracks[v], box, g)
            loss = loss + distill_loss(density[j], rgb[j], skin[j], targets[v], box)
        loss = loss / len(ids)
        step_optimiser(opt, sched, loss, losses)
    return model.eval(), losses
