"""The bundled NF-LDM scene models `scene-tiny` (procedural places) and `vizdoom-tiny` (VizDoom): what their
hierarchy learned (c follows g; the sampled camera trajectory runs through free space of the sampled scene), and
that the folders are small, self-contained and documented."""

from __future__ import annotations

import json

import pytest
import torch

from latent3d.systems.nfldm.generate import decode_grid
from latent3d.systems.nfldm.scene_diffusion import decode_trajectory, sample_level
from latent3d.systems.nfldm.scene_model import load_scene_model, resolve_model

MODELS = ("scene-tiny", "vizdoom-tiny")


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    return load_scene_model(request.param)


def _coarse(model, g: torch.Tensor, seed: int) -> torch.Tensor:  # g [n, G] -> c [n, ...] snapped to codes
    d = model.diffusion
    c = sample_level(d.c, len(g), 25, torch.Generator().manual_seed(seed), g=g)["c"]
    return d.latent_ae.vq_c.snap(c)[0]


@pytest.mark.numerics
def test_c_follows_g(model):
    """psi_c learned p(c | g): c sampled twice (other noise) for each of 6 sampled g lies nearer its own g's other
    sample than the other g's samples (mean squared distance of the standardised c)."""
    d = model.diffusion
    g = sample_level(d.g, 6, 25, torch.Generator().manual_seed(0))["g"]
    a, b = (d.c.encode({"c": _coarse(model, g, s)}).flatten(1) for s in (1, 2))
    dist = torch.cdist(a, b) ** 2 / a.shape[1]  # [6, 6]: row i = first sample of g_i vs second samples of all g
    same, other = dist.diagonal(), (dist.sum(1) - dist.diagonal()) / 5
    assert float(same.mean()) < 0.7 * float(other.mean()), (same, other)


@pytest.mark.numerics
def test_the_sampled_trajectory_runs_through_free_space(model):
    """Trajectories are sampled with g (NF-LDM Sec. 3.3), so they avoid the matter of their own scene: at most 1
    in 10 sampled camera centres lies inside matter (density above the mesh iso-level, one voxel's alpha 0.5), less
    than half as often as points drawn uniformly in the box, and the scenes do hold matter (>= 3 % of those points).
    Measured: no camera inside matter for either model, 10-20 % of random points."""
    from latent3d.render.grid_assets import default_level, sample_grid
    from latent3d.systems.nfldm.scene_diffusion import sample_scene_latents

    g, traj, c, f = sample_scene_latents(model.diffusion, 8, 25, torch.Generator().manual_seed(3))
    C = model.scene_ae.cfg.features
    lo, hi = model.box
    rand = lo + torch.rand(512, 3, generator=torch.Generator().manual_seed(4)) * (hi - lo)
    cams, chance = [], []
    for k in range(8):
        density = decode_grid(model, g[k:k + 1], c[k:k + 1], f[k:k + 1])[C]
        centres = torch.linalg.inv(decode_trajectory(traj[k], lo, hi))[:, :3, 3]
        level = default_level(density, lo, hi)
        cams.append(float((sample_grid(density[None], centres, lo, hi)[:, 0] > level).mean()))
        chance.append(float((sample_grid(density[None], rand, lo, hi)[:, 0] > level).mean()))
    inside, base = sum(cams) / 8, sum(chance) / 8
    assert inside <= 0.1 and base >= 0.03 and inside < 0.5 * base, (cams, chance)


@pytest.mark.parametrize("name", MODELS)
def test_the_bundled_scene_model_is_small_self_contained_and_documented(name):
    folder = resolve_model(name)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 15 * 2**20, size  # the budget for each scene model
    text = "".join(p.read_text() for p in folder.rglob("*.json"))
    assert "/tmp" not in text and "/work" not in text  # no path outside the folder in its configs
    card = (folder / "MODEL_CARD.md").read_text()
    for needle in ("latent3d train scene-ae", "latent3d train scene-latent-ae", "latent3d train scene-diffusion",
                   "latent3d train scene-prior", "FID"):
        assert needle in card, needle
    assert json.loads((folder / "config.json").read_text())["camera"]["width"] == 64

