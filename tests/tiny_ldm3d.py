"""Tiny random-weight LDM3D pipelines (the Intel/ldm3d folder layout, saved with diffusers' own class), for tests.

Import as ``from tiny_ldm3d import build_tiny_ldm3d`` (``tests/`` is on ``sys.path`` under pytest, whatever directory
the suite is collected from).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import tiny_sd_components


def build_tiny_ldm3d(tmp: Path, channels: int, defaults: dict | None = None) -> Path:
    """Save a tiny StableDiffusionLDM3DPipeline (UNet (4, 8) + a ``channels``-channel VAE (4, 8) + 2-layer CLIP) under
    ``tmp`` and return its folder; ``defaults`` become the folder's ``_latent3d_defaults``."""
    from diffusers import AutoencoderKL, StableDiffusionLDM3DPipeline

    comps = tiny_sd_components(tmp)
    torch.manual_seed(channels)
    comps["vae"] = AutoencoderKL(
        block_out_channels=(4, 8), in_channels=channels, out_channels=channels, latent_channels=4, norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32,
    )  # fmt: skip
    pipe = StableDiffusionLDM3DPipeline(**comps, safety_checker=None, feature_extractor=None, image_encoder=None,
                                        requires_safety_checker=False)  # fmt: skip
    folder = Path(tmp) / f"ldm3d_{channels}c"
    pipe.save_pretrained(folder)
    if defaults:
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, "_latent3d_defaults": defaults}))
    return folder
