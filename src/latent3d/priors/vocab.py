"""Word-level tokenizers for bundled priors: one token per known word, ``[UNK]`` for everything else.

Saved with ``save_pretrained`` as a transformers ``PreTrainedTokenizerFast`` (``tokenizer.json``), so a bundled
prior's folder loads through exactly the code that loads Stable Diffusion's ``CLIPTokenizer``.
"""

from __future__ import annotations

import re
from typing import Iterable

SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


def words_of(texts: Iterable[str]) -> list[str]:
    """Sorted lower-case words of ``texts`` (the same splitting the tokenizer uses)."""
    return sorted({w for t in texts for w in re.findall(r"[\w']+", t.lower())})


def build_word_tokenizer(vocabulary: Iterable[str], max_length: int = 16):
    """A ``PreTrainedTokenizerFast`` over ``vocabulary`` that lower-cases, splits on non-word characters, wraps the
    ids in ``[BOS] ... [EOS]`` and pads with ``[PAD]`` to ``max_length`` (what the text encoder sees)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *words_of(vocabulary)])}
    tk = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("removed")])
    tk.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
        model_max_length=max_length,
    )  # fmt: skip


def char_clip_tokenizer(folder, chars: str = "abcdefghijklmnopqrstuvwxyz,", max_length: int = 77):
    """A ``CLIPTokenizer`` over single characters (no merges), written to ``folder``: every word made of ``chars``
    tokenizes, offline (random-weight SD-layout priors of the tests and ``benchmarks/gpu_suite.py``)."""
    import json
    from pathlib import Path

    from transformers import CLIPTokenizer

    folder = Path(folder)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def build_word_text_encoder(tokenizer, dim: int, layers: int, max_tokens: int, heads: int = 4):
    """A fresh small ``CLIPTextModel`` over a :func:`build_word_tokenizer` vocabulary (width ``dim``, MLP 2 x dim),
    the text encoder of latent3d's bundled text-conditioned models; trained jointly with their UNet."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=max_tokens, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    ))  # fmt: skip
