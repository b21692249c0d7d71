"""The bundled 3DVADER generator `object3d-tiny`: the prompt decides the colour (same seed, red vs blue chair),
the folder is small and documented, and LucidDreamer can start from one of its samples (`dream --init object`)."""

from __future__ import annotations

import pytest
import torch

from latent3d.render.camera import turntable_cameras
from latent3d.systems.autodecoder.diffusion import load_generator, resolve_model
from latent3d.systems.autodecoder.generate import FOV, sample_latents
from latent3d.systems.autodecoder.train import render_grid_views


@pytest.fixture(scope="module")
def gen():
    return load_generator(resolve_model("object3d-tiny"))


def _foreground_colour(gen, prompt: str, seed: int) -> torch.Tensor:  # -> [S, 3] mean foreground RGB per sample
    lat = sample_latents(gen, [prompt] * 2, steps=16, guidance=3.0, seed=seed)
    V, K = turntable_cameras(2, 32, 3.0, FOV, 20.0)
    out = []
    with torch.no_grad():
        for k in range(len(lat)):
            density, rgb = gen.decoder.decode(lat[k:k + 1])
            img, occ = render_grid_views(density, rgb, V, K, 32, 32, gen.decoder.cfg)
            out.append(img[occ > 0.5].mean(0))
    return torch.stack(out)


def test_the_same_seed_gives_a_red_chair_and_a_blue_chair(gen):
    red, blue = _foreground_colour(gen, "a red chair", 0), _foreground_colour(gen, "a blue chair", 0)
    # palette red (0.85, 0.12, 0.10), blue (0.12, 0.30, 0.85), shaded; the margin 0.15 is a third of the shaded
    # difference of the training renders' channels
    assert (red[:, 0] > red[:, 2] + 0.15).all(), red
    assert (blue[:, 2] > blue[:, 0] + 0.15).all(), blue


def test_the_bundled_folder_is_small_and_has_its_card():
    folder = resolve_model("object3d-tiny")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 10 * 2**20, size  # the budget for this checkpoint
    card = (folder / "MODEL_CARD.md").read_text()
    for needle in ("latent3d data objects", "latent3d train autodecoder", "latent3d train object-diffusion", "PSNR"):
        assert needle in card, needle


def test_dream_can_start_from_an_object_sample(gen):
    from latent3d.systems.lucid_dreamer.dream import DreamConfig, init_gaussians

    g = init_gaussians(DreamConfig(prompt="a red chair", init="object", init_points=1024), torch.Generator())
    assert g.means.shape[0] <= 1024 and g.means.shape[0] > 100
    assert (g.means.abs() <= 1.0).all()  # inside the generator's box, the frame the dream cameras look at
    colour = (g.sh[:, 0] * 0.28209479177387814 + 0.5).clamp(0, 1)  # SH DC -> RGB
    weights = torch.sigmoid(g.opacity_logits)[:, None]
    mean = (colour * weights).sum(0) / weights.sum()
    assert mean[0] > mean[2] + 0.1, mean  # a red chair's splats are red
