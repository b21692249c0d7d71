"""Priors: the diffusers-backed prior equals diffusers' own StableDiffusionPipeline on tiny random weights."""

import json

import pytest
import torch
from torch.testing import assert_close

from latent3d.errors import UserError
from latent3d.priors import load_prior
from latent3d.priors.sampling import sample_images
from latent3d.priors.vocab import build_word_tokenizer

from conftest import tiny_sd_components
from tolerances import EPS32, assert_close_f32

# Parity tests run both sides in float64 (issue 12): our prior loaded with dtype=torch.float64, diffusers' pipeline with
# dtype=torch.float64, so that the bounds do not depend on the CPU's float32 kernels. The two sides evaluate the same
# float64 networks with the same inputs, in other batch layouts and with the DDIM algebra written differently: each
# output differs by the float64 rounding of a few hundred sequential operations (UNet + VAE, ~200 layers) on values of
# magnitude <= ~2, i.e. ~1e3 * eps64 ~ 2e-13 (measured <= 2e-14). TOL64 = 1e-11 keeps a x50 margin on that and is
# ~1e8 times below what a real mistake changes (a wrong timestep, guidance or conversion: >= 1e-3).
TOL64 = dict(atol=1e-11, rtol=0)


def _pipe(folder, dtype=torch.float64):
    """diffusers' own pipeline; in float64 its DDIM scheduler also takes its square roots of alphas_cumprod in float64
    (from its own float32-computed table, which our prior then uses too: the table itself is compared separately)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, safety_checker=None, dtype=dtype)
    if dtype == torch.float64:
        pipe.scheduler.alphas_cumprod = pipe.scheduler.alphas_cumprod.double()
        pipe.scheduler.final_alpha_cumprod = pipe.scheduler.final_alpha_cumprod.double()
    return pipe


@pytest.mark.numerics
@torch.no_grad()
def test_text_embeddings_and_decode_match_pipeline(tiny_sd_dir):
    prior, pipe = load_prior(tiny_sd_dir, dtype=torch.float64), _pipe(tiny_sd_dir)
    cond, uncond = pipe.encode_prompt("a red snowman", "cpu", 1, True, negative_prompt="")
    assert cond.dtype == torch.float64
    assert_close(prior.encode_text(["a red snowman"]), cond, **TOL64)
    assert_close(prior.encode_text([""]), uncond, **TOL64)
    assert (cond - uncond).abs().max() > 1e-2  # the prompt matters
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = pipe.image_processor.postprocess(pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample, "pt")
    ours = prior.decode_latents(z)
    assert ours.dtype == torch.float64 and 0.05 < float(ref.std())  # not a constant image
    assert_close(ours, ref, **TOL64)
    assert prior.resolution == 32 and prior.downsample == 2 and prior.latent_channels == 4


@pytest.mark.numerics
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampling_matches_stable_diffusion_pipeline(tmp_path, prediction_type):
    from diffusers import StableDiffusionPipeline

    comps = tiny_sd_components(tmp_path, prediction_type)
    StableDiffusionPipeline(**comps, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(tmp_path / "p")  # fmt: skip
    prior, pipe = load_prior(tmp_path / "p", dtype=torch.float64), _pipe(tmp_path / "p")
    # our table (float64 from the config) is diffusers' (float32 cumprod of 1000 factors: a relative error of up to
    # ~sqrt(1000) eps32 ~ 4e-6, i.e. <= 4e-6 absolute, as test_diffusion_schedules checks); the sampler is compared
    # on diffusers' table so that the bound below is float64's
    assert_close(prior.alphas_cumprod, pipe.scheduler.alphas_cumprod, atol=4e-6, rtol=0)
    prior.alphas_cumprod = pipe.scheduler.alphas_cumprod.clone()
    lat = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    prompts = ["a red snowman, side view", "a blue chair"]
    ref = pipe(prompts, num_inference_steps=4, guidance_scale=7.5, latents=lat, output_type="pt").images
    ours = sample_images(prior, prompts, num_steps=4, guidance=7.5, latents=lat, disable_progress=True)
    assert ours.dtype == ref.dtype == torch.float64
    assert_close(ours, ref, **TOL64)
    assert (ours[0] - ours[1]).abs().max() > 0.1  # and the prompts do matter
    # the default float32 prior (and its own float64 table) gives the float64 images to float32 precision: 4 steps of
    # 2 guided UNet evaluations and one VAE decode, ~200 sequential layers each rounding to ~eps32 relative on values of
    # magnitude ~1, amplified <= 8x by the guidance 7.5: k = 200 * 8 = 1.6e3 -> 2e-4 on [0, 1] images (measured
    # <= 15 eps32; float16 weights or a wrong timestep would be >= 1e-3 off)
    ours32 = sample_images(load_prior(tmp_path / "p"), prompts, num_steps=4, guidance=7.5, latents=lat.float(),
                           disable_progress=True)  # fmt: skip
    assert ours32.dtype == torch.float32
    assert_close_f32(ours32, ref, k=1.6e3)


@pytest.mark.numerics
@torch.no_grad()
def test_predict_eps_converts_v_prediction(tmp_path):
    from diffusers import StableDiffusionPipeline

    comps = tiny_sd_components(tmp_path, "v_prediction")
    StableDiffusionPipeline(**comps, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(tmp_path / "p")  # fmt: skip
    prior = load_prior(tmp_path / "p", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(1, 4, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([600])
    a = prior.alphas_cumprod[t].reshape(1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    emb = prior.encode_text(["a cat"])
    v = comps["unet"].double()(x_t, t, encoder_hidden_states=emb).sample  # the in-memory network, not the saved one
    # eps = sqrt(a) v + sqrt(1 - a) x_t  (Salimans & Ho 2022); float64, see TOL64
    assert_close(prior.predict_eps(x_t, t, emb), a.sqrt() * v + (1 - a).sqrt() * x_t, **TOL64)
    assert (v - prior.predict_eps(x_t, t, emb)).abs().max() > 1e-2  # the conversion does something


def test_pixel_space_prior_with_word_tokenizer_warns_on_unknown_words(tmp_path, capsys):
    comps = tiny_sd_components(tmp_path, with_vae=False)
    root = tmp_path / "pix"
    comps["unet"].save_pretrained(root / "unet")
    comps["text_encoder"].save_pretrained(root / "text_encoder")
    build_word_tokenizer(["a red snowman, side view"], 16).save_pretrained(root / "tokenizer")
    comps["scheduler"].save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "Latent3DPixelPrior", "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }))  # fmt: skip
    prior = load_prior(root)
    assert prior.downsample == 1 and prior.resolution == 32
    img = torch.rand(2, 3, 32, 32)
    # pixel space: (x * 2 - 1) / 2 + 0.5, correctly rounded float32 operations (the same on every CPU): <= 2 eps32
    assert_close(prior.decode_latents(prior.encode_images(img)), img, atol=2 * EPS32, rtol=0)
    capsys.readouterr()  # drop the loaders' progress output
    prior.encode_text(["a red snowman"])
    assert capsys.readouterr().err == ""
    prior.encode_text(["a green castle"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'green'" in err[0] and "'castle'" in err[0] and "snowman" in err[0]


def test_missing_prior_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="neither a folder"):
        load_prior(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="hf download"):
        load_prior("someorg/not-in-the-cache")
