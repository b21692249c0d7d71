"""LucidDreamer's official recipe for SD-size priors (issue 19, item 4), each piece against a transcription of the
official code (EnVision-Research/LucidDreamer: ``train.py``, ``gaussian_renderer/__init__.py``,
``utils/loss_utils.py``, ``guidance/sd_utils.py``), and one distillation step of the recipe on a tiny SD prior in
float64 whose latents and loss are rebuilt by hand."""

import dataclasses
import math

import pytest
import torch

from latent3d.distill import distillation_loss
from latent3d.priors import load_prior
from latent3d.systems.lucid_dreamer import dream as dream_module
from latent3d.systems.lucid_dreamer import recipe as recipe_module
from latent3d.systems.lucid_dreamer.dream import DreamConfig, distill_step, resolve_defaults
from latent3d.systems.lucid_dreamer.recipe import (
    BUNDLED,
    LUCID,
    augment_scales,
    backgrounds,
    camera_ranges,
    disparity_images,
    tv_loss,
    view_embeddings,
)
from dream_scene import float64_scene
from tolerances import rel_err

REL64 = 1e-9  # float64 chains of a few thousand roundings (see test_text_to_3d); a wiring bug is O(1)


def test_progressive_cameras_follow_the_official_schedule():
    # train.py, use_progressive False: at iteration >= 500 with iteration % 500 == 0, before the views are drawn
    radius, fovy = list(LUCID.radius_range), list(LUCID.fov_range)
    for it in range(1, 5001):
        if it >= 500 and it % 500 == 0:
            fovy[0] = max(0.16, fovy[0] * 0.75)
            fovy[1] = min(0.60, fovy[1] * 1.1)
            radius[1] = max(5.0, radius[1] * 0.95)
            radius[0] = max(3.5, radius[0] * 0.95)
        (r0, r1), (f0, f1) = camera_ranges(LUCID, it)
        assert (r0, r1, f0, f1) == pytest.approx((*radius, *fovy), rel=1e-12), it
    assert camera_ranges(LUCID, 5000) != camera_ranges(LUCID, 499)  # the schedule does move
    assert camera_ranges(BUNDLED, 5000) == (BUNDLED.radius_range, BUNDLED.fov_range)


def test_background_augmentation_is_white_random_or_black_as_official():
    # render(): white unless random() < bg_aug_ratio (0.66), then random colour or black with probability 1/2 each
    n = 40_000
    bg = backgrounds(n, 0.66, 0.5, torch.Generator().manual_seed(0))
    white, black = (bg == 1).all(1), (bg == 0).all(1)
    colour = ~white & ~black
    for share, p in ((white, 0.34), (black, 0.33), (colour, 0.33)):
        assert abs(share.float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs(bg[colour].mean().item() - 0.5) < 0.01 and bg[colour].std().item() == pytest.approx(12**-0.5, 0.03)
    assert not (backgrounds(n, 0.66, 0.0, torch.Generator().manual_seed(0)) == 0).all(1).any()  # bundled: no black


def test_scale_noise_is_the_official_augmentation():
    # render(): scales = clamp(scales + randn * sqrt(0.2) * scales / 4, 0)
    s = torch.full((200_000, 3), 0.02, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(1)
    out = augment_scales(s, gen)
    noise = torch.randn(s.shape, generator=torch.Generator().manual_seed(1)).double()
    expected = torch.clamp(s + noise * (0.2**0.5) * s / 4, 0.0)
    assert torch.allclose(out, expected, rtol=1e-15, atol=0)
    ratio = out / s
    assert abs(ratio.mean().item() - 1.0) < 1e-3 and ratio.std().item() == pytest.approx(0.2**0.5 / 4, rel=0.01)
    out.sum().backward()  # differentiable: d out / d s = 1 + noise * sqrt(0.2) / 4
    assert torch.allclose(s.grad, 1 + noise * 0.2**0.5 / 4)


def _official_view_embedding(embeddings, azimuth):
    """train.py, perpneg off, transcribed."""
    if azimuth >= -90 and azimuth < 90:
        r = 1 - azimuth / 90 if azimuth >= 0 else 1 + azimuth / 90
        start_z, end_z = embeddings["front"], embeddings["side"]
    else:
        r = 1 - (azimuth - 90) / 90 if azimuth >= 0 else 1 + (azimuth + 90) / 90
        start_z, end_z = embeddings["side"], embeddings["back"]
    return r * start_z + (1 - r) * end_z


def test_view_embeddings_interpolate_in_azimuth_as_official():
    g = torch.Generator().manual_seed(0)
    emb = {k: torch.randn(1, 5, 7, generator=g, dtype=torch.float64) for k in ("front", "side", "back")}
    az = torch.tensor([-180.0, -135.0, -90.0, -89.9, -30.0, 0.0, 45.0, 89.9, 90.0, 120.0, 179.9], dtype=torch.float64)
    got = view_embeddings(emb, az)
    for i, a in enumerate(az.tolist()):
        assert torch.allclose(got[i : i + 1], _official_view_embedding(emb, a), rtol=0, atol=1e-14), a
    assert torch.equal(got[5:6], emb["front"]) and torch.allclose(got[0:1], emb["back"])


def _official_tv_loss(x):
    """utils/loss_utils.tv_loss, transcribed (_tensor_size = C * H * W)."""
    b, _, h, w = x.shape
    count_h = x[:, :, 1:, :].size(1) * x[:, :, 1:, :].size(2) * x[:, :, 1:, :].size(3)
    count_w = x[:, :, :, 1:].size(1) * x[:, :, :, 1:].size(2) * x[:, :, :, 1:].size(3)
    h_tv = torch.pow((x[:, :, 1:, :] - x[:, :, : h - 1, :]), 2).sum()
    w_tv = torch.pow((x[:, :, :, 1:] - x[:, :, :, : w - 1]), 2).sum()
    return 2 * (h_tv / count_h + w_tv / count_w) / b


def test_tv_loss_is_the_official_one():
    x = torch.rand(3, 2, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert tv_loss(x).item() == pytest.approx(_official_tv_loss(x).item(), rel=1e-14)


def test_disparity_image_is_inverse_expected_depth_over_its_maximum():
    alpha = torch.tensor([1.0, 0.5, 0.05, 0.0], dtype=torch.float64).view(1, 1, 4, 1).expand(2, 3, 4, 1)
    z = torch.tensor([2.0, 4.0, 1.0, 0.0], dtype=torch.float64).view(1, 1, 4, 1)
    disp = disparity_images(alpha * z, alpha)  # accumulated depth = alpha * expected depth
    assert disp.shape == (2, 3, 3, 4)
    # covered pixels (alpha > 0.1): (1/2, 1/4) / (1/2); the faint (alpha 0.05) and empty ones: 0
    assert torch.allclose(disp[0, 0, 0], torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=torch.float64))
    assert torch.equal(disp[:, 0], disp[:, 2])


def test_auto_recipe_follows_the_prior_size_and_user_settings_win():
    class Big:
        resolution, defaults = 512, {}

    class Small:
        resolution, defaults = 64, {}

    big = resolve_defaults(DreamConfig(prompt="a cat"), Big())
    assert (big.recipe, big.iters, big.init_points, big.densify_every, big.grad_threshold) == ("lucid", 5000,
                                                                                               100_000, 100, 7.5e-4)
    small = resolve_defaults(DreamConfig(prompt="a cat"), Small())
    assert (small.recipe, small.iters, small.init_points) == ("bundled", 300, 2048)
    mine = resolve_defaults(DreamConfig(prompt="a cat", recipe="lucid", iters=7, densify_every=3), Small())
    assert (mine.recipe, mine.iters, mine.densify_every, mine.init_extent) == ("lucid", 7, 3, 0.5)
    # ISM's inversion stride: the official 200 for SD-size priors, 500 for the bundled one, the caller's if set
    assert (big.ism.xs_delta_t, small.ism.xs_delta_t, mine.ism.xs_delta_t) == (200, 500, 200)
    cfg = DreamConfig(prompt="a cat")
    cfg.ism.xs_delta_t = 100
    assert resolve_defaults(cfg, Small()).ism.xs_delta_t == 100


@pytest.mark.numerics
def test_lucid_step_encodes_flipped_disparity_samples_and_adds_tv_and_scale_terms(tiny_sd_dir, monkeypatch):
    """With depth-as-latent and flip forced on (p = 1), a step's latents are a VAE posterior *sample* of the flipped
    disparity image (official ``train_step(as_latent=True)`` after ``augmentation``), and its loss is
    ``0.1 * ISM loss / views + tv(images) + tv(depths) + mean(scales)``."""
    forced = dataclasses.replace(LUCID, as_latent_ratio=1.0, flip=1.0, scale_aug=0.0)
    monkeypatch.setitem(recipe_module.RECIPES, "lucid", forced)
    monkeypatch.setitem(dream_module.RECIPES, "lucid", forced)
    prior = load_prior(tiny_sd_dir, dtype=torch.float64)
    cfg = resolve_defaults(DreamConfig(prompt="a red snowman", recipe="lucid", iters=3, views=2, init_points=200,
                                       init_extent=0.8, radius_range=(2.5, 2.5), fov_range=(0.8, 0.8)), prior)
    gen = torch.Generator().manual_seed(0)
    model, cams = float64_scene(cfg, gen)
    bg = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    uncond = prior.encode_text([""])
    g_ref = torch.Generator()
    g_ref.set_state(gen.get_state())
    step = distill_step(model, prior, cfg, cams, bg, 7, uncond, gen)

    out, alpha, _ = model.render(cams.viewmats, cams.Ks, 32, 32, backgrounds=bg, render_mode="RGB+D")
    rgb, disp = out[..., :3].permute(0, 3, 1, 2), disparity_images(out[..., 3:], alpha)
    torch.rand(1, generator=g_ref), torch.rand(1, generator=g_ref)  # the depth-as-latent and flip draws
    x = disp.flip(-1) * 2 - 1
    z = prior.vae.encode(x).latent_dist.sample(g_ref) * prior.vae.config.scaling_factor
    assert rel_err(step.latents, z) < REL64
    mean = prior.vae.encode(x).latent_dist.mean * prior.vae.config.scaling_factor
    assert rel_err(step.latents, mean) > 1e-3  # a sample, not the mean

    ism = 0.1 * distillation_loss(z, step.grad) / 2  # lambda_guidance * the ISM loss / views
    expected = ism + _official_tv_loss(rgb) + _official_tv_loss(disp[:, :1]) + model.scales.mean()
    assert step.loss.item() == pytest.approx(expected.item(), rel=1e-9)
    assert (_official_tv_loss(rgb) + model.scales.mean()).item() > 1e-3 * abs(ism.item())  # the terms count


def test_dream_command_takes_the_recipe_and_governs_its_threads(tmp_path, capsys, monkeypatch):
    """``dream --recipe`` reaches the config (one error line for a recipe that does not exist, before anything
    loads), and the command hands the loop a thread governor started before the weights load."""
    from latent3d.cli import main
    from latent3d.runtime import ThreadGovernor

    seen = {}

    class Stop(Exception):
        pass

    def fake_dream(prior, cfg, governor=None):
        seen.update(cfg=cfg, governor=governor)
        raise Stop

    monkeypatch.setattr(dream_module, "dream", fake_dream)
    with pytest.raises(Stop):
        main(["dream", "a red snowman", "--out", str(tmp_path / "o"), "--recipe", "lucid", "--iters", "2"])
    assert seen["cfg"].recipe == "lucid" and isinstance(seen["governor"], ThreadGovernor)
    capsys.readouterr()
    assert main(["dream", "a red snowman", "--out", str(tmp_path / "o"), "--recipe", "official"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--recipe" in err[0] and not (tmp_path / "o").exists()
