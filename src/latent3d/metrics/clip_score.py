"""An in-domain CLIP-style image/text model latent3d trains on its procedural images + captions, and its score.

LDM3D (arXiv 2305.10853, Table 1) reports the CLIP similarity of generated images to their prompts (CLIPScore,
Hessel et al. 2021: ``w * max(cos(E_I, E_T), 0)``; torchmetrics and the LDM3D card use ``w = 100``). A pretrained
CLIP knows nothing useful about our small procedural domain, so this module trains a small one on it: a conv image
encoder and a 2-layer transformer over words, both projected to a shared unit sphere and trained with CLIP's
symmetric contrastive loss (Radford et al. 2021, Fig. 3; captions repeated in a batch count as positives of each
other). The score of real renders with their own captions is the ceiling a generator is compared against; the
score of renders with shuffled captions is the floor.

Saved as ``model.safetensors`` + ``config.json`` (the vocabulary is part of the config).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.metrics.fit import fit_metric_net
from latent3d.runtime import seeded
from latent3d.metrics.weights import load_metric_model, save_metric_model

KIND = "latent3d-clip"
PAD, UNK = "<pad>", "<unk>"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


class WordTokenizer:
    """Lower-case words -> ids (``0`` = padding, ``1`` = unknown word), truncated / padded to ``max_len``."""

    def __init__(self, vocab: Sequence[str], max_len: int = 16):
        self.vocab = [PAD, UNK] + [w for w in vocab if w not in (PAD, UNK)]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len

    @classmethod
    def from_captions(cls, captions: Sequence[str], max_len: int = 16) -> "WordTokenizer":
        return cls(sorted({w for c in captions for w in words(c)}), max_len)

    def __call__(self, captions: Sequence[str]) -> Tensor:  # -> [B, max_len] long
        ids = torch.zeros(len(captions), self.max_len, dtype=torch.long)
        for i, c in enumerate(captions):
            toks = [self.index.get(w, 1) for w in words(c)][: self.max_len]
            ids[i, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        return ids

    def unknown(self, caption: str) -> list[str]:
        return [w for w in words(caption) if w not in self.index]


class ImageEncoder(nn.Module):
    """Four conv stages (3x3 conv, GroupNorm, SiLU, 2x average pooling after the first three) -> mean -> linear."""

    def __init__(self, width: int, embed_dim: int):
        super().__init__()
        from latent3d.metrics.classifier import conv_features

        self.features = conv_features(width)
        self.proj = nn.Linear(4 * width, embed_dim)

    def forward(self, images: Tensor) -> Tensor:  # [B, 3, H, W] in [0, 1] -> [B, E]
        return self.proj(self.features(images * 2 - 1).mean(dim=(2, 3)))


class TextEncoder(nn.Module):
    """Word + position embeddings -> 2 pre-norm transformer layers -> mean over words -> linear."""

    def __init__(self, vocab_size: int, max_len: int, dim: int, embed_dim: int, layers: int = 2):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, embed_dim)

    def forward(self, ids: Tensor) -> Tensor:  # [B, L] long (0 = pad) -> [B, E]
        pad = ids == 0
        h = self.blocks(self.tok(ids) + self.pos[: ids.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).float()[..., None]
        return self.proj(self.norm((h * keep).sum(1) / keep.sum(1).clamp(min=1)))


@dataclass
class ClipConfig:
    """Training settings (defaults: about a minute on one CPU thread at 64x64 after rendering; the 64 held-out
    renders of ``benchmarks/rgbd_eval.py`` score ~77 with their own captions and ~15 with shuffled ones, top-1
    retrieval among their 31 distinct captions ~0.89)."""

    size: int = 64  # images are resized to size x size
    n_train: int = 800
    data_seed: int = 1001
    steps: int = 500
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 16
    dim: int = 64  # text transformer width
    embed_dim: int = 64
    max_len: int = 16
    seed: int = 0


class ClipModel(nn.Module):
    """Image and text towers with a learned temperature (CLIP, Radford et al. 2021)."""

    def __init__(self, tokenizer: WordTokenizer, cfg: ClipConfig):
        super().__init__()
        self.tokenizer, self.cfg = tokenizer, cfg
        self.image = ImageEncoder(cfg.width, cfg.embed_dim)
        self.text = TextEncoder(len(tokenizer.vocab), cfg.max_len, cfg.dim, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: Tensor, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``images`` [B, 3, size, size] in [0, 1], ``ids`` [B, L] -> unit embeddings [B, E], [B, E] and the log
        temperature [] (what :func:`contrastive_loss` takes; the training step's one call)."""
        return F.normalize(self.image(images), dim=-1), F.normalize(self.text(ids), dim=-1), self.logit_scale

    def encode_images(self, images: Tensor) -> Tensor:  # [B, 3, H, W] in [0, 1] -> [B, E] unit vectors
        x = images.float()
        if x.shape[-2:] != (self.cfg.size, self.cfg.size):
            x = F.interpolate(x, size=(self.cfg.size, self.cfg.size), mode="bilinear", align_corners=False,
                              antialias=True)  # fmt: skip
        return F.normalize(self.image(x), dim=-1)

    def encode_text(self, captions: Sequence[str]) -> Tensor:  # -> [B, E] unit vectors
        return F.normalize(self.text(self.tokenizer(captions).to(self.logit_scale.device)), dim=-1)


def contrastive_loss(
    img: Tensor,  # [B, E] unit image embeddings
    txt: Tensor,  # [B, E] unit text embeddings
    logit_scale: Tensor,  # [] log temperature
    group: Tensor,  # [B] long: equal values = the same caption (positives of each other)
) -> Tensor:  # []
    """Symmetric cross-entropy over cosine logits (CLIP, Radford et al. 2021, Fig. 3), with the target spread
    uniformly over every item that has the same caption (so repeated captions are not pushed apart)."""
    logits = logit_scale.exp().clamp(max=100) * img @ txt.T  # [B, B]
    same = (group[:, None] == group[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def cosine_to_score(cos: Tensor) -> Tensor:  # [...] -> [...]
    """CLIPScore's rescaling (Hessel et al. 2021, eq. 1) with w = 100: ``100 * max(cos, 0)``."""
    return 100.0 * cos.clamp(min=0)


@torch.no_grad()
def clip_scores(model: ClipModel, images: Tensor, captions: Sequence[str], batch_size: int = 128) -> Tensor:
    """Per-pair score ``100 * max(cos(image_i, caption_i), 0)``: ``images`` [B, 3, H, W] in [0, 1] -> [B]."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    out = []
    for i in range(0, len(images), batch_size):
        e_i = model.encode_images(images[i:i + batch_size])
        e_t = model.encode_text(list(captions[i:i + batch_size]))
        out.append(cosine_to_score((e_i * e_t).sum(-1)))
    return torch.cat(out)


@torch.no_grad()
def retrieval_accuracy(model: ClipModel, images: Tensor, captions: Sequence[str]) -> float:
    """Fraction of images whose own caption scores highest among the distinct captions given (top-1)."""
    distinct = sorted(set(captions))
    e_t = model.encode_text(distinct)
    e_i = torch.cat([model.encode_images(x) for x in images.split(128)])
    best = (e_i @ e_t.T).argmax(1)
    return float(sum(distinct[int(b)] == c for b, c in zip(best, captions)) / len(captions))


def train_clip(cfg: ClipConfig | None = None, data=None, log: Callable[[str], None] | None = None) -> ClipModel:
    """Train :class:`ClipModel` on ``data`` (an :class:`~latent3d.data.formats.rgbd.RGBDSet`, rendered from ``cfg`` when
    None) on the shared trainer (:func:`~latent3d.metrics.fit.fit_metric_net`: AdamW, one-cycle lr rising over the
    first 10 %). Deterministic for a given ``cfg.seed`` on CPU. Augmentation: flips, shifts of up to 3 px, mild
    brightness jitter and pixel noise (so that the noise of generated samples does not decide the score)."""
    cfg = cfg or ClipConfig()
    if data is None:
        from latent3d.data.procedural.rgbd_sets import render_rgbd_set

        data = render_rgbd_set(cfg.n_train, cfg.size, cfg.size, seed=cfg.data_seed)
    with seeded(cfg.seed):
        model = ClipModel(WordTokenizer.from_captions(data.captions, cfg.max_len), cfg)
    images = data.rgb.float()
    if images.shape[-2:] != (cfg.size, cfg.size):
        images = F.interpolate(images, size=(cfg.size, cfg.size), mode="bilinear", align_corners=False, antialias=True)
    ids = model.tokenizer(data.captions)
    _, group = torch.unique(ids, dim=0, return_inverse=True)
    b = min(cfg.batch_size, len(images))

    def batch_fn(step: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:  # -> [b, 3, H, W], [b, L], [b]
        i = torch.randperm(len(images), generator=g)[:b]
        x = images[i]
        x = torch.where((torch.rand(b, generator=g) < 0.5)[:, None, None, None], x.flip(-1), x)
        dx, dy = (int(v) for v in torch.randint(-3, 4, (2,), generator=g))
        x = torch.roll(x, (dy, dx), dims=(2, 3))
        x = x * (0.9 + 0.2 * torch.rand(b, 1, 1, 1, generator=g))
        x = (x + 0.05 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)).clamp(0, 1)
        return x, ids[i], group[i]

    def loss_fn(m: nn.Module, batch: tuple[Tensor, Tensor, Tensor], g: torch.Generator) -> Tensor:
        x, tok, grp = batch
        return contrastive_loss(*m(x, tok), grp)

    return fit_metric_net(model, batch_fn, loss_fn, cfg.steps, cfg.lr, cfg.seed, 0.1, "clip", log)


def save_clip(folder: str | Path, model: ClipModel) -> Path:
    """``model.safetensors`` + ``config.json`` (training settings and vocabulary)."""
    return save_metric_model(folder, model, {**asdict(model.cfg), "vocab": model.tokenizer.vocab}, KIND)


def load_clip(folder: str | Path) -> ClipModel:
    """A :class:`ClipModel` saved by :func:`save_clip` (a UserError if ``folder`` holds none)."""

    def build(c: dict) -> ClipModel:
        cfg = ClipConfig(**{k: v for k, v in c.items() if k in ClipConfig.__dataclass_fields__})
        return ClipModel(WordTokenizer(c["vocab"], cfg.max_len), cfg)

    return load_metric_model(folder, KIND, build)  # type: ignore[return-value]
