"""Shared fixtures: tiny random-weight diffusers pipelines built, saved and reloaded offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def tiny_clip_tokenizer(folder: Path):
    """A CLIPTokenizer over single characters (no merges): every lower-case word tokenizes, offline."""
    from latent3d.priors.vocab import char_clip_tokenizer

    return char_clip_tokenizer(folder, max_length=16)


def tiny_sd_components(tmp: Path, prediction_type: str = "epsilon", with_vae: bool = True, seed: int = 0):
    """UNet (4, 8) + VAE (4, 8) + 2-layer CLIP text encoder + DDIM scheduler, as diffusers' own fast tests."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    latent_ch = 4 if with_vae else 3
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16 if with_vae else 32, in_channels=latent_ch,
        out_channels=latent_ch, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8, norm_num_groups=2,
        attention_head_dim=2,
    )  # fmt: skip
    vae = None
    if with_vae:
        vae = AutoencoderKL(
            block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32,
        )  # fmt: skip
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8, intermediate_size=16, num_attention_heads=2,
        num_hidden_layers=2, vocab_size=64, max_position_embeddings=16,
    ))  # fmt: skip
    tokenizer = tiny_clip_tokenizer(tmp / "_tok")
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )  # fmt: skip
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A saved tiny StableDiffusionPipeline folder (eps-prediction)."""
    from diffusers import StableDiffusionPipeline

    tmp = tmp_path_factory.mktemp("tiny_sd")
    pipe = StableDiffusionPipeline(**tiny_sd_components(tmp), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.save_pretrained(tmp / "pipe")
    return tmp / "pipe"


# ------------------------------------------------------------------------------------------------- NF-LDM runs
LATENT_AE_ARGS = ["--width", "16", "--global-dim", "8", "--codebook-coarse", "32", "--codebook-fine", "16",
                  "--batch-size", "2", "--lr", "3e-3"]  # fmt: skip
SCENE_AE_ARGS = ["--holdout", "4", "--steps", "150", "--width", "16", "--features", "8", "--depth-bins", "12",
                 "--grid", "16,16,4", "--samples", "24", "--views-in", "6", "--views-out", "2",
                 "--lr", "3e-3"]  # fmt: skip


@pytest.fixture(scope="session")
def scene_ae_run(tmp_path_factory) -> Path:
    """A tiny NF-LDM scene auto-encoder run (``latent3d train scene-ae``: 2 procedural episodes of 12 frames at 64
    px, a 16x16x4 grid, 150 steps), shared by the latent auto-encoder and the scene diffusion tests."""
    from typer.testing import CliRunner

    from latent3d.cli import app

    root = tmp_path_factory.mktemp("scene_ae")
    res = CliRunner().invoke(app, ["data", "scenes", "--out", str(root / "eps"), "--episodes", "2", "--frames", "12",
                                   "--size", "64", "--seed", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["train", "scene-ae", "--data", str(root / "eps"), "--out", str(root / "sae"),
                                   *SCENE_AE_ARGS])  # fmt: skip
    assert res.exit_code == 0, res.output
    return root / "sae"


@pytest.fixture(scope="session")
def latent_ae_run(scene_ae_run, tmp_path_factory) -> Path:
    """A tiny latent auto-encoder run on the shared scene auto-encoder: latents of its 2 scenes (g of 8 dimensions,
    codebooks of 32 and 16 codes), shared by the scene diffusion and scene generation tests."""
    from typer.testing import CliRunner

    from latent3d.cli import app

    run = tmp_path_factory.mktemp("scene_latents") / "lae"
    res = CliRunner().invoke(app, ["train", "scene-latent-ae", "--scene-ae", str(scene_ae_run), "--out", str(run),
                                   "--steps", "40", "--image-weight", "0", *LATENT_AE_ARGS])  # fmt: skip
    assert res.exit_code == 0, res.output
    return run
