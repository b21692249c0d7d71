"""3DVADER stage 2: latent 3D diffusion over the autodecoder's volumes (Ntavelis et al. 2023, Sec. 3.2, supp. B.2).

The training data are the 8^3 x C latent volumes of a ``latent3d train autodecoder`` run (``latents.safetensors``)
and their objects' captions. They are normalised robustly (:mod:`.normalize`), and a 3D UNet
(:class:`latent3d.nets.unet3d.UNet3D`) cross-attending to a text encoder's tokens learns them with the EDM
preconditioning and loss (Karras et al. 2022, eq. 7-8; :mod:`latent3d.diffusion.edm`), 10 % of the captions
replaced by the empty prompt so that classifier-free guidance works at sampling time. EDM's ``sigma_data`` is the
measured std of the normalised latents (not the paper's 0.5 for images) and the training noise levels are checked
against the levels where the captions are decided (:mod:`latent3d.diffusion.noise_levels`,
``OUT/noise_report.json``). The result is a
generator folder ``OUT/model/`` (:func:`~latent3d.systems.autodecoder.stage2.generator.export_generator`; read back
by :func:`~latent3d.systems.autodecoder.stage2.generator.load_generator`):

    config.json           what it is, the diffusion and autodecoder settings, latent shape, box, sampling defaults
    model.safetensors     unet.* (float16), decoder.* (G2, float32), normalizer.median / normalizer.scale
    text_encoder/, tokenizer/   the transformers text encoder and tokenizer (save_pretrained)
    MODEL_CARD.md         what it was trained on and how: the command lines, wall time, losses, noise report
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from latent3d.nets.text_denoiser import TextConditionedDenoiser, encode_text
from latent3d.systems.autodecoder.config import ObjectDiffusionConfig
from latent3d.systems.autodecoder.stage2.denoiser import build_unet
from latent3d.systems.autodecoder.stage2.generator import export_generator
from latent3d.systems.autodecoder.stage2.latents import read_latents
from latent3d.systems.autodecoder.stage2.normalize import LatentNormalizer
from latent3d.systems.autodecoder.stage2.text import load_text_encoder, text_width
from latent3d.train.diffusion_recipe import Captions, Condition


def train_object_diffusion(autodecoder_run: str | Path, out_dir: str | Path, cfg: ObjectDiffusionConfig,
                           device: str = "auto", resume: bool = False, progress: bool = True,
                           checkpoint_every: int = 500, command: str | None = None) -> dict:  # fmt: skip
    """Train on the latents of ``autodecoder_run`` with the shared trainer and export ``out_dir/model`` (the EMA
    weights); returns a summary (final loss, wall time, sizes)."""
    from latent3d.diffusion.edm import EDMLoss
    from latent3d.priors.vocab import build_word_text_encoder, build_word_tokenizer, words_of
    from latent3d.runtime import device_name, seeded
    from latent3d.systems.autodecoder.stage1.run import load_autodecoder
    from latent3d.train.diffusion_recipe import fit_diffusion
    from latent3d.train.trainer import TrainConfig, preflight, process_state

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
        model = TextConditionedDenoiser(build_unet(cfg, z.shape[1], text_dim), trainable)
    captions = Captions.tokenized(tok, data.captions, cfg.max_tokens)
    loss = EDMLoss(float(cfg.sigma_data), cfg.p_mean, cfg.p_std)  # type: ignore[arg-type]
    res = fit_diffusion(model, len(z), lambda i, g: z[i], loss, tcfg, cfg.batch_size, captions, cfg.cond_drop,
                        text_condition(captions, frozen))  # fmt: skip
    n_params = sum(p.numel() for p in model.parameters())
    summary = {"steps": res.step, "train_s": round(res.wall_s, 1), "final_loss": res.last_loss,
               "objects": len(z), "captions": len(set(data.captions)), "parameters": n_params, "command": command,
               "noise_report": report, "device": device_name(device), "autodecoder_command": ad_meta.get("command"),
               "autodecoder_eval": _eval_mean(Path(autodecoder_run)), "data": _data_command(ad_meta.get("data"))}
    if process_state(device).is_main_process:
        export_generator(out_dir / "model", model.unet.cpu(), decoder, norm, frozen or trainable, tok, cfg,
                         ad_meta, summary)  # fmt: skip
    return summary


def text_condition(captions: Captions, frozen: nn.Module | None) -> Condition:
    """The denoiser's text keywords for caption rows: the token ids, encoded inside the denoiser by its trainable
    word encoder, or a frozen encoder's features, computed once per caption; the padding mask either way."""
    feats = None
    if frozen is not None:
        with torch.no_grad():
            feats = encode_text(frozen, captions.ids, captions.mask)

    def condition(rows: Tensor, dev: torch.device) -> dict[str, Tensor]:
        text = {"cond": feats[rows].to(dev)} if feats is not None else {"input_ids": captions.ids[rows].to(dev)}
        return {**text, "cond_mask": captions.mask[rows].to(dev)}

    return condition


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


def _eval_mean(run: Path) -> dict:
    """The autodecoder's held-out means (an articulated run: the per-video fits' and the decoder's held-out PSNR and
    the pose network's held-out joint error)."""
    try:
        doc = json.loads((run / "eval.json").read_text())
        if isinstance(doc.get("decoder"), dict):
            return {"fits_psnr": doc.get("mean_heldout_psnr"), "decoder_psnr": doc["decoder"].get("mean_heldout_psnr"),
                    "pose_net_error_deg": (doc.get("pose_net") or {}).get("heldout_joint_error_deg")}  # fmt: skip
        return doc.get("mean", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _data_command(data: str | None) -> str | None:
    """The `latent3d data objects` line that made an autodecoder's data (from its objects.json), or a line describing
    `latent3d data articulated`'s videos (from its videos.json), if it is one."""
    videos = _videos_line(data)
    if videos:
        return videos
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


def _videos_line(data: str | None) -> str | None:
    """``latent3d data articulated --n-videos N --frames F --size S --kinds ...`` from a videos.json (seed and camera
    drift are not recorded there)."""
    try:
        doc = json.loads((Path(str(data)) / "videos.json").read_text())
        if doc["format"] != "latent3d-articulated-videos":
            return None
        kinds = ",".join(dict.fromkeys(str(v["object"]) for v in doc["videos"]))
        frames = max(int(v["frames"]) for v in doc["videos"])
        return (f"latent3d data articulated --n-videos {len(doc['videos'])} --frames {frames} --size {int(doc['size'])} "
                f"--kinds {kinds}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
