"""The bundled 3DVADER generator `object3d-tiny`: the prompt decides the colour (same seed, red vs blue chair) and
the shape (same seed, chair vs mushroom silhouettes against the procedural ground truth), the folder is small and
documented, and LucidDreamer can start from one of its samples (`dream --init object`)."""

from __future__ import annotations

import pytest
import torch

from latent3d.render.camera import turntable_cameras
from latent3d.systems.autodecoder.stage2.generator import load_generator, resolve_model
from latent3d.systems.autodecoder.generate import FOV, sample_latents
from latent3d.render.volume import render_grid_views


@pytest.fixture(scope="module")
def gen():
    return load_generator(resolve_model("object3d-tiny"))


def _renders(gen, prompt: str, seed: int, V, K) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two samples' views: per sample rgb [V, 32, 32, 3], occupancy [V, 32, 32]."""
    lat = sample_latents(gen, [prompt] * 2, steps=16, guidance=3.0, seed=seed)
    with torch.no_grad():
        ad = gen.decoder.cfg
        return [render_grid_views(*gen.decoder.decode(lat[k:k + 1]), V, K, 32, 32, ad.box, ad.samples) for k in range(2)]


def _foreground_colour(gen, prompt: str, seed: int) -> torch.Tensor:  # -> [S, 3] mean foreground RGB per sample
    views = _renders(gen, prompt, seed, *turntable_cameras(2, 32, 3.0, FOV, 20.0))
    return torch.stack([img[occ > 0.5].mean(0) for img, occ in views])


def test_the_same_seed_gives_a_red_chair_and_a_blue_chair(gen):
    red, blue = _foreground_colour(gen, "a red chair", 0), _foreground_colour(gen, "a blue chair", 0)
    # palette red (0.85, 0.12, 0.10), blue (0.12, 0.30, 0.85), shaded; the margin 0.15 is a third of the shaded
    # difference of the training renders' channels
    assert (red[:, 0] > red[:, 2] + 0.15).all(), red
    assert (blue[:, 2] > blue[:, 0] + 0.15).all(), blue


def test_the_same_seed_gives_a_chair_and_a_mushroom(gen):
    from latent3d.data.procedural.objects import make_object
    from latent3d.data.procedural.raycast import render_views

    V, K = turntable_cameras(4, 32, 3.0, FOV, 20.0)
    names = ("chair", "mushroom")
    truth = {c: torch.stack([render_views(make_object(c, "red", seed=s, variation=1.0), V, K, 32, 32).hit.float()
                             for s in range(4)]).mean(0) for c in names}  # [V, 32, 32] mean silhouette of each
    for c in names:
        for _, occ in _renders(gen, f"a red {c}", 0, V, K):
            iou = {k: float(torch.minimum(occ, t).sum() / torch.maximum(occ, t).sum()) for k, t in truth.items()}
            assert iou[c] == max(iou.values()), (c, iou)  # the prompt's object, not the other one, from the same noise


def test_the_object_word_decides_the_3d_shape_not_the_noise_seed(gen):
    """3-D occupancy (density above the mesh iso-level) of samples: the same word from different noise overlaps
    more than different words from the same noise. When the shape follows the seed it is the other way round
    (the first object3d-tiny, trained with EDM's image noise levels)."""
    from latent3d.render.grid_assets import default_level

    words = ("chair", "table", "mushroom")
    box = float(gen.meta["box"])
    occ = {}
    with torch.no_grad():
        for w in words:
            lat = sample_latents(gen, [f"a red {w}"] * 3, steps=16, guidance=3.0, seed=0)
            for k in range(3):
                d = gen.decoder.decode(lat[k:k + 1])[0][0, 0]
                occ[w, k] = d > default_level(d.numpy(), (-box,) * 3, (box,) * 3)

    def iou(a, b):
        return float((a & b).sum() / (a | b).sum())

    within = [iou(occ[w, i], occ[w, j]) for w in words for i in range(3) for j in range(i)]
    across = [iou(occ[v, k], occ[w, k]) for k in range(3) for i, v in enumerate(words) for w in words[:i]]
    # measured on the retrained object3d-tiny: mean IoU 0.57 within a word, 0.08 across words (the first model: 0.12
    # vs 0.69, and the test fails on it)
    assert sum(within) / len(within) > sum(across) / len(across) + 0.1, (within, across)


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
