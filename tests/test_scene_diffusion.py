"""NF-LDM's hierarchical latent diffusion (Kim et al. 2023, Sec. 3.3): the x0 objective against a hand computation,
the scheduler against diffusers', the camera trajectory encoding and its inverse, the conditioning of psi_c and psi_f,
sampling with the exact denoiser of a two-scene data set (the oracle that returns the true x0 of one training item
when the noise leaves one possible), and a tiny end-to-end run whose three models memorise two scenes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from latent3d.cli import app
from latent3d.diffusion.ddpm import loss_weight
from latent3d.errors import UserError
from latent3d.nets.standardize import Standardizer
from latent3d.render.camera import look_at
from latent3d.systems.nfldm.config import SceneDiffusionConfig, SceneLatentAEConfig
from latent3d.systems.nfldm.latent_ae import SceneLatentAutoencoder
from latent3d.systems.nfldm.scene_diffusion import (LEVELS, SceneDiffusion, build_level,
                                                    decode_trajectory, diffusion_loss, encode_poses,
                                                    encode_trajectory, resample_poses, sample_scene_latents, schedule,
                                                    scheduler_config)  # fmt: skip
from latent3d.systems.nfldm.train_scene_diffusion import check_latents_run, load_level, load_scene_diffusion
from test_scene_latent_ae import TINY, TINY_ARGS, _invoke

SMALL = dict(mlp_width=32, mlp_blocks=2, width=16, channel_mult=(1,), channel_mult_fine=(1, 2), trajectory_poses=4)
SMALL_ARGS = ["--mlp-width", "32", "--mlp-blocks", "2", "--width", "16", "--channel-mult", "1",
              "--channel-mult-fine", "1,2", "--trajectory-poses", "4"]  # fmt: skip
SHAPES = {"g": [8], "c": [4, 4, 4, 2], "f": [4, 16, 16]}  # the latents of TINY on a 16x16x4 grid
BOX_MIN, BOX_MAX = torch.tensor([-7.0, -5.0, -0.5]), torch.tensor([7.0, 9.0, 3.5])


def _cfg(**kw) -> SceneDiffusionConfig:
    return SceneDiffusionConfig(**{**SMALL, **kw})


# ------------------------------------------------------------------------------------------------- objective
def test_the_x0_objective_is_the_weighted_hand_computation():
    """``loss(psi, x0, generator, g=...)`` draws t then eps from the generator and is ``mean_b w_b mean (psi(x_t, t,
    g) - x0)^2`` with ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` and ``w = min(SNR_t, 5)`` (min-SNR on the x0
    target), or ``w = 1`` (constant); psi_c with random weights, so that its output depends on x_t, t and g."""
    torch.manual_seed(0)
    psi = build_level("c", _cfg(), SHAPES).double()
    for p in psi.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x0 = torch.randn(3, 4, 4, 4, 2, dtype=torch.float64)
    g = torch.randn(3, 8, dtype=torch.float64)
    for weighting in ("min_snr", "constant"):
        cfg = _cfg(weighting=weighting)
        got = diffusion_loss(cfg)(psi, x0, torch.Generator().manual_seed(7), g=g)
        gen = torch.Generator().manual_seed(7)
        t = torch.randint(0, 1000, (3,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        a = schedule(cfg).double()[t]
        x_t = a.sqrt()[:, None, None, None, None] * x0 + (1 - a).sqrt()[:, None, None, None, None] * eps
        w = (a / (1 - a)).clamp(max=5.0) if weighting == "min_snr" else torch.ones(3, dtype=torch.float64)
        per = (psi(x_t, t, g) - x0).pow(2).flatten(1).mean(1)
        torch.testing.assert_close(got, (w * per).mean(), rtol=1e-5, atol=0)


def test_min_snr_weights_the_x0_error_alike_for_every_target():
    """Hang et al. 2023, Sec. 3.4: the eps error is SNR x the x0 error, the v error (SNR + 1) x; the weights of eps and
    v targets are min(SNR, gamma) divided by those, and 1 for every target under constant weighting."""
    a = schedule(_cfg()).double()[torch.tensor([0, 100, 500, 900, 999])]
    snr = a / (1 - a)
    x0_w = loss_weight(a, "sample", "min_snr", 5.0)
    torch.testing.assert_close(x0_w, snr.clamp(max=5.0))
    torch.testing.assert_close(loss_weight(a, "epsilon", "min_snr", 5.0) * snr, x0_w)
    torch.testing.assert_close(loss_weight(a, "v_prediction", "min_snr", 5.0) * (snr + 1), x0_w)
    assert torch.equal(loss_weight(a, "epsilon"), torch.ones_like(a))


def test_the_sampling_schedule_is_diffusers():
    """The saved scheduler settings build a diffusers DDIMScheduler with the training alpha_bar and the sampler's
    timesteps (trailing spacing)."""
    from diffusers import DDIMScheduler

    from latent3d.diffusion.ddim import ddim_timesteps

    for kind in ("squaredcos_cap_v2", "scaled_linear"):
        cfg = _cfg(beta_schedule=kind)
        sched = DDIMScheduler(**scheduler_config(cfg))
        torch.testing.assert_close(sched.alphas_cumprod, schedule(cfg), rtol=1e-5, atol=1e-7)
        sched.set_timesteps(25)
        assert torch.equal(sched.timesteps, ddim_timesteps(25, 1000, "trailing"))


# ------------------------------------------------------------------------------------------------- trajectory
def _level_cameras(n: int, seed: int = 0) -> torch.Tensor:  # [n, 4, 4] level cameras inside the box
    g = torch.Generator().manual_seed(seed)
    eye = BOX_MIN + (BOX_MAX - BOX_MIN) * torch.rand(n, 3, generator=g, dtype=torch.float64)
    yaw = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    fwd = torch.stack([yaw.cos(), yaw.sin(), torch.zeros_like(yaw)], dim=-1)
    return look_at(eye, eye + fwd, dtype=torch.float64)


def test_the_trajectory_encoding_round_trips():
    """viewmats -> (x, y, z, cos, sin) -> viewmats is the identity for level cameras (K = N), the position is in units
    of the box's half-size around its centre, and encoding the decoded poses gives them back."""
    viewmats = _level_cameras(7)
    traj = encode_trajectory(viewmats, BOX_MIN, BOX_MAX, 7)
    assert traj.shape == (7, 5) and float(traj[:, :3].abs().max()) <= 1
    torch.testing.assert_close(decode_trajectory(traj, BOX_MIN, BOX_MAX), viewmats)
    centre_looking_x = look_at(torch.tensor([[0.0, 2.0, 1.5]]), torch.tensor([[1.0, 2.0, 1.5]]), dtype=torch.float64)
    torch.testing.assert_close(encode_poses(centre_looking_x, BOX_MIN, BOX_MAX),
                               torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]], dtype=torch.float64))  # fmt: skip
    poses = torch.cat([torch.rand(5, 3, dtype=torch.float64) * 2 - 1,
                       torch.nn.functional.normalize(torch.randn(5, 2, dtype=torch.float64), dim=-1)], dim=1)
    torch.testing.assert_close(encode_poses(decode_trajectory(poses, BOX_MIN, BOX_MAX), BOX_MIN, BOX_MAX), poses)


def test_resampling_keeps_the_ends_and_interpolates():
    poses = encode_poses(_level_cameras(4, seed=1), BOX_MIN, BOX_MAX)
    k7 = resample_poses(poses, 7)  # every other pose is a frame, the ones between are midpoints
    torch.testing.assert_close(k7[::2], poses)
    torch.testing.assert_close(k7[1, :3], (poses[0, :3] + poses[1, :3]) / 2)
    torch.testing.assert_close(k7[1, 3:], torch.nn.functional.normalize(poses[0, 3:] + poses[1, 3:], dim=0))
    assert resample_poses(poses[:1], 3).tolist() == [poses[0].tolist()] * 3


def test_standardizer_is_measured_and_inverted():
    x = torch.randn(6, 3, 5, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1])[None, :, None] + 4
    for axis, reduce in ((1, (0, 2)), (-1, (0, 1))):
        norm = Standardizer(x.shape[axis], axis).double()
        norm.fit(x)
        z = norm(x)
        torch.testing.assert_close(z.mean(reduce), torch.zeros(x.shape[axis], dtype=torch.float64))
        torch.testing.assert_close(z.std(reduce, correction=0), torch.ones(x.shape[axis], dtype=torch.float64))
        torch.testing.assert_close(norm.inverse(z), x)


# ------------------------------------------------------------------------------------------------- conditioning
def _randomised(level: str):  # the zero-initialised layers given weights, so that every input can matter
    torch.manual_seed(1)
    model = build_level(level, _cfg(), SHAPES).eval()
    for name, p in model.named_parameters():
        if "conv2" in name or "conv_out" in name or "global_emb" in name:
            torch.nn.init.normal_(p, std=0.2)
    return model


def test_psi_c_and_psi_f_are_conditioned():
    """Another g changes psi_c's and psi_f's output (conditional group norm) and the gradient reaches g; another c
    changes psi_f's (concatenation); psi_g, given nothing, depends on x_t."""
    t = torch.tensor([500, 20])
    g = torch.randn(2, 8, requires_grad=True)
    c = torch.randn(2, 4, 4, 4, 2)
    for level, x_t, cond in (("c", torch.randn(2, 4, 4, 4, 2), {}), ("f", torch.randn(2, 4, 16, 16), {"c": c})):
        model = _randomised(level)
        out = model(x_t, t, g=g, **cond)
        other = model(x_t, t, g=g.detach() + torch.randn(2, 8), **cond)
        assert float((out - other).detach().abs().mean()) > 0.05 * float(out.detach().abs().mean()), level
        g.grad = None
        out.pow(2).sum().backward()
        assert float(g.grad.abs().min()) > 0, level
    psi_f = _randomised("f")
    with torch.no_grad():
        x_t = torch.randn(2, 4, 16, 16)
        out, other = psi_f(x_t, t, g=g, c=c), psi_f(x_t, t, g=g, c=torch.randn_like(c))
    assert float((out - other).abs().mean()) > 0.05 * float(out.abs().mean())


# ------------------------------------------------------------------------------------------------- sampling
def _two_scenes(lae: SceneLatentAutoencoder) -> dict[str, torch.Tensor]:
    """Latents of two scenes: c and f made of codebook vectors, as the latent auto-encoder stores them."""
    gen = torch.Generator().manual_seed(3)
    heading = torch.nn.functional.normalize(torch.randn(2, 4, 2, generator=gen), dim=-1)
    return {"g": torch.randn(2, 8, generator=gen), "trajectory": torch.cat([torch.rand(2, 4, 3, generator=gen) * 2 - 1,
                                                                           heading], -1),
            "c": lae.vq_c.lookup(torch.randint(0, 32, (2, 4, 4, 2), generator=gen)),
            "f": lae.vq_f.lookup(torch.randint(0, 16, (2, 16, 16), generator=gen))}  # fmt: skip


def _oracles(models: SceneDiffusion, data: dict[str, torch.Tensor]) -> None:
    """Give each level the exact denoiser E[x0 | x_t, condition] of the two scenes ``data``: psi_g the posterior
    mean over the two (Gaussian likelihood of x_t under q(x_t | x0)); psi_c and psi_f the x0 of the scene whose
    (standardised) g they are given -- the training item's true x0 -- checking that f is given that scene's c."""
    ab = schedule(models.g.cfg)
    x_g = models.g.encode(data)  # [2, D]
    g_items = models.c.condition(data)["g"]  # [2, G] standardised as psi_c and psi_f see it

    def psi_g(x_t, t):
        a = ab[t][:, None]
        logits = -(x_t[:, None] - a.sqrt()[:, None] * x_g[None]).pow(2).sum(-1) / (2 * (1 - a))
        return logits.softmax(dim=1) @ x_g

    def item(g):  # [B, G] -> [B]: the scene each g belongs to
        return torch.cdist(g, g_items).argmin(dim=1)

    def psi_c(x_t, t, g):
        return models.c.encode(data)[item(g)]

    def psi_f(x_t, t, g, c):
        torch.testing.assert_close(c, models.f.condition(data)["c"][item(g)])
        return models.f.encode(data)[item(g)]

    models.g.forward, models.c.forward, models.f.forward = psi_g, psi_c, psi_f


def test_sampling_with_the_true_x0_returns_the_training_scenes():
    """With the exact denoisers of a two-scene data set (:func:`_oracles`), DDIM from noise (x0 prediction) lands on
    a training scene: g and its trajectory to float precision, c and f bit for bit (snapped to their codes), all of
    the same scene, and both scenes are drawn."""
    torch.manual_seed(0)
    lae = SceneLatentAutoencoder(SceneLatentAEConfig(**TINY), 5, (16, 16, 4)).eval()
    data = _two_scenes(lae)
    models = SceneDiffusion(*(build_level(lv, _cfg(), SHAPES) for lv in LEVELS), lae, (BOX_MIN, BOX_MAX))
    for m in (models.g, models.c, models.f):
        m.fit_statistics(data)
    _oracles(models, data)
    g, traj, c, f = sample_scene_latents(models, 8, 20, torch.Generator().manual_seed(0))
    j = torch.cdist(g, data["g"]).argmin(dim=1)
    assert sorted(set(j.tolist())) == [0, 1]
    torch.testing.assert_close(g, data["g"][j], atol=1e-4, rtol=0)
    torch.testing.assert_close(traj, data["trajectory"][j], atol=1e-4, rtol=0)
    assert torch.equal(c, data["c"][j]) and torch.equal(f, data["f"][j])


# ------------------------------------------------------------------------------------------------- end to end
def _nearest(x: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [n, ...], [N, ...]
    d = (x[:, None] - train[None]).pow(2).flatten(2).mean(-1)  # [n, N] mean squared distance
    return d.min(dim=1).values, d.argmin(dim=1)


@pytest.mark.numerics
def test_the_three_levels_memorise_two_scenes(latent_ae_run, tmp_path):
    """Trained on 2 scenes, the samples of every level (g with its trajectory, c, f) land on a training scene's
    latents, far nearer (standardised units) than random normal latents (snapped to codes for c and f) do, and the
    g, c and f of one sample are those of one scene: c follows g, f follows g and c."""
    run = tmp_path / "sd"
    res = CliRunner().invoke(app, ["train", "scene-diffusion", "--latents", str(latent_ae_run), "--out", str(run),
                                   "--steps", "200", "--batch-size", "4", "--lr", "2e-3", *SMALL_ARGS])  # fmt: skip
    assert res.exit_code == 0, res.output
    models = load_scene_diffusion(run)
    train = check_latents_run(latent_ae_run, _cfg(), ("g",)).latents  # g, trajectory, c, f of the 2 scenes
    g, traj, c, f = sample_scene_latents(models, 16, 25, torch.Generator().manual_seed(0))
    samples, gen, nearest = {"g": g, "trajectory": traj, "c": c, "f": f}, torch.Generator().manual_seed(1), {}
    for model in (models.g, models.c, models.f):
        rand = model.decode(torch.randn((16, *model.shape), generator=gen))
        if model.level != "g":
            rand = {model.level: getattr(models.latent_ae, f"vq_{model.level}").snap(rand[model.level])[0]}
        d_sample, nearest[model.level] = _nearest(model.encode(samples), model.encode(train))
        d_rand, _ = _nearest(model.encode(rand), model.encode(train))
        assert float(d_sample.mean()) < 0.05 * float(d_rand.mean()), (model.level, d_sample, d_rand)
    assert torch.equal(nearest["c"], nearest["g"]) and torch.equal(nearest["f"], nearest["g"]), nearest
    assert len(set(nearest["g"].tolist())) == 2
    assert "latent3d train scene-diffusion" in (run / "c" / "MODEL_CARD.md").read_text()
    assert json.loads((run / "run.json").read_text())["latents"] == str(latent_ae_run.resolve())


def test_one_level_trains_alone_and_bad_input_is_one_line(scene_ae_run, latent_ae_run, tmp_path):
    """--level c writes c/ only (the others may train in other processes); a missing or foreign latents run, latents
    the UNet levels do not fit, or an --out of other latents is one line before anything is written."""
    out = tmp_path / "out"
    cmd = ["train", "scene-diffusion", "--out", str(out), *SMALL_ARGS]
    assert "not a saved latent3d scene latent autoencoder" in _invoke([*cmd, "--latents", str(tmp_path)])
    assert "not a 'latent3d scene latent autoencoder'" in _invoke([*cmd, "--latents", str(scene_ae_run)])
    assert "give fewer levels" in _invoke([*cmd, "--latents", str(latent_ae_run), "--channel-mult", "1,2,2,2"])
    assert "--level" in _invoke([*cmd, "--latents", str(latent_ae_run), "--level", "h"])
    assert not out.exists()
    res = CliRunner().invoke(app, [*cmd, "--latents", str(latent_ae_run), "--level", "c", "--steps", "3"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["c", "run.json", "training"]
    assert load_level(out, "c").level == "c"
    with pytest.raises(UserError, match="--level g"):
        load_scene_diffusion(out)
    (out / "run.json").write_text(json.dumps({"latents": str(tmp_path / "other")}))
    assert "holds models of the latents" in _invoke([*cmd, "--latents", str(latent_ae_run), "--level", "f"])
    assert not (out / "f").exists()
