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

TOL = dict(atol=1e-5, rtol=1e-4)  # float32, same ops in a different order


def _pipe(folder):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, safety_checker=None)


def test_text_embeddings_and_decode_match_pipeline(tiny_sd_dir):
    prior, pipe = load_prior(tiny_sd_dir), _pipe(tiny_sd_dir)
    cond, uncond = pipe.encode_prompt("a red snowman", "cpu", 1, True, negative_prompt="")
    assert_close(prior.encode_text(["a red snowman"]), cond, **TOL)
    assert_close(prior.encode_text([""]), uncond, **TOL)
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = pipe.image_processor.postprocess(pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample, "pt")
    assert_close(prior.decode_latents(z), ref, **TOL)
    assert prior.resolution == 32 and prior.downsample == 2 and prior.latent_channels == 4


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampling_matches_stable_diffusion_pipeline(tmp_path, prediction_type):
    from diffusers import StableDiffusionPipeline

    comps = tiny_sd_components(tmp_path, prediction_type)
    StableDiffusionPipeline(**comps, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(tmp_path / "p")  # fmt: skip
    prior, pipe = load_prior(tmp_path / "p"), _pipe(tmp_path / "p")
    lat = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    prompts = ["a red snowman, side view", "a blue chair"]
    ref = pipe(prompts, num_inference_steps=4, guidance_scale=7.5, latents=lat, output_type="pt").images
    ours = sample_images(prior, prompts, num_steps=4, guidance=7.5, latents=lat, disable_progress=True)
    assert_close(ours, ref, **TOL)
    assert (ours - ref).abs().max() < 1e-5 < (ours[0] - ours[1]).abs().max()  # and the prompts do matter


def test_predict_eps_converts_v_prediction(tmp_path):
    from diffusers import StableDiffusionPipeline

    comps = tiny_sd_components(tmp_path, "v_prediction")
    StableDiffusionPipeline(**comps, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(tmp_path / "p")  # fmt: skip
    prior = load_prior(tmp_path / "p")
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 4, 16, 16, generator=g)
    t = torch.tensor([600])
    a = prior.alphas_cumprod[t].reshape(1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    emb = prior.encode_text(["a cat"])
    v = comps["unet"](x_t, t, encoder_hidden_states=emb).sample
    # eps = sqrt(a) v + sqrt(1 - a) x_t  (Salimans & Ho 2022)
    assert_close(prior.predict_eps(x_t, t, emb), a.sqrt() * v + (1 - a).sqrt() * x_t, **TOL)


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
    assert_close(prior.decode_latents(prior.encode_images(img)), img)  # pixel space: exact round trip
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
