"""A 3DVADER generator folder (stage 2's export, what ``latent3d object`` and ``dream --init object`` load): written
by :func:`export_generator`, resolved from a bundled name or a folder by :func:`resolve_model`, read back whole by
:func:`load_generator` (every problem one UserError line, before any weight loads where possible)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from latent3d.diffusion.edm import EDMPrecond
from latent3d.errors import UserError
from latent3d.nets.text_denoiser import TextConditionedDenoiser
from latent3d.nets.unet3d import UNet3D
from latent3d.systems.autodecoder.config import AutodecoderConfig, ObjectConfig, ObjectDiffusionConfig
from latent3d.systems.autodecoder.stage1.decoder import VolumeDecoder, saved_parts
from latent3d.systems.autodecoder.stage2.denoiser import build_unet
from latent3d.systems.autodecoder.stage2.normalize import LatentNormalizer
from latent3d.systems.autodecoder.stage2.text import load_text_encoder, text_width

if TYPE_CHECKING:
    from latent3d.io.model_folder import ModelFolder

KIND = "latent3d object generator"


# what a training summary holds that depends on the clock or the paths: the model card shows it, config.json not
_RUN_ONLY = ("train_s", "command", "autodecoder_command", "data")


def export_generator(folder: Path, unet: UNet3D, decoder: VolumeDecoder, norm: LatentNormalizer, text_encoder: nn.Module,
                     tokenizer, cfg: ObjectDiffusionConfig, ad_meta: dict, summary: dict,
                     card: str | None = None) -> Path:  # fmt: skip
    """Write a generator folder (module docstring) atomically. config.json holds no wall time and no path (the same
    training writes the same bytes); those go to the model card."""
    from latent3d.io.model_folder import write_model_folder

    dec_keys = set(VolumeDecoder(decoder.cfg, decoder.parts).state_dict())
    tensors = {f"unet.{k}": v.detach().half() for k, v in unet.state_dict().items()}
    tensors |= {f"decoder.{k}": v.detach().cpu() for k, v in decoder.state_dict().items() if k in dec_keys}
    tensors |= {f"normalizer.{k}": v for k, v in norm.state_dict().items()}
    d = ObjectConfig()
    meta = {"object_diffusion": cfg, "autodecoder": ad_meta["autodecoder"], "grid_size": ad_meta["grid_size"],
            "latent_shape": ad_meta["latent_shape"], "box": ad_meta["box"],
            "defaults": {"steps": d.steps, "guidance": d.guidance},
            "training": {k: v for k, v in summary.items() if k not in _RUN_ONLY}}  # fmt: skip
    if decoder.parts:  # stage 3: skinning channels and the training videos' part motions (``object --animate``)
        meta |= {"parts": decoder.parts, "motions": len(ad_meta["motions"]), "posenet": "posenet" in ad_meta}
        tensors |= {"motions": ad_meta["motions"].float()}
        if "posenet" in ad_meta:  # reads a new video's part motion (``object --animate --motion-video``)
            tensors |= {f"posenet.{k}": v.detach().cpu() for k, v in ad_meta["posenet"].state_dict().items()}

    def text_side(tmp: Path) -> None:
        text_encoder.cpu().save_pretrained(tmp / "text_encoder")
        tokenizer.save_pretrained(tmp / "tokenizer")

    card = card or _card({**meta, "object_diffusion": asdict(cfg), "training": summary})
    return write_model_folder(folder, KIND, meta, tensors, card, text_side)


def _card(meta: dict) -> str:
    t, d = meta["training"], meta["object_diffusion"]
    ev = t.get("autodecoder_eval") or {}
    held = (f" Held-out views of the autodecoder: PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, mask IoU "
            f"{ev['mask_iou']:.3f}." if ev.get("psnr") is not None else "")  # fmt: skip
    if meta.get("parts"):
        held = (f" Held-out frames: PSNR {ev.get('fits_psnr')} dB (per-video fits), {ev.get('decoder_psnr')} dB (the "
                f"decoder); the pose network's held-out joint error {ev.get('pose_net_error_deg')} degrees.\n"
                f"- Articulated: {meta['parts']} rigid parts (skinning logits in G2's head), {meta['motions']} "
                f"training motions for `object --animate --motion K`"
                + (", a pose network for `--motion-video DIR`." if meta.get("posenet") else "."))
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
    """A loaded generator folder: ``denoiser`` is the preconditioned denoiser ``D(x, sigma, cond=, cond_mask=)``
    (:class:`~latent3d.diffusion.edm.EDMPrecond` of the folder's ``sigma_data`` around ``F``, the UNet; Karras et al.
    2022, eq. 7), ``decoder`` G2, ``normalizer`` the latent statistics, ``text_encoder`` + ``tokenizer`` (frozen, so
    the text features come in as ``cond``), ``meta`` its config.json."""

    denoiser: EDMPrecond
    decoder: VolumeDecoder
    normalizer: LatentNormalizer
    text_encoder: nn.Module
    tokenizer: Any
    cfg: ObjectDiffusionConfig
    meta: dict
    folder: Path
    motions: Tensor | None = None  # [M, F, P, 4, 4] part motions of the training videos (articulated models only)
    posenet: nn.Module | None = None  # :class:`~..stage3.posenet.PoseNet` (articulated models that have one)

    def to(self, device: torch.device) -> "ObjectGenerator":
        for m in (self.denoiser, self.decoder, self.text_encoder):
            m.to(device)
        return self


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
    return _read(folder).meta


def _read(folder: Path) -> ModelFolder:
    from latent3d.io.model_folder import read_model_folder

    saved = read_model_folder(folder, KIND, _FIX)
    for key in ("object_diffusion", "autodecoder"):
        saved.get(key, dict)
    shape = saved.get("latent_shape", list, items=int)
    if len(shape) != 4 or shape[1:] != [8, 8, 8] or shape[0] < 1:
        raise UserError(f"{saved.config_path}: 'latent_shape' must be [C, 8, 8, 8], got {shape}; {_FIX}")
    if not 0 < saved.get("box", float) < float("inf"):
        raise UserError(f"{saved.config_path}: 'box' must be a positive number, got {saved.meta['box']}; {_FIX}")
    saved.get("grid_size", int)
    return saved


def load_generator(folder: str | Path) -> ObjectGenerator:
    """Read a generator folder written by :func:`export_generator` (float32 modules in eval mode; the denoiser
    preconditioned by the folder's ``sigma_data``); a damaged one is one UserError line naming the file
    (:mod:`latent3d.io.model_folder`)."""
    folder = Path(folder)
    saved = _read(folder)
    cfg = saved.config(ObjectDiffusionConfig, "object_diffusion")
    sd = cfg.sigma_data
    if isinstance(sd, bool) or not (isinstance(sd, (int, float)) and 0 < sd < float("inf")):
        raise UserError(f"{saved.config_path}: 'object_diffusion.sigma_data' must be a positive number, got {sd!r}; "
                        f"{_FIX}")
    ad_cfg = saved.config(AutodecoderConfig, "autodecoder")
    tensors = saved.tensors()
    enc, tok = load_text_encoder(folder, f"{folder}: a damaged text encoder or tokenizer", _FIX)

    def build() -> tuple[UNet3D, VolumeDecoder, LatentNormalizer]:
        unet = build_unet(cfg, saved.meta["latent_shape"][0], text_width(enc))
        unet.load_state_dict({k[5:]: v.float() for k, v in tensors.items() if k.startswith("unet.")})
        decoder = VolumeDecoder(ad_cfg, saved_parts(saved))
        decoder.load_state_dict({k[8:]: v.float() for k, v in tensors.items() if k.startswith("decoder.")})
        norm = LatentNormalizer.from_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("normalizer.")})
        return unet, decoder, norm

    unet, decoder, norm = saved.build(build)
    motions = posenet = None
    if decoder.parts:
        motions, posenet = _articulated_parts(saved, tensors, decoder.parts)
    den = EDMPrecond(TextConditionedDenoiser(unet, None), float(sd)).eval()
    return ObjectGenerator(den, decoder.eval(), norm, enc.eval(), tok, cfg, saved.meta, folder, motions, posenet)


def _articulated_parts(saved: ModelFolder, tensors: dict, parts: int) -> tuple[Tensor, nn.Module | None]:
    """An articulated generator's training motions and its pose network (when it has one)."""
    from latent3d.systems.autodecoder.stage3.motion import check_motions
    from latent3d.systems.autodecoder.stage3.posenet import PoseNet

    motions = check_motions(tensors.get("motions"), parts, str(saved.path / "model.safetensors"), _FIX)
    if not saved.get("posenet", bool, default=False):
        return motions, None

    def build() -> PoseNet:
        net = PoseNet(parts)
        net.load_state_dict({k[8:]: v.float() for k, v in tensors.items() if k.startswith("posenet.")})
        return net

    return motions, saved.build(build).eval()
