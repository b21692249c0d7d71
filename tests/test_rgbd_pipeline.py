"""LDM3D RGBD pipeline: parity with diffusers' StableDiffusionLDM3DPipeline on tiny random weights (6- and 4-channel
autoencoders in the Intel/ldm3d layout), exact 16-bit depth decoding, the `rgbd` command, seeds, the pinhole lift."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from latent3d.cli import main
from latent3d.io.depth import pack_depth_rgb, read_depth_png16
from latent3d.systems.ldm3d.pipeline import RGBDPipeline, default_intrinsics, join_rgbd, lift_points, split_rgbd

from tiny_ldm3d import build_tiny_ldm3d
from tolerances import EPS32

# Parity with diffusers runs both sides in float64 (issue 12): the same float64 networks, other batch layouts and the
# DDIM algebra written differently, so outputs (magnitude <= ~3) differ by the float64 rounding of a few hundred
# sequential operations, ~1e3 eps64 ~ 2e-13 (measured <= 2e-14): TOL64 keeps a x50 margin and is ~1e8 below what a
# real mistake (a wrong timestep, guidance, scaling factor or channel order: >= 1e-3) changes.
TOL64 = dict(atol=1e-11, rtol=0)
# Images in [0, 1] that the pipelines hand out in float32 (ours: RGBDPipeline; diffusers: postprocess to numpy) are
# float32 roundings of those float64 values: <= 2^-24 = EPS32 / 2 off each, so two of them differ by <= EPS32.
TOL_F32_OUT = dict(atol=EPS32 + 1e-11, rtol=0)
PROMPT = "a red snowman"
DEFAULTS = {"num_inference_steps": 3, "guidance_scale": 4.0, "height": 16, "width": 24}


def _build(tmp, channels: int, defaults: dict | None = None):
    """A tiny random-weight LDM3D pipeline saved with diffusers' own class (the Intel/ldm3d folder layout)."""
    return build_tiny_ldm3d(tmp, channels, defaults)


@pytest.fixture(scope="module")
def ldm3d_dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ldm3d")
    return {6: _build(tmp, 6, DEFAULTS), 4: _build(tmp, 4)}


@pytest.fixture(scope="module")
def hub_layout_dir(tmp_path_factory):
    """A 6-channel folder as the hub's Intel/ldm3d: no `_latent3d_defaults` in model_index.json."""
    folder = _build(tmp_path_factory.mktemp("ldm3d_hub"), 6)
    assert "_latent3d_defaults" not in json.loads((folder / "model_index.json").read_text())
    return folder


def _diffusers(folder):
    """diffusers' pipeline in float64; its DDIM scheduler then takes its square roots of its (float32-computed) table
    in float64, and ours samples with that same table (ours is compared to it in test_priors)."""
    from diffusers import StableDiffusionLDM3DPipeline

    pipe = StableDiffusionLDM3DPipeline.from_pretrained(str(folder), local_files_only=True, dtype=torch.float64)
    pipe.scheduler.alphas_cumprod = pipe.scheduler.alphas_cumprod.double()
    pipe.scheduler.final_alpha_cumprod = pipe.scheduler.final_alpha_cumprod.double()
    return pipe


def _ours(folder, table=None):
    pipe = RGBDPipeline.from_pretrained(folder, dtype=torch.float64)
    assert pipe.prior.compute_dtype == torch.float64
    if table is not None:
        pipe.prior.alphas_cumprod = table.clone()
    return pipe


@pytest.mark.numerics
@pytest.mark.parametrize("channels", [6, 4])
@torch.no_grad()
def test_text_eps_encode_decode_match_diffusers_components(ldm3d_dirs, channels):
    ours, ref = _ours(ldm3d_dirs[channels]), _diffusers(ldm3d_dirs[channels])
    prior = ours.prior
    assert ours.channels == channels and prior.downsample == 2 and prior.latent_channels == 4
    cond, uncond = ref.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt="")
    assert_close(prior.encode_text([PROMPT]), cond, **TOL64)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 12, generator=g, dtype=torch.float64), torch.tensor(437)
    # classifier-free guided eps, as the diffusers pipeline's loop computes it
    e_u, e_c = ref.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond]).repeat_interleave(2, 0)
                        ).sample.chunk(2)  # fmt: skip
    assert_close(prior.predict_eps_cfg(x, t, prior.encode_text([PROMPT]), prior.encode_text([""]), 4.0),
                 e_u + 4.0 * (e_c - e_u), **TOL64)  # fmt: skip
    # decode: the VAE output mapped to [0, 1] exactly as VaeImageProcessorLDM3D.postprocess does
    z = torch.randn(2, 4, 8, 12, generator=g, dtype=torch.float64)
    sf = ref.vae.config.scaling_factor
    raw = ref.vae.decode(z / sf).sample
    assert raw.shape == (2, channels, 16, 24)
    assert_close(prior.decode_latents(z), ref.image_processor.denormalize(raw), **TOL64)
    rgb, _, decoded = ours.decode(z)  # handed out in float32
    assert_close(decoded.double(), ref.image_processor.denormalize(raw), **TOL_F32_OUT)
    ref_rgb, _ = ref.image_processor.postprocess(raw, output_type="np")
    assert_close(rgb.double(), torch.from_numpy(ref_rgb).double(), **TOL_F32_OUT)
    # encode: the concatenated RGBD input through diffusers' encoder (posterior mean, scaled)
    img = torch.rand(2, 3, 16, 24, generator=g)
    d16 = torch.randint(0, 65536, (2, 16, 24), generator=g)
    x_in = join_rgbd(img, d16, f"{channels}c").double()
    assert_close(ours.encode(img, d16), ref.vae.encode(x_in * 2 - 1).latent_dist.mean * sf, **TOL64)


@pytest.mark.numerics
@pytest.mark.parametrize("channels", [6, 4])
@torch.no_grad()
def test_sampling_matches_diffusers_ldm3d_pipeline(ldm3d_dirs, channels):
    ref = _diffusers(ldm3d_dirs[channels])
    ours = _ours(ldm3d_dirs[channels], ref.scheduler.alphas_cumprod)
    lat = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    prompts = [PROMPT, "a blue chair"]
    final = {}

    def grab(pipe, i, t, kw):
        final["z"] = kw["latents"]
        return {}

    ref_rgb, ref_depth = ref(prompts, num_inference_steps=3, guidance_scale=5.0, latents=lat, output_type="np",
                             callback_on_step_end=grab, return_dict=False)[0]  # fmt: skip
    res = ours(prompts, steps=3, guidance=5.0, latents=lat, disable_progress=True)
    raw = ref.vae.decode(final["z"] / ref.vae.config.scaling_factor).sample
    assert raw.dtype == torch.float64
    assert_close(res.decoded.double(), ref.image_processor.denormalize(raw), **TOL_F32_OUT)
    assert_close(res.rgb.double(), torch.from_numpy(ref_rgb).double(), **TOL_F32_OUT)
    assert (res.rgb[0] - res.rgb[1]).abs().max() > 1e-3  # the prompts do matter
    x = res.decoded.numpy().astype(np.float64)
    if channels == 6:  # 16-bit value = round(G * 255) * 256 + round(B * 255) of the decoded depth channels
        want = np.round(x[:, 4] * 255).astype(np.int64) * 256 + np.round(x[:, 5] * 255).astype(np.int64)
    else:  # the float depth channel, rounded to 16 bits; diffusers returns that channel as float
        want = np.round(res.decoded.numpy()[:, 3] * np.float32(65535)).astype(np.int64)  # float32, as quantize_depth
        diff = np.abs(want - np.round(ref_depth[..., 0].astype(np.float64) * 65535))
        # both round float32 roundings of float64 values that agree to ~1e-14: a rounding flips only where x * 65535
        # lies within ~1e-3 of .5 (float32 resolution at 65535), a fraction ~1e-3 of the pixels
        assert diff.max() <= 1 and diff.mean() < 0.05
    assert res.depth.dtype == torch.uint16 and res.depth.shape == (2, 16, 24)
    np.testing.assert_array_equal(res.depth.numpy().astype(np.int64), want)
    assert len(np.unique(want)) > 20  # a non-trivial depth map


@pytest.mark.numerics
@torch.no_grad()
def test_hub_layout_defaults_match_diffusers_ldm3d_pipeline_defaults(hub_layout_dir):
    # issue 19 item 7: no steps, guidance or size given to either side. Both in float64 (see TOL64; measured: equal
    # bit for bit), while latent3d's former fallback (50 steps, guidance 7.5) moves the decoded images by 2.7e-2
    ref = _diffusers(hub_layout_dir)
    ours = _ours(hub_layout_dir, ref.scheduler.alphas_cumprod)
    lat = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    prompts = [PROMPT, "a blue chair"]
    seen, final = [], {}

    def grab(pipe, i, t, kw):
        seen.append(int(t))
        final["z"] = kw["latents"]
        return {}

    ref_rgb, _ = ref(prompts, latents=lat, output_type="np", callback_on_step_end=grab, return_dict=False)[0]
    res = ours(prompts, latents=lat, disable_progress=True)
    assert len(seen) == 49 and seen[0] == 961 and seen[-1] == 1  # diffusers' defaults: 49 steps of its DDIM config
    raw = ref.vae.decode(final["z"] / ref.vae.config.scaling_factor).sample  # [2, 6, 32, 32] float64
    ref_dec = ref.image_processor.denormalize(raw)
    assert_close(res.decoded.double(), ref_dec, **TOL_F32_OUT)  # all 6 channels, before any post-processing
    assert_close(res.rgb.double(), torch.from_numpy(ref_rgb).double(), **TOL_F32_OUT)
    assert (res.rgb[0] - res.rgb[1]).abs().max() > 1e-3  # the prompts do matter
    # depth: diffusers' own bytes (its PIL path: float32 image, (x * 255).round() to uint8), combined without its
    # NumPy 2 overflow (diffusers #14206): high byte * 256 + low byte
    img = ref.image_processor.pt_to_numpy(ref_dec)  # [2, 32, 32, 6] float32
    u8 = (img[..., 3:] * 255).round().astype(np.uint8)
    want = u8[..., 1].astype(np.int64) * 256 + u8[..., 2]
    assert res.depth.dtype == torch.uint16 and res.depth.shape == (2, 32, 32)
    np.testing.assert_array_equal(res.depth.numpy().astype(np.int64), want)
    assert len(np.unique(want)) > 20  # a non-trivial depth map
    assert ours.settings() == (49, 5.0, 32, 32)


def test_settings_latent3d_defaults_then_diffusers_defaults_explicit_values_win(ldm3d_dirs, hub_layout_dir, tmp_path,
                                                                                capsys):  # fmt: skip
    hub, ours = RGBDPipeline.from_pretrained(hub_layout_dir), RGBDPipeline.from_pretrained(ldm3d_dirs[6])
    assert hub.settings() == (49, 5.0, 32, 32)  # diffusers' StableDiffusionLDM3DPipeline, the UNet's native size
    assert ours.settings() == (3, 4.0, 16, 24)  # the folder's _latent3d_defaults
    for pipe in (hub, ours):
        assert pipe.settings(7, 2.0, 8, 10) == (7, 2.0, 8, 10)
        assert pipe.settings(guidance=1.0)[:2] == (pipe.defaults["steps"], 1.0)
    code = main(["rgbd", PROMPT, "--out", str(tmp_path / "o"), "--model", str(hub_layout_dir), "--steps", "2",
                 "--device", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert (run["steps"], run["guidance"], run["size"]) == (2, 5.0, [32, 32])


INTEL_LDM3D_SCHEDULER = {  # Intel/ldm3d's scheduler/scheduler_config.json (Intel/ldm3d-4c and -pano ship the same)
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.7.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False,
}  # fmt: skip


@torch.no_grad()
def test_pndm_folder_samples_with_ddim_on_the_pndm_timestep_grid(tmp_path, monkeypatch):
    # The documented choice for Intel's PNDMScheduler (PLMS): DDIM steps on PLMS's timesteps, 961, 941, ..., 1
    from diffusers import PNDMScheduler

    import latent3d.priors.sampling as sampling

    folder = _build(tmp_path, 6)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(INTEL_LDM3D_SCHEDULER))
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", "PNDMScheduler"]}))
    pndm = PNDMScheduler.from_pretrained(str(folder), subfolder="scheduler", local_files_only=True)
    pndm.set_timesteps(49)
    plms = pndm.timesteps.tolist()  # 50 UNet calls: the first step is taken twice (961, 941, 941, 921, ...)
    assert len(plms) == 50 and plms[:3] == [961, 941, 941]
    pipe = RGBDPipeline.from_pretrained(folder)
    assert pipe.settings()[:2] == (49, 5.0)
    calls = []
    real = sampling.ddim_sample
    monkeypatch.setattr(sampling, "ddim_sample", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    pipe(PROMPT, generator=torch.Generator().manual_seed(0), disable_progress=True)
    (_, _, ts, table), kw = calls[0]
    assert ts.tolist() == sorted(set(plms), reverse=True)  # the same 49 timesteps, each once
    assert kw["set_alpha_to_one"] is False  # the last step ends at alphas_cumprod[0], PNDM's final_alpha_cumprod
    assert_close(table[0].double(), pndm.final_alpha_cumprod.double(), atol=EPS32, rtol=0)


def test_6ch_depth_decoding_is_exact_for_all_65536_values_and_naive_uint8_is_not():
    d = torch.arange(65536).reshape(1, 256, 256)
    rgb = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    raw = join_rgbd(rgb, d, "6c") * 2 - 1  # what an ideal decoder returns, in [-1, 1]
    for r in (raw, raw.half(), raw + 0.4 / 255 * (torch.rand(raw.shape) - 0.5)):  # float32, float16, small error
        out_rgb, depth = split_rgbd((r.float() / 2 + 0.5).clamp(0, 1))
        assert torch.equal(depth.long().flatten(), torch.arange(65536))
        # float16 rounds [-1, 1] to <= 2^-11 (<= 2.5e-4 in [0, 1]); the jitter is <= 0.2 / 255 = 7.8e-4 in [0, 1]
        assert_close(out_rgb, rgb.permute(0, 2, 3, 1), atol=3e-3, rtol=0)
    # the same channels as 8-bit integers, combined naively under NumPy 2 (diffusers #14206):
    u8 = np.round(pack_depth_rgb(d[0].numpy().astype(np.uint16)) * 255).astype(np.uint8)  # [256, 256, 3]
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        with pytest.raises(OverflowError):  # python int 256 does not fit uint8 under NEP 50
            u8[..., 1] * 256 + u8[..., 2]
    shifted = (u8[..., 1] << 8) | u8[..., 2]  # stays uint8: the high byte is lost
    assert shifted.dtype == np.uint8 and not np.array_equal(shifted.ravel(), np.arange(65536))
    wrapped = (u8[..., 1].astype(np.int32) * 256 + u8[..., 2]).astype(u8.dtype)  # widen, then cast back to uint8
    np.testing.assert_array_equal(wrapped.ravel(), np.arange(65536) % 256)


def test_4ch_depth_rounds_and_float16_keeps_fewer_levels():
    d = torch.arange(65536).reshape(1, 256, 256)
    x = join_rgbd(torch.zeros(1, 3, 256, 256), d, "4c")
    assert torch.equal(split_rgbd(x)[1].long().flatten(), torch.arange(65536))
    half = split_rgbd(((x * 2 - 1).half().float() / 2 + 0.5).clamp(0, 1))[1]
    levels = len(torch.unique(half.long()))
    assert 2**13 < levels < 2**14  # 12288 of 65536 levels (steps of 32 near the ends): why LDM3D packs depth


@pytest.mark.numerics
def test_seeds_reproduce_bitwise_and_differ_across_seeds(ldm3d_dirs):  # the same CPU: bit for bit
    pipe = RGBDPipeline.from_pretrained(ldm3d_dirs[6])
    run = [pipe(PROMPT, generator=torch.Generator().manual_seed(s), disable_progress=True) for s in (5, 5, 6)]
    assert run[0].rgb.shape == (1, 16, 24, 3)  # size and steps from _latent3d_defaults
    assert torch.equal(run[0].rgb, run[1].rgb) and torch.equal(run[0].depth.long(), run[1].depth.long())
    assert not torch.equal(run[0].rgb, run[2].rgb)


@pytest.mark.numerics
def test_lift_points_follows_the_pinhole_model_on_a_constant_plane():
    # lift_points computes in float64 and hands out float32: <= EPS32 / 2 relative, inside assert_close's float32
    # default (rtol 1.3e-6 ~ 11 EPS32) on any CPU
    H, W, near, far, c = 6, 8, 0.5, 4.0, 0.25
    K = torch.tensor([[10.0, 0, 3.5], [0, 12.0, 2.0], [0, 0, 1]])
    rgb = torch.rand(H, W, 3)
    pts, cols = lift_points(rgb, torch.full((H, W), c), K, near, far)
    z = 1.0 / (c * (1 / near - 1 / far) + 1 / far)  # 1/z = a d + b with a = 1/near - 1/far, b = 1/far
    assert pts.shape == (H * W, 3) and torch.equal(cols, rgb.reshape(-1, 3))
    assert_close(pts[:, 2], torch.full((H * W,), z))
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    assert_close(pts[:, 0], ((u - 3.5) / 10.0 * z).flatten())
    assert_close(pts[:, 1], ((v - 2.0) / 12.0 * z).flatten())
    p64 = pts.double()
    proj = (K.double() @ (p64 / p64[:, 2:]).T).T  # projecting back lands on the pixel centres
    # float64 reprojection of the float32 points: their rounding (EPS32 / 2 relative) times |u|, |v| <= 8: <= 1e-6
    assert_close(proj[:, :2], torch.stack([u, v], -1).reshape(-1, 2).double(), atol=1e-5, rtol=0)
    # the ends of the range, and 16-bit input = float input / 65535
    ends = lift_points(rgb[:1, :2], torch.tensor([[1.0, 0.0]]), K, near, far)[0][:, 2]
    assert_close(ends, torch.tensor([near, far]))
    d16 = torch.randint(0, 65536, (H, W), generator=torch.Generator().manual_seed(0))
    assert_close(lift_points(rgb, d16.to(torch.uint16), K, near, far)[0], lift_points(rgb, d16 / 65535.0, K, near, far)[0])


@pytest.mark.numerics
def test_lift_points_equirect_puts_a_constant_disparity_on_a_sphere():  # float64 inside, float32 out (see above)
    H, W, near, far, c = 3, 9, 1.0, 10.0, 0.5
    pts, _ = lift_points(torch.rand(H, W, 3), torch.full((H, W), c), None, near, far)  # K=None: panorama
    r = 1.0 / (c * (1 / near - 1 / far) + 1 / far)
    assert_close(pts.norm(dim=-1), torch.full((H * W,), r))
    assert_close(pts[1 * W + 4], torch.tensor([r, 0.0, 0.0]), atol=1e-5, rtol=0)  # centre pixel looks along +x
    assert pts[1 * W + 6, 1] < 0 and (pts[:W, 2] > 0).all()  # right of centre turns to -y; the top row looks up


def test_rgbd_command_writes_exact_outputs(ldm3d_dirs, tmp_path, capsys):
    from PIL import Image
    from plyfile import PlyData

    out = tmp_path / "run"
    code = main(["rgbd", PROMPT, "--out", str(out), "--model", str(ldm3d_dirs[6]), "--seed", "7", "--device", "cpu",
                 "--near", "0.5", "--far", "5"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["rgb.png", "depth.png", "depth_preview.png", "points.ply", "run.json"])  # no temp files left
    run = json.loads((out / "run.json").read_text())
    assert (run["steps"], run["guidance"], run["size"], run["channels"]) == (3, 4.0, [16, 24], 6)
    # the same seed through the pipeline gives the same RGB and the same 16-bit depth, bit for bit
    res = RGBDPipeline.from_pretrained(ldm3d_dirs[6])(PROMPT, generator=torch.Generator().manual_seed(7),
                                                      disable_progress=True)  # fmt: skip
    with Image.open(out / "depth.png") as im:
        assert im.mode.startswith("I;16")
    depth = read_depth_png16(out / "depth.png")
    np.testing.assert_array_equal(depth, res.depth[0].numpy())
    rgb = np.asarray(Image.open(out / "rgb.png"))
    np.testing.assert_array_equal(rgb, np.round(res.rgb[0].numpy() * 255).astype(np.uint8))
    assert np.asarray(Image.open(out / "depth_preview.png")).shape == (16, 24, 3)
    # points.ply: the pinhole lift of depth.png with the recorded near/far/K
    v = PlyData.read(str(out / "points.ply"))["vertex"].data
    xyz = np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float64)
    K = np.array(run["points"]["K"])
    np.testing.assert_allclose(K, default_intrinsics(16, 24, 60.0).numpy())
    # the PLY holds float32 roundings of lift_points' float64 values: <= EPS32 / 2 ~ 6e-8 relative, inside rtol 1e-6
    z = 1.0 / (depth.astype(np.float64).ravel() / 65535 * (1 / 0.5 - 1 / 5) + 1 / 5)
    jj, ii = np.meshgrid(np.arange(24) + 0.5, np.arange(16) + 0.5)
    np.testing.assert_allclose(xyz[:, 2], z, rtol=1e-6)
    np.testing.assert_allclose(xyz[:, 0], (jj.ravel() - K[0, 2]) / K[0, 0] * z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xyz[:, 1], (ii.ravel() - K[1, 2]) / K[1, 1] * z, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], -1), rgb.reshape(-1, 3))


@pytest.mark.parametrize("case, needle", [
    ("size", "multiple of 2"),
    ("badsize", "is not HxW"),
    ("bundled", "'ldm3d-tiny' is not in this install"),
    ("hub", "Intel/ldm3d-4c"),
    ("sd", "not an LDM3D RGBD model"),
])  # fmt: skip
def test_rgbd_user_errors_are_one_line(ldm3d_dirs, tiny_sd_dir, tmp_path, capsys, monkeypatch, case, needle):
    import latent3d.priors.loading
    import latent3d.weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setattr(latent3d.weights, "bundled_checkpoints", lambda *a: [])
    monkeypatch.setattr(latent3d.priors.loading, "bundled_checkpoints", lambda *a: [])
    extra = {"size": ["--model", str(ldm3d_dirs[6]), "--size", "16x25"],
             "badsize": ["--model", str(ldm3d_dirs[6]), "--size", "big"],
             "bundled": [], "hub": ["--model", "Intel/ldm3d-4c"], "sd": ["--model", str(tiny_sd_dir)]}[case]
    code = main(["rgbd", PROMPT, "--out", str(tmp_path / "o"), "--device", "cpu", *extra])
    full = capsys.readouterr().err
    err = [line for line in full.splitlines() if line.startswith("latent3d:")]  # (transformers' load bars aside)
    assert code == 2 and len(err) == 1 and needle in err[0] and "Traceback" not in full, full
    assert not (tmp_path / "o").exists()  # nothing half-written
    if case == "hub":
        assert "hf download Intel/ldm3d-4c" in err[0] and "--model DIR" in err[0]
