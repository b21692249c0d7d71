"""The object prior's networks: a pixel-space UNet2DConditionModel, a word-level CLIP text encoder, a DDIM scheduler."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from latent3d.priors.object_prior.config import ObjectPriorConfig


def load_init(folder: Path, unet: nn.Module, text: nn.Module, tok) -> None:
    """Copy the weights of an exported prior into fresh components (fine-tuning); vocabularies must agree."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from latent3d.errors import UserError
    from latent3d.io.model_folder import from_pretrained, get, hf_load, read_config

    if not (folder / "model_index.json").exists():
        raise UserError(f"--init {folder}: not an exported prior (no model_index.json)")
    fix = "pass the model/ folder of `latent3d train prior` (retrain or copy it again)"
    path = folder / "tokenizer" / "tokenizer.json"
    if get(read_config(path, fix), "model.vocab", dict, path, fix) != tok.get_vocab():
        raise UserError(f"--init {folder}: its vocabulary differs from this run's captions")

    def load() -> None:
        unet.load_state_dict(from_pretrained(UNet2DConditionModel, folder / "unet").float().state_dict())
        text.load_state_dict(from_pretrained(CLIPTextModel, folder / "text_encoder").float().state_dict())

    hf_load(load, f"--init {folder}: a damaged prior, or network shapes that differ from this run's settings", fix)


def build_components(cfg: ObjectPriorConfig, vocabulary: list[str]):
    """Fresh (unet, text_encoder, tokenizer, scheduler) for ``vocabulary`` (the captions' words): a pixel-space
    :func:`~latent3d.priors.bundle.build_text_unet` with cross-attention in the lowest ``cfg.attn_levels`` levels and
    a DDIM scheduler of ``cfg``'s schedule and prediction type (x0 clipped to [-1, 1], pixels)."""
    from latent3d.priors.bundle import build_text_unet

    n, k = len(cfg.block_out_channels), cfg.attn_levels
    sched = dict(beta_schedule=cfg.beta_schedule, clip_sample=True, set_alpha_to_one=True,
                 prediction_type=cfg.prediction_type, timestep_spacing="leading")  # fmt: skip
    return build_text_unet(
        vocabulary, max_tokens=cfg.max_tokens, text_dim=cfg.text_dim, text_layers=cfg.text_layers,
        sample_size=cfg.resolution, channels=3, block_out_channels=cfg.block_out_channels,
        cross_attention=(False,) * (n - k) + (True,) * k, attention_head_dim=8, norm_num_groups=8, scheduler=sched,
    )  # fmt: skip
