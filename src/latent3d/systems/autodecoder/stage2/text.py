"""The text side of 3DVADER stage 2: a frozen transformers text encoder (T5 / CLIP) or the word-level encoder
trained with the model (tokenising: :func:`latent3d.nets.text_denoiser.tokenize`; encoding:
:func:`latent3d.nets.text_denoiser.encode_text`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn


def load_text_encoder(folder: str | Path, what: str | None = None, fix: str | None = None) -> tuple[nn.Module, Any]:
    """A frozen transformers text encoder and its tokenizer from a local folder: T5 (``T5EncoderModel``), CLIP
    (``CLIPTextModel``) or any ``AutoModel`` with ``last_hidden_state``; the tokenizer may sit in ``tokenizer/``.
    ``what`` and ``fix`` start and end the one-line error of a folder that does not load (default: about
    ``--text-encoder``)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel, T5EncoderModel

    from latent3d.io.model_folder import from_pretrained, hf_load

    folder = Path(folder)
    enc_dir = folder / "text_encoder" if (folder / "text_encoder" / "config.json").is_file() else folder
    tok_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder

    def load() -> tuple[nn.Module, Any]:
        kind = AutoConfig.from_pretrained(enc_dir, local_files_only=True).model_type
        cls = {"t5": T5EncoderModel, "clip": CLIPTextModel, "clip_text_model": CLIPTextModel}.get(kind, AutoModel)
        enc = from_pretrained(cls, enc_dir, local_files_only=True)
        text_width(enc)  # a config without the width fails here, not at the first prompt
        return enc, AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)

    what = what or f"--text-encoder {folder}: not a local transformers text encoder with its tokenizer"
    enc, tok = hf_load(load, what, fix or "pass a T5 / CLIP text encoder folder (safetensors) with its tokenizer")
    return enc.eval().requires_grad_(False), tok


def text_width(encoder: nn.Module) -> int:
    cfg = encoder.config
    return int(getattr(cfg, "hidden_size", None) or cfg.d_model)
