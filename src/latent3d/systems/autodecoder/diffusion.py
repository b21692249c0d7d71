"""3DVADER stage 2: latent 3D diffusion over the autodecoder's volumes (Ntavelis et al. 2023, Sec. 3.2, supp. B.2).

The training data are the 8^3 x C latent volumes of a ``latent3d train autodecoder`` run (``latents.safetensors``)
and their objects' captions. They are normalised robustly (:mod:`.normalize`), and a 3D UNet
(:class:`latent3d.nets.unet3d.UNet3D`) cross-attending to a text encoder's tokens learns them with the EDM
preconditioning and loss (Karras et al. 2022, eq. 7-8; :mod:`latent3d.diffusion.edm`), 10 % of the captions
replaced by the empty prompt so that classifier-free guidance works at sampling time. EDM's ``sigma_data`` is the
measured std of the normalised latents (not the paper's 0.5 for images) and the training noise levels are checked
against the levels where the captions are decided (:mod:`latent3d.diffusion.noise_levels`,
``OUT/noise_report.json``). The result is a
generator folder ``OUT/model/`` (:func:`export_generator`; read back by :func:`load_generator`):

    config.json           what it is, the diffusion and autodecoder settings, latent shape, box, sampling defaults
    model.safetensors     unet.* (float16), decoder.* (G2, float32), normalizer.median / normalizer.scale
    text_encoder/, tokenizer/   the transformers text encoder and tokenizer (save_pretrained)
    MODEL_CARD.md         what it was trained on and how: the command lines, wall time, losses, noise report
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latent3d.errors import UserError
from latent3d.nets.unet3d import UNet3D
from latent3d.systems.autodecoder.config import AutodecoderConfig, ObjectConfig, ObjectDiffusionConfig
from latent3d.systems.autodecoder.decoder import VolumeDecoder
from latent3d.systems.autodecoder.normalize import LatentNormalizer

KIND = "latent3d object generator"


@dataclass
class LatentSet:
    """An autodecoder run's latent volumes and their captions."""

    latents: Tensor  # [N, C, 8, 8, 8] float32
    captions: list[str]  # [N], "" where an object has none
    object_ids: list[str]


def read_latents(run_dir: str | Path) -> LatentSet:
    """``RUN/latents.safetensors`` of ``latent3d train autodecoder`` (every problem is one UserError line)."""
    from latent3d.io.model_folder import load_tensors, metadata_json, read_metadata

    path = Path(run_dir) / "latents.safetensors"
    fix = "pass the --out folder of a finished `latent3d train autodecoder` run"
    meta = read_metadata(path, fix)
    ids = metadata_json(meta, "object_ids", list, path, fix, items=str)
    caps = metadata_json(meta, "captions", (list, type(None)), path, fix, items=str, default=None) or [""] * len(ids)
    lat = load_tensors(path, fix).get("latents")
    if lat is None or lat.ndim != 5 or lat.shape[2:] != (8, 8, 8) or len(ids) != len(lat) or len(caps) != len(lat):
        shape = "no latents" if lat is None else f"latents {tuple(lat.shape)}"
        raise UserError(f"{path}: {shape} with {len(ids)} ids and {len(caps)} captions; expected [N, C, 8, 8, 8] and "
                        f"N of each; {fix}")
    lat = lat.float()
    if not torch.isfinite(lat).all():
        raise UserError(f"{path}: the latents hold NaN or infinity; retrain the autodecoder")
    return LatentSet(lat, caps, ids)


# --------------------------------------------------------------------------------------------------- text
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


def tokenize(tokenizer, prompts: list[str], max_tokens: int) -> tuple[Tensor, Tensor]:  # -> ids, mask [B, L]
    t = tokenizer(prompts, padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt")
    return t.input_ids, t.attention_mask.bool()


def encode_text(encoder: nn.Module, ids: Tensor, mask: Tensor) -> Tensor:  # [B, L] -> [B, L, E]
    return encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state


class ObjectDenoiser(nn.Module):
    """The network ``F`` of EDM with its (trainable) text encoder: ``forward(x [B, C, 8, 8, 8], c_noise [B],
    cond [B, L, E] or input_ids [B, L], cond_mask [B, L]) -> [B, C, 8, 8, 8]``; token ids are encoded inside
    ``forward`` (so that distributed training sees the text encoder's gradients). A frozen text encoder is kept
    outside the module (not optimised, not checkpointed) and its features come in as ``cond``."""

    def __init__(self, unet: UNet3D, text_encoder: nn.Module | None):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor | None = None, cond_mask: Tensor | None = None,
                input_ids: Tensor | None = None) -> Tensor:  # fmt: skip
        if input_ids is not None:
            cond = encode_text(self.text_encoder, input_ids, cond_mask)
        return self.unet(x, c_noise, cond, cond_mask)


def build_unet(cfg: ObjectDiffusionConfig, channels: int, text_dim: int) -> UNet3D:
    return UNet3D(channels, cfg.model_channels, tuple(cfg.channel_mult), cfg.blocks, tuple(cfg.attention), 8,
                  text_dim, cfg.head_channels, cfg.dropout)  # fmt: skip


# --------------------------------------------------------------------------------------------------- training
def train_object_diffusion(autodecoder_run: str | Path, out_dir: str | Path, cfg: ObjectDiffusionConfig,
                           device: str = "auto", resume: bool = False, progress: bool = True,
                           checkpoint_every: int = 500, command: str | None = None) -> dict:  # fmt: skip
    """Train on the latents of ``autodecoder_run`` with the shared trainer and export ``out_dir/model`` (the EMA
    weights); returns a summary (final loss, wall time, sizes)."""
    from latent3d.diffusion.edm import edm_loss
    from latent3d.priors.vocab import build_word_text_encoder, build_word_tokenizer, words_of
    from latent3d.runtime import seeded
    from latent3d.systems.autodecoder.train import load_autodecoder
    from latent3d.train.trainer import TrainConfig, preflight, process_state, train

    out_dir = Path(out_dir)
    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, ema_decay=cfg.ema_decay, ckpt_every=checkpoint_every,
                       seed=cfg.seed, device=device, resume=resume, progress=progress, desc="train object diffusion",
                       extra={"object_diffusion": asdict(cfg), "autodecoder": str(Path(autodecoder_run).resolve())})
    preflight(tcfg)
    data = read_latents(autodecoder_run)
    decoder, ad_meta = load_autodecoder(autodecoder_run)
    norm = LatentNormalizer.fit(data.latents, cfg.normalization)
    z = norm.normalize(data.latents)  # [N, C, 8, 8, 8]
    cfg, report = fit_noise_levels(z, data.captions, cfg)
    if process_state(device).is_main_process:
        _log_report(out_dir, report, progress)
    frozen = None
    with seeded(cfg.seed):
        if cfg.text_encoder:
            frozen, tok = load_text_encoder(cfg.text_encoder)
            text_dim, trainable = text_width(frozen), None
        else:
            tok = build_word_tokenizer(words_of(data.captions + [""]), cfg.max_tokens)
            trainable = build_word_text_encoder(tok, cfg.text_dim, cfg.text_layers, cfg.max_tokens)
            text_dim = cfg.text_dim
        model = ObjectDenoiser(build_unet(cfg, z.shape[1], text_dim), trainable)
    ids, mask = tokenize(tok, data.captions, cfg.max_tokens)
    empty_ids, empty_mask = tokenize(tok, [""], cfg.max_tokens)
    cached = None
    if frozen is not None:  # a frozen encoder's features are computed once per caption
        with torch.no_grad():
            cached = encode_text(frozen, torch.cat([ids, empty_ids]), torch.cat([mask, empty_mask]))

    def batch_fn(step: int, g: torch.Generator):
        i = torch.randint(0, len(z), (cfg.batch_size,), generator=g)
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.cond_drop
        j = torch.where(drop, torch.full_like(i, len(z)), i)  # index len(z) = the empty prompt
        return z[i], j

    all_ids, all_mask = torch.cat([ids, empty_ids]), torch.cat([mask, empty_mask])

    def loss_fn(m: nn.Module, batch, g: torch.Generator) -> Tensor:
        x0, j = batch
        dev = next(iter(m.parameters())).device
        m_ids, m_mask = all_ids[j].to(dev), all_mask[j].to(dev)
        text = {"cond": cached[j].to(dev)} if cached is not None else {"input_ids": m_ids}
        return edm_loss(m, x0.to(dev), cfg.sigma_data, generator=g, P_mean=cfg.p_mean, P_std=cfg.p_std,
                        cond_mask=m_mask, **text)  # fmt: skip

    res = train(model, batch_fn, loss_fn, tcfg)
    res.ema.copy_to(model)
    n_params = sum(p.numel() for p in model.parameters())
    summary = {"steps": res.step, "train_s": round(res.wall_s, 1), "final_loss": res.last_loss,
               "objects": len(z), "captions": len(set(data.captions)), "parameters": n_params, "command": command,
               "noise_report": report, "device": _where(device), "autodecoder_command": ad_meta.get("command"),
               "autodecoder_eval": _eval_mean(Path(autodecoder_run)), "data": _data_command(ad_meta.get("data"))}
    if process_state(device).is_main_process:
        export_generator(out_dir / "model", model.unet.cpu(), decoder, norm, frozen or trainable, tok, cfg,
                         ad_meta, summary)  # fmt: skip
    return summary


def fit_noise_levels(z: Tensor, captions: list[str], cfg: ObjectDiffusionConfig) -> tuple[ObjectDiffusionConfig, dict]:
    """``cfg`` with ``sigma_data`` set to the std of the normalised latents ``z [N, C, 8, 8, 8]`` unless given, and
    the noise report of :func:`latent3d.diffusion.noise_levels.noise_report` (seeded by ``cfg.seed``)."""
    from latent3d.diffusion.noise_levels import data_std, noise_report

    if cfg.sigma_data is None:
        cfg = replace(cfg, sigma_data=round(data_std(z), 4))
    labels = captions if len(set(captions)) > 1 else None
    g = torch.Generator().manual_seed(cfg.seed)
    sigma_data = float(cfg.sigma_data)  # type: ignore[arg-type]
    return cfg, noise_report(z, labels, cfg.p_mean, cfg.p_std, sigma_data, generator=g)


def _log_report(out_dir: Path, report: dict, progress: bool) -> None:
    """Print the noise report (and warn when few training draws reach the caption-deciding noise levels); store it
    as ``out_dir/noise_report.json``."""
    import sys

    from latent3d.diffusion.noise_levels import format_report, share_learning_condition
    from latent3d.io.atomic import write_text

    write_text(out_dir / "noise_report.json", json.dumps(report, indent=1))
    if progress:
        for line in format_report(report):
            print(f"latent3d: {line}", flush=True)
    share = share_learning_condition(report)
    if share is not None and share < 0.05:
        s = report["decided_at"]
        print(f"latent3d: warning: only {100 * share:.1f} % of training draws sigma above {0.5 * s:g}, where the "
              f"captions are decided (posterior falls by sigma {s:g}); samples will follow the noise seed more than "
              "the prompt: raise --p-mean or --p-std", file=sys.stderr)


# what a training summary holds that depends on the clock or the paths: the model card shows it, config.json not
_RUN_ONLY = ("train_s", "command", "autodecoder_command", "data")


def export_generator(folder: Path, unet: UNet3D, decoder: VolumeDecoder, norm: LatentNormalizer, text_encoder: nn.Module,
                     tokenizer, cfg: ObjectDiffusionConfig, ad_meta: dict, summary: dict,
                     card: str | None = None) -> Path:  # fmt: skip
    """Write a generator folder (module docstring) atomically. config.json holds no wall time and no path (the same
    training writes the same bytes); those go to the model card."""
    from latent3d.io.atomic import atomic_dir
    from latent3d.io.model_folder import save_tensors

    dec_keys = set(VolumeDecoder(decoder.cfg).state_dict())
    tensors = {f"unet.{k}": v.detach().half() for k, v in unet.state_dict().items()}
    tensors |= {f"decoder.{k}": v.detach().cpu() for k, v in decoder.state_dict().items() if k in dec_keys}
    tensors |= {f"normalizer.{k}": v for k, v in norm.state_dict().items()}
    d = ObjectConfig()
    meta = {"latent3d": {"kind": KIND, "format": 1}, "object_diffusion": asdict(cfg),
            "autodecoder": ad_meta["autodecoder"], "grid_size": ad_meta["grid_size"],
            "latent_shape": ad_meta["latent_shape"], "box": ad_meta["box"],
            "defaults": {"steps": d.steps, "guidance": d.guidance},
            "training": {k: v for k, v in summary.items() if k not in _RUN_ONLY}}  # fmt: skip
    with atomic_dir(folder) as tmp:
        save_tensors(tensors, tmp / "model.safetensors")
        text_encoder.cpu().save_pretrained(tmp / "text_encoder")
        tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "config.json").write_text(json.dumps(meta, indent=1))
        (tmp / "MODEL_CARD.md").write_text(card or _card({**meta, "training": summary}))
    return folder


def _where(device: str) -> str:
    from latent3d.runtime import resolve_device

    dev = resolve_device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def _eval_mean(run: Path) -> dict:
    try:
        return json.loads((run / "eval.json").read_text()).get("mean", {})
    except (OSError, ValueError):
        return {}


def _data_command(data: str | None) -> str | None:
    """The `latent3d data objects` line that made an autodecoder's data (from its objects.json), if it is one."""
    try:
        doc = json.loads((Path(str(data)) / "objects.json").read_text())
        st = doc["latent3d"]["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    radius = st["radius"] if isinstance(st["radius"], (int, float)) else ",".join(map(str, st["radius"]))
    colors = f" --colors {','.join(st['colors'])}" if st.get("colors") else ""
    return (f"latent3d data objects --categories {','.join(st['categories'])}{colors} --n-objects {st['n_objects']} "
            f"--views {st['views']} --size {st['size']} --radius {radius} --elevation "
            f"{','.join(f'{v:g}' for v in st['elevation_range_deg'])} --variation {st['variation']:g} --seed {st['seed']}")


def _card(meta: dict) -> str:
    t, d = meta["training"], meta["object_diffusion"]
    ev = t.get("autodecoder_eval") or {}
    held = (f" Held-out views of the autodecoder: PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, mask IoU "
            f"{ev['mask_iou']:.3f}." if ev else "")  # fmt: skip
    return f"""# latent3d object generator (3DVADER)

Text -> 8^3 x {meta['latent_shape'][0]} latent volume (EDM diffusion, 3D UNet) -> {meta['grid_size']}^3 radiance
grid in the box [-{meta['box']}, {meta['box']}]^3 (the autodecoder's G2). Used by `latent3d object --model`.

- Data: `{t.get('data') or 'posed views with captions'}`.
- Stage 1: `{t.get('autodecoder_command') or 'latent3d train autodecoder'}`.{held}
- Stage 2: `{t.get('command') or 'latent3d train object-diffusion'}`: {t['objects']} latent volumes,
  {t['captions']} distinct captions, {t['steps']} steps in {t['train_s']} s on {t.get('device', '?')}; final EDM loss
  {t['final_loss']:.4f}.
- Networks: UNet3D {d['model_channels']} x {list(d['channel_mult'])}, attention at {list(d['attention'])},
  {t.get('parameters', 0) / 1e6:.2f}M parameters with the text encoder (UNet stored float16);
  normalisation: {d['normalization']}; EDM sigma_data {d['sigma_data']:g} (the normalised latents' std), training
  noise ln(sigma) ~ N({d['p_mean']:g}, {d['p_std']:g}^2).{_card_noise(t.get('noise_report'))}
- Sampling defaults: Heun {meta['defaults']['steps']} steps, guidance {meta['defaults']['guidance']}.
"""


def _card_noise(rep: dict | None) -> str:
    if not rep:
        return ""
    share = ", ".join(f"{s}: {100 * p:.1f} %" for s, p in rep["share_above"].items() if s in ("10", "20", "40"))
    post = ", ".join(f"{s}: {p:.2f}" for s, p in rep.get("condition_posterior", {}).items())
    return (f"\n- Noise report: latent std {rep['std']:.3f}; training draws above sigma {share}"
            + (f"; posterior of a noised training latent's caption at sigma {post} (chance {rep['chance']:.2f})."
               if post else "."))


# --------------------------------------------------------------------------------------------------- loading
@dataclass
class ObjectGenerator:
    """A loaded generator folder: ``denoiser`` is ``F`` (wrap in EDMPrecond), ``decoder`` G2, ``normalizer`` the
    latent statistics, ``text_encoder`` + ``tokenizer``, ``meta`` its config.json."""

    denoiser: ObjectDenoiser
    decoder: VolumeDecoder
    normalizer: LatentNormalizer
    text_encoder: nn.Module
    tokenizer: Any
    meta: dict
    folder: Path

    @property
    def cfg(self) -> ObjectDiffusionConfig:
        return ObjectDiffusionConfig(**_tuples(self.meta["object_diffusion"]))

    def to(self, device: torch.device) -> "ObjectGenerator":
        for m in (self.denoiser, self.decoder, self.text_encoder):
            m.to(device)
        return self


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def resolve_model(name_or_dir: str) -> Path:
    """A generator folder from a path (a ``latent3d train object-diffusion`` run folder means its ``model/``), or a
    bundled checkpoint's name (one UserError line otherwise)."""
    from latent3d.weights import bundled_path

    p = Path(name_or_dir)
    if p.is_dir():
        if not (p / "model.safetensors").is_file() and (p / "model" / "config.json").is_file():
            p = p / "model"  # the run folder of `latent3d train object-diffusion` (its config.json is the trainer's)
        return p
    if "/" in name_or_dir or name_or_dir.startswith("."):
        raise UserError(f"--model {name_or_dir}: no such folder; pass a bundled model's name or the model/ folder of "
                        "`latent3d train object-diffusion`")
    return bundled_path(name_or_dir)


_FIX = "pass a bundled object model or `latent3d train object-diffusion`'s model/ folder (retrain or copy it again)"


def read_generator_config(folder: Path) -> dict:
    """config.json of a generator folder, checked to be one, with the entries the loader reads of the right types
    (before any weights load)."""
    from latent3d.io.model_folder import get, read_config

    path = Path(folder) / "config.json"
    meta = read_config(path, _FIX)
    tag = meta.get("latent3d")
    if not isinstance(tag, dict) or tag.get("kind") != KIND:
        raise UserError(f"{path}: not a latent3d object generator (expected the model/ folder of "
                        "`latent3d train object-diffusion`)")
    for key in ("object_diffusion", "autodecoder"):
        get(meta, key, dict, path, _FIX)
    shape = get(meta, "latent_shape", list, path, _FIX, items=int)
    if len(shape) != 4 or shape[1:] != [8, 8, 8] or shape[0] < 1:
        raise UserError(f"{path}: 'latent_shape' must be [C, 8, 8, 8], got {shape}; {_FIX}")
    if not 0 < get(meta, "box", float, path, _FIX) < float("inf"):
        raise UserError(f"{path}: 'box' must be a positive number, got {meta['box']}; {_FIX}")
    get(meta, "grid_size", int, path, _FIX)
    return meta


def load_generator(folder: str | Path) -> ObjectGenerator:
    """Read a generator folder written by :func:`export_generator` (float32 modules in eval mode); a damaged one is
    one UserError line naming the file (:mod:`latent3d.io.model_folder`)."""
    from latent3d.io.model_folder import fit_weights, load_tensors, make_config

    folder = Path(folder)
    meta = read_generator_config(folder)
    path = folder / "config.json"
    cfg = make_config(ObjectDiffusionConfig, meta, "object_diffusion", path, _FIX)
    sd = cfg.sigma_data
    if isinstance(sd, bool) or not (isinstance(sd, (int, float)) and 0 < sd < float("inf")):
        raise UserError(f"{path}: 'object_diffusion.sigma_data' must be a positive number, got {sd!r}; {_FIX}")
    ad_cfg = make_config(AutodecoderConfig, meta, "autodecoder", path, _FIX)
    tensors = load_tensors(folder / "model.safetensors", _FIX)
    enc, tok = load_text_encoder(folder, f"{folder}: a damaged text encoder or tokenizer", _FIX)

    def build() -> tuple[UNet3D, VolumeDecoder, LatentNormalizer]:
        unet = build_unet(cfg, meta["latent_shape"][0], text_width(enc))
        unet.load_state_dict({k[5:]: v.float() for k, v in tensors.items() if k.startswith("unet.")})
        decoder = VolumeDecoder(ad_cfg)
        decoder.load_state_dict({k[8:]: v.float() for k, v in tensors.items() if k.startswith("decoder.")})
        norm = LatentNormalizer.from_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("normalizer.")})
        return unet, decoder, norm

    unet, decoder, norm = fit_weights(build, folder, _FIX)
    den = ObjectDenoiser(unet, None).eval()
    return ObjectGenerator(den, decoder.eval(), norm, enc.eval(), tok, meta, folder)
