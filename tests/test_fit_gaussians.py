"""Fitting: Gaussians from a random start reproduce held-out views of a known scene.

Scene: 48 ground-truth Gaussians (anisotropic, scales 0.04..0.15, opacities 0.7..0.95, random RGB) in a ball of
radius 0.5; 24 training views (3 elevations x 8 azimuths) and 4 held-out views at other elevations/azimuths,
48x48, fov 0.6 rad, 3 m orbit, grey background.
Model: 150 Gaussians uniform in a ball of radius 0.6 (isotropic, opacity 0.3, random colours, SH degree 0),
per-parameter Adam with exponentially decaying position lr, L1 loss on 3 random training views per step.
Budget: 150 steps (6-25 s on 2 CPU cores). Stated target: held-out PSNR >= 30 dB, and at least 12 dB above the
random start (19.54 dB; a loop that learns nothing, or learns in the wrong direction, stays at or below it).

Measured (issue 12) under ATEN_CPU_CAPABILITY=default|avx2|avx512 x OMP_NUM_THREADS=1|2: start 19.5440 dB in all
six, final 34.8832 .. 34.8979 dB (spread 0.015 dB). The 30 dB bound sits 4.9 dB (over 300 spreads) below, so it holds
for any kernel set, while a broken gradient, optimiser or renderer (or one that learns only a little: 100 steps
give 31.9 dB) is what it is there to catch.
"""

from __future__ import annotations

import math

import pytest
import torch

from latent3d.render.camera import orbit_cameras
from latent3d.render.densify import LearningRates, make_optimizer, update_lrs
from latent3d.render.gaussians import GaussianModel
from latent3d.render.rasterize import rasterize

SIZE = 48
STEPS = 150
TARGET_PSNR = 30.0


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10.0 * torch.log10(((a - b) ** 2).mean()))


def fit() -> tuple[float, float]:
    """Run the fit; returns (held-out PSNR at the random start, after STEPS steps)."""
    g = torch.Generator().manual_seed(0)
    n = 48
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    gt_means = d * torch.rand(n, 1, generator=g) ** (1 / 3) * 0.5
    gt_quats = torch.randn(n, 4, generator=g)
    gt_scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.04), math.log(0.15), generator=g))
    gt_opac = torch.rand(n, generator=g) * 0.25 + 0.7
    gt_cols = torch.rand(n, 3, generator=g)
    Vtr, Ktr = orbit_cameras(3.0, torch.tensor([-20.0, 10.0, 40.0]).repeat(8), torch.arange(24) * 15.0, 0.6, SIZE, SIZE)
    Vte, Kte = orbit_cameras(3.0, torch.tensor([0.0, 25.0, -10.0, 55.0]), torch.tensor([37.0, 128.0, 200.0, 300.0]),
                             0.6, SIZE, SIZE)
    bg = torch.full((1, 3), 0.5)

    def gt_render(V, K):
        with torch.no_grad():
            return rasterize(gt_means, gt_quats, gt_scales, gt_opac, gt_cols, V, K, SIZE, SIZE,
                             backgrounds=bg.expand(V.shape[0], 3))[0]

    img_tr, img_te = gt_render(Vtr, Ktr), gt_render(Vte, Kte)

    torch.manual_seed(0)
    model = GaussianModel.random(150, extent=0.6, sh_degree=0, opacity=0.3, generator=torch.Generator().manual_seed(1))
    lrs = LearningRates(means=5e-3, means_final=5e-4, means_max_steps=STEPS, sh_dc=2e-2, opacity_logits=5e-2,
                        log_scales=1e-2, quats=1e-2)
    opt = make_optimizer(model, lrs)

    def held_out_psnr() -> float:
        with torch.no_grad():
            return _psnr(model.render(Vte, Kte, SIZE, SIZE, backgrounds=bg.expand(4, 3))[0], img_te)

    start = held_out_psnr()
    for step in range(1, STEPS + 1):
        idx = torch.randint(0, 24, (3,), generator=g)
        update_lrs(opt, step, lrs)
        img, _, _ = model.render(Vtr[idx], Ktr[idx], SIZE, SIZE, backgrounds=bg.expand(3, 3))
        loss = (img - img_tr[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = held_out_psnr()
    return start, final


@pytest.mark.numerics
def test_fit_random_gaussians_to_posed_views_reaches_target_psnr():
    start, final = fit()
    assert final >= TARGET_PSNR, f"held-out PSNR {final:.2f} dB < {TARGET_PSNR} dB (start {start:.2f} dB)"
    assert final >= start + 12.0
