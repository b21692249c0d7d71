"""The text-to-image networks latent3d trains itself, and their export as a diffusers-layout folder ("bundle").

The bundled object prior (:mod:`latent3d.priors.object_prior`) and LDM3D stage 2 (:mod:`latent3d.systems.ldm3d.train`)
are the same kind of model: a ``UNet2DConditionModel`` cross-attending to a small word-level ``CLIPTextModel``
(:mod:`latent3d.priors.vocab`), sampled with a ``DDIMScheduler`` (Rombach et al. 2022, Sec. 3.3 and eq. 3). One
builder makes them (:func:`build_text_unet`) and one writer saves them (:func:`export_bundle`), in the folder layout
that diffusers' pipelines and :func:`latent3d.priors.load_prior` read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["build_text_unet", "export_bundle"]


def build_text_unet(
    vocabulary: list[str],
    *,
    max_tokens: int,
    text_dim: int,
    text_layers: int,
    sample_size: int,
    channels: int,
    block_out_channels: tuple[int, ...],
    cross_attention: tuple[bool, ...],
    attention_head_dim: int,
    norm_num_groups: int,
    scheduler: dict[str, Any],
):
    """Fresh ``(unet, text_encoder, tokenizer, scheduler)`` of a text-conditioned latent/pixel diffusion model
    (Rombach et al. 2022, Sec. 3.3: a UNet with cross-attention on a text encoder's token features).

    ``vocabulary``: the words of the word-level tokenizer (padded to ``max_tokens``); ``channels``: the UNet's input
    and output channels (3 for pixels, the autoencoder's latent channels); ``cross_attention``: one flag per UNet
    level, highest resolution first (``CrossAttnDownBlock2D`` / ``DownBlock2D``, mirrored on the way up; the mid
    block always cross-attends); ``scheduler``: the ``DDIMScheduler`` settings. The modules are built in a fixed
    order (UNet, then text encoder) from the global RNG, as diffusers and transformers construct them: seed it around
    the call for reproducible weights.
    """
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from latent3d.priors.vocab import build_word_text_encoder, build_word_tokenizer

    tok = build_word_tokenizer(vocabulary, max_tokens)
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cross_attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cross_attention))
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, block_out_channels=block_out_channels,
        layers_per_block=1, down_block_types=down, up_block_types=up, cross_attention_dim=text_dim,
        attention_head_dim=attention_head_dim, norm_num_groups=norm_num_groups,
    )  # fmt: skip
    text = build_word_text_encoder(tok, text_dim, text_layers, max_tokens)
    return unet, text, tok, DDIMScheduler(**scheduler)


def _index_entry(component: Any) -> list[str | None]:
    """``[library, class]`` of a component as ``model_index.json`` names it (``[None, None]`` for an absent one).

    Tokenizers are named ``PreTrainedTokenizerFast``: the class that loads a ``tokenizer.json`` folder in every
    transformers version (transformers 5 builds it as ``TokenizersBackend``)."""
    if component is None:
        return [None, None]
    from transformers import PreTrainedTokenizerBase

    if isinstance(component, PreTrainedTokenizerBase):
        return ["transformers", "PreTrainedTokenizerFast"]
    return [type(component).__module__.split(".")[0], type(component).__name__]


def export_bundle(
    folder: Path,
    components: dict[str, Any],
    class_name: str,
    defaults: dict,
    card: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a diffusers-layout folder atomically (a crash leaves no half-written ``folder``): each component in
    its subfolder with ``save_pretrained`` (networks as float16 safetensors), ``model_index.json`` and
    ``MODEL_CARD.md``.

    ``components``: ``{name: module, tokenizer or scheduler, or None}`` (``None`` is written ``[None, None]``, e.g.
    the safety checker of an LDM3D folder); ``class_name``: the index's ``_class_name`` (the pipeline class);
    ``defaults``: latent3d's recommended settings (``_latent3d_defaults``); ``extra``: further index entries (e.g.
    ``requires_safety_checker``). Index entries are sorted by name, as diffusers' ``save_pretrained`` writes them;
    ``_diffusers_version`` is the installed diffusers'. The networks are left in float32 with their weights
    rounded through float16 (what the folder holds).
    """
    import diffusers
    import torch
    from torch import nn

    from latent3d.io.atomic import atomic_dir

    with atomic_dir(folder) as tmp:
        for name, component in components.items():
            if isinstance(component, nn.Module):
                component.to(torch.float16).save_pretrained(tmp / name)
                component.float()
            elif component is not None:
                _without_truncation(component)
                component.save_pretrained(tmp / name)
        entries = {**{k: _index_entry(v) for k, v in components.items()}, **(extra or {})}
        index = {"_class_name": class_name, "_diffusers_version": diffusers.__version__,
                 **dict(sorted(entries.items())), "_latent3d_defaults": defaults}  # fmt: skip
        (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
        (tmp / "MODEL_CARD.md").write_text(card)
    return Path(folder)


def _without_truncation(component: Any) -> None:
    """A fast tokenizer keeps the truncation of its last call in the ``tokenizer.json`` it saves; a bundle's
    tokenizer is saved without one (diffusers' pipelines ask for ``truncation=True`` on every call), so that the
    folder does not depend on how the training run last called it."""
    backend = getattr(component, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
