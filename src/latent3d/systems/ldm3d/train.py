"""Training LDM3D (Stan et al. 2023, arXiv 2305.10853): text -> RGB + depth with one latent diffusion model.

Two stages, as the paper (Sec. 3.1-3.2):

1. :func:`train_rgbd_vae` -- the KL-autoencoder: start from an RGB ``AutoencoderKL`` (a given folder, e.g. SD's
   ``vae/``, or a fresh small one), widen its first and last convolution to RGB + depth
   (:func:`latent3d.nets.rgbd_vae.widen_vae`, variants 6c / 4c) and fine-tune it on RGBD images with
   reconstruction + patch adversarial + KL losses (:class:`~latent3d.nets.rgbd_vae.RGBDAutoencoderWithLoss`).
2. :func:`train_rgbd` -- the diffusion model: the autoencoder is frozen, a ``UNet2DConditionModel`` with
   cross-attention on a ``CLIPTextModel`` learns eps-prediction MSE on its latents (Rombach et al. 2022, eq. 2;
   DDPM eq. 14), captions dropped 10% of the time for classifier-free guidance (Ho & Salimans 2022).

Both run on the shared trainer (checkpoints, ``resume``, EMA, NaN guard, multi-GPU via ``accelerate launch``).
Stage 2 exports a diffusers folder in Intel/ldm3d's layout (``StableDiffusionLDM3DPipeline``), float16,
written atomically. Data: procedural RGBD renders (:mod:`latent3d.data.procedural.rgbd_sets`) or a folder built
from real images (:mod:`latent3d.data.formats.rgbd_builder`) via ``data``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.data.formats.rgbd import RGBDSet, read_rgbd_set, write_rgbd_set
from latent3d.data.procedural.rgbd_sets import PANO_KINDS, PERSPECTIVE_KINDS, render_rgbd_set
from latent3d.errors import UserError
from latent3d.io.atomic import atomic_dir
from latent3d.systems.ldm3d.config import RGBDDataConfig, RGBDLDMConfig, RGBDVAEConfig

# recommended sampling settings written into model_index.json["_latent3d_defaults"]
SAMPLE_DEFAULTS = {"num_inference_steps": 50, "guidance_scale": 5.0}


# --------------------------------------------------------------------------------------------------- data
def _quantised(ds: RGBDSet) -> RGBDSet:
    """What the set is after a trip through its PNG files (8-bit RGB, 16-bit disparity): the same on every process
    and on resume whether it was rendered now or read from the cache. Disparity goes through the writer's own
    quantize_depth (float32; a float64 product rounds some pixels to the neighbouring 16-bit level, which made a
    resumed stage 2, training on the cache, drift from the run that rendered)."""
    from latent3d.io.depth import dequantize_depth, quantize_depth

    rgb = (ds.rgb.clamp(0, 1) * 255).round() / 255  # the float32 arithmetic of the PNG writer (to_uint8_image)
    disp = dequantize_depth(quantize_depth(ds.disparity.float()))
    return RGBDSet(rgb, disp, ds.depth, ds.K, ds.captions)


def training_set(cfg: RGBDDataConfig, out_dir: Path, reuse: tuple[Path, ...] = (), cache: bool = True) -> RGBDSet:
    """The training images: ``cfg.data`` if given (resized to ``cfg.size``), else the procedural set of ``cfg``,
    read from ``out_dir/data`` (or a ``reuse`` folder, e.g. the stage-1 run's) when it was rendered there with the
    same settings, else rendered (and, with ``cache``, written to ``out_dir/data``: by the main process only under
    ``accelerate launch``)."""
    H, W = cfg.size
    if cfg.data:
        ds = read_rgbd_set(cfg.data)
        if tuple(ds.rgb.shape[-2:]) != (H, W):
            rgb = F.interpolate(ds.rgb, (H, W), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
            disp = F.interpolate(ds.disparity, (H, W), mode="bilinear", antialias=True, align_corners=False)
            ds = RGBDSet(rgb, disp.clamp(0, 1), ds.depth, None, ds.captions)
        return _quantised(ds)
    kinds = list(cfg.kinds) if cfg.kinds else list(PANO_KINDS if cfg.pano else PERSPECTIVE_KINDS)
    key = {"n": cfg.n_images, "height": H, "width": W, "seed": cfg.seed, "pano": cfg.pano, "kinds": kinds}
    for d in (Path(out_dir) / "data", *reuse):
        j = d / "rgbd.json"
        if j.is_file() and json.loads(j.read_text()).get("render") == key:
            return _quantised(read_rgbd_set(d))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(16, cpus) if cfg.n_images >= 64 else 1
    ds = render_rgbd_set(cfg.n_images, H, W, seed=cfg.seed, kinds=kinds, pano=cfg.pano, workers=workers)
    if cache:
        write_rgbd_set(Path(out_dir) / "data", ds, extra={"render": key})
    return _quantised(ds)


def _held_out(cfg: RGBDDataConfig, out_dir: Path, n: int = 32) -> RGBDSet | None:
    """A few images the model never trains on, for the model card (procedural sets only)."""
    if cfg.data:
        return None
    H, W = cfg.size
    kinds = cfg.kinds or (PANO_KINDS if cfg.pano else PERSPECTIVE_KINDS)
    return _quantised(render_rgbd_set(n, H, W, seed=cfg.seed + 100003, kinds=kinds, pano=cfg.pano))


# ------------------------------------------------------------------------------------------------- export
def resolve_vae_folder(spec: str | Path) -> Path:
    """A VAE folder from a stage-1 run folder (``model/``), a pipeline folder (``vae/``) or the VAE folder itself."""
    from latent3d.io.model_folder import read_config

    p = Path(spec).expanduser()
    for cand in (p, p / "vae", p / "model", p / "model" / "vae"):
        cfg = cand / "config.json"
        if cfg.is_file() and read_config(cfg, "copy or retrain the autoencoder").get("_class_name") == "AutoencoderKL":
            return cand
    raise UserError(f"{spec} holds no AutoencoderKL (config.json with _class_name AutoencoderKL, or vae/ or model/ "
                    "inside): pass the output folder of `latent3d train rgbd-vae` or a diffusers vae folder")  # fmt: skip


def _load_vae(spec: str | Path):
    from diffusers import AutoencoderKL

    from latent3d.io.model_folder import from_pretrained, hf_load

    folder = resolve_vae_folder(spec)
    return hf_load(lambda: from_pretrained(AutoencoderKL, folder), f"{folder}: a damaged AutoencoderKL folder",
                   "retrain it or copy it again").float()


class _Packed:
    """The training images stored compactly (8-bit RGB, 16-bit disparity: 3 + 2 bytes a pixel instead of 6 floats);
    ``x(i)`` gives the autoencoder input of the images ``i`` (exactly the values of :func:`_quantised`)."""

    def __init__(self, ds: RGBDSet, variant: str):
        from latent3d.io.depth import quantize_depth

        # contiguous whatever layout the set came in (rendered, read, resized): a channels-last batch takes other
        # convolution kernels, whose rounding would make a resumed run (data read from the cache) drift
        self.rgb8 = (ds.rgb * 255).round().to(torch.uint8).contiguous()  # [N, 3, H, W]
        self.d16 = quantize_depth(ds.disparity).to(torch.int32).contiguous()  # [N, 1, H, W], as the PNG writer
        self.variant = variant

    def __len__(self) -> int:
        return self.rgb8.shape[0]

    def x(self, i: Tensor | slice) -> Tensor:  # -> [B, C, H, W] in [-1, 1]
        from latent3d.nets.rgbd_vae import rgbd_to_vae_input

        rgb = self.rgb8[i].float() / 255
        disp = (self.d16[i].double() / 65535).float()
        return rgbd_to_vae_input(rgb, disp, self.variant)  # type: ignore[arg-type]


@torch.no_grad()
def _encode_all(vae: nn.Module, data: _Packed, device: torch.device, bs: int = 64) -> tuple[Tensor, Tensor]:
    """Posterior mean and std of every image -> two [N, 4, h, w] on the CPU."""
    from latent3d.nets.rgbd_vae import encode_latent_stats

    vae = vae.to(device).eval()
    means, stds = [], []
    for s in range(0, len(data), bs):
        mean, std = encode_latent_stats(vae, data.x(slice(s, s + bs)).to(device))
        means.append(mean.float().cpu())
        stds.append(std.float().cpu())
    return torch.cat(means), torch.cat(stds)


def _last_losses(out_dir: Path, keys: tuple[str, ...], rows: int = 5) -> dict[str, float]:
    """Mean of the last ``rows`` logged windows of ``metrics.jsonl`` for each key."""
    path = Path(out_dir) / "metrics.jsonl"
    log = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    return {k: sum(r[k] for r in log[-rows:]) / max(1, len(log[-rows:])) for k in keys if log and k in log[-1]}


def _psnr(a: Tensor, b: Tensor) -> float:
    return float(-10 * torch.log10((a - b).pow(2).mean().clamp(min=1e-12)))


# ------------------------------------------------------------------------------------------------ stage 1
def _latent_scaling(vae, packed: _Packed, dev: torch.device, seed: int) -> float:
    """LDM's latent scaling (Rombach et al. 2022, Sec. 4.3.2 / SD's 0.18215): 1 / std of posterior samples of every
    training image, so that stage 2 sees unit-variance latents."""
    mean, std = _encode_all(vae, packed, dev)
    g = torch.Generator().manual_seed(seed)
    z = mean + std * torch.randn(mean.shape, generator=g)
    return float(1.0 / z.std())


def _vae_held_out_eval(vae, cfg: RGBDVAEConfig, out_dir: Path) -> dict:
    """RGB PSNR and disparity MAE of the posterior-mean reconstructions of :func:`_held_out` ({} for real data)."""
    from latent3d.nets.rgbd_vae import rgbd_to_vae_input, vae_output_to_rgbd

    held = _held_out(cfg, out_dir)
    if held is None:
        return {}
    with torch.no_grad():
        xr = vae.decode(vae.encode(rgbd_to_vae_input(held.rgb, held.disparity, cfg.variant)).latent_dist.mean)
        rgb, disp = vae_output_to_rgbd(xr.sample, cfg.variant)  # type: ignore[arg-type]
    return {"held_out_images": len(held), "rgb_psnr_db": round(_psnr(rgb, held.rgb), 2),
            "disparity_mae": round(float((disp - held.disparity).abs().mean()), 4)}  # fmt: skip


def _vae_card(cfg: RGBDVAEConfig, vae, out_dir: Path, command: str | None, ds: int, lat: tuple[int, int, int],
              scaling: float, n_data: int, data_s: float, perceptual: bool, wall_s: float, final: dict,
              evaluation: dict) -> str:
    """MODEL_CARD.md of a stage-1 autoencoder (LDM3D Sec. 3.1)."""
    H, W = cfg.size
    n_params = sum(p.numel() for p in vae.parameters())
    cmd = command or (f"latent3d train rgbd-vae --out {out_dir} --steps {cfg.steps} --batch-size {cfg.batch_size}"
                      f"{' --pano' if cfg.pano else ''} --variant {cfg.variant} --seed {cfg.seed}")  # fmt: skip
    return f"""# LDM3D RGBD autoencoder ({cfg.variant}{', panorama' if cfg.pano else ''})

KL-autoencoder over RGB + depth (LDM3D, arXiv 2305.10853, Sec. 3.1): {vae.config.in_channels} input/output
channels ({'RGB + 16-bit disparity packed (0, d >> 8, d & 255) / 255' if cfg.variant == '6c' else 'RGB + disparity'}),
each in [-1, 1]; downsampling {ds}: {H}x{W} images -> {lat[1]}x{lat[2]}x{lat[0]} latents. Depth is normalised
[0, 1] inverse depth (disparity, bright = near). `scaling_factor` = {scaling:.5f} (1 / std of the latents).

- Command: `{cmd}`
- Start: {cfg.rgb_vae or f'a fresh RGB AutoencoderKL {list(cfg.block_out_channels)}'}, widened (conv_in / conv_out only).
- Data: {n_data} images {'from ' + str(cfg.data) if cfg.data else f'rendered by latent3d ({data_s:.0f} s)'}, {H}x{W}.
- Loss: {'L1 + perceptual' if perceptual else 'pyramid L1 (3 scales)'} + {cfg.loss.kl_weight:g} KL + hinge PatchGAN ({cfg.loss.disc_layers} layers) from step
  {cfg.loss.disc_start}, {'adaptive' if cfg.loss.adaptive else 'fixed'} weight {cfg.loss.disc_weight}; AdamW lr {cfg.lr},
  betas {cfg.betas}, batch {cfg.batch_size}, {cfg.steps} steps; {n_params / 1e6:.2f}M parameters.
- Wall time: {wall_s / 60:.1f} min training.
- Final losses (mean of the last logged windows): {json.dumps({k: round(v, 5) for k, v in final.items()})}
- Held-out reconstruction: {json.dumps(evaluation) if evaluation else 'n/a (real data)'}
"""


def train_rgbd_vae(
    out_dir: Path, cfg: RGBDVAEConfig, device: str = "auto", resume: bool = False, progress: bool = True,
    command: str | None = None, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
    checkpoint_every: int = 500,
) -> Path:  # fmt: skip
    """Widen an RGB KL-autoencoder to RGB + depth and fine-tune it (LDM3D Sec. 3.1); export ``out_dir/model``
    (diffusers ``AutoencoderKL`` folder, float32, ``scaling_factor`` = 1 / std of the latents, model card).

    ``perceptual``: an optional perceptual distance on RGB in [-1, 1] (e.g. an LPIPS module, frozen), used as in
    the paper on top of L1; without it the reconstruction term is the multi-scale L1 of :func:`pyramid_l1`."""
    from latent3d.nets.rgbd_vae import RGBDAutoencoderWithLoss, make_rgb_vae, widen_vae
    from latent3d.runtime import resolve_device, seeded
    from latent3d.train.trainer import TrainConfig, preflight, process_state, train

    out_dir = Path(out_dir)
    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, betas=cfg.betas, grad_clip=None,
                       ckpt_every=checkpoint_every, seed=cfg.seed, device=device, resume=resume, progress=progress,
                       desc="train rgbd-vae", extra={"rgbd_vae": asdict(cfg)})  # fmt: skip
    preflight(tcfg)  # before any data is rendered or written
    t0 = time.time()
    H, W = cfg.size
    with seeded(cfg.seed):  # diffusers builds from the global RNG: seed it, restore the caller's
        data = training_set(cfg, out_dir, cache=process_state(device).is_main_process)
        data_s = time.time() - t0
        packed = _Packed(data, cfg.variant)
        n_data = len(data)
        del data
        if cfg.rgb_vae:
            rgb_vae = _load_vae(cfg.rgb_vae)
        else:
            rgb_vae = make_rgb_vae(cfg.block_out_channels, cfg.latent_channels, sample_size=H)
        vae = widen_vae(rgb_vae, cfg.variant)
        ds = 2 ** (len(vae.config.block_out_channels) - 1)
        if H % ds or W % ds:
            raise UserError(f"image size {H}x{W} is not divisible by the autoencoder's downsampling {ds}")
        lat = (vae.config.latent_channels, H // ds, W // ds)
        model = RGBDAutoencoderWithLoss(vae, cfg.loss, perceptual)  # its discriminator draws from the RNG too

    def batch_fn(step: int, g: torch.Generator):
        i = torch.randint(0, len(packed), (cfg.batch_size,), generator=g)
        x = packed.x(i)  # [B, C, H, W] in [-1, 1]
        flip = torch.rand(cfg.batch_size, generator=g) < 0.5  # mirror augmentation (exact for both projections)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        noise = torch.randn((cfg.batch_size, *lat), generator=g)
        return x, noise, 1.0 if step >= cfg.loss.disc_start else 0.0

    def loss_fn(m, batch, g):
        x, noise, factor = batch
        dev = next(iter(m.parameters())).device
        return m(x.to(dev), noise.to(dev), factor)

    res = train(model, batch_fn, loss_fn, tcfg)
    vae = vae.cpu().eval()

    scaling = _latent_scaling(vae, packed, resolve_device(device), cfg.seed)
    vae = vae.cpu()
    vae.register_to_config(scaling_factor=scaling, sample_size=H)
    evaluation = _vae_held_out_eval(vae, cfg, out_dir)
    final = _last_losses(out_dir, ("loss", "rec", "kl", "g", "d"))
    card = _vae_card(cfg, vae, out_dir, command, ds, lat, scaling, n_data, data_s, perceptual is not None, res.wall_s,
                     final, evaluation)
    if not process_state(device).is_main_process:  # under `accelerate launch` only the main process exports
        return out_dir / "model"
    with atomic_dir(out_dir / "model") as tmp:
        vae.save_pretrained(tmp)
        (tmp / "MODEL_CARD.md").write_text(card)
        (tmp / "latent3d.json").write_text(json.dumps({"variant": cfg.variant, "pano": cfg.pano, "height": H,
                                                       "width": W, "final": final, "eval": evaluation}, indent=1))  # fmt: skip
    return out_dir / "model"


# ------------------------------------------------------------------------------------------------ stage 2
def build_ldm_components(cfg: RGBDLDMConfig, vocabulary: list[str], latent_channels: int, latent_hw: tuple[int, int]):
    """Fresh (unet, text_encoder, tokenizer, scheduler) for LDM3D stage 2: a :func:`~latent3d.priors.bundle.
    build_text_unet` on ``latent_channels`` x ``latent_hw`` latents with SD's DDIM schedule settings (scaled-linear
    betas 0.00085..0.012, ``steps_offset=1``, eps-prediction; Rombach et al. 2022)."""
    from latent3d.nets.rgbd_vae import norm_groups
    from latent3d.priors.bundle import build_text_unet

    sched = dict(beta_start=0.00085, beta_end=0.012, beta_schedule=cfg.beta_schedule, clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")  # fmt: skip
    return build_text_unet(
        vocabulary, max_tokens=cfg.max_tokens, text_dim=cfg.text_dim, text_layers=cfg.text_layers,
        sample_size=latent_hw[0], channels=latent_channels, block_out_channels=cfg.block_out_channels,
        cross_attention=tuple(cfg.attention_levels), attention_head_dim=32,
        norm_num_groups=norm_groups(cfg.block_out_channels), scheduler=sched,
    )  # fmt: skip


def export_ldm3d(folder: Path, vae, unet, text_encoder, tokenizer, scheduler, defaults: dict, card: str) -> Path:
    """Write a diffusers folder in Intel/ldm3d's layout (``StableDiffusionLDM3DPipeline``; float16 safetensors;
    no safety checker / feature extractor), atomically (:func:`~latent3d.priors.bundle.export_bundle`)."""
    from latent3d.priors.bundle import export_bundle

    components = {"vae": vae, "unet": unet, "text_encoder": text_encoder, "tokenizer": tokenizer,
                  "scheduler": scheduler, "safety_checker": None, "feature_extractor": None}  # fmt: skip
    return export_bundle(folder, components, "StableDiffusionLDM3DPipeline", defaults, card,
                         extra={"requires_safety_checker": False})  # fmt: skip


def _ldm_card(cfg: RGBDLDMConfig, out_dir: Path, command: str | None, vae_dir: Path, variant: str, defaults: dict,
              n_data: int, data_s: float, n_words: int, lat: tuple[int, ...], scale: float, nets: dict[str, nn.Module],
              wall_s: float, final: dict) -> str:
    """MODEL_CARD.md of an LDM3D stage-2 model (Stan et al. 2023), naming the stage-1 command from its own card."""
    H, W = cfg.size
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in nets.items()}
    cmd = command or (f"latent3d train rgbd --out {out_dir} --vae {cfg.vae} --steps {cfg.steps} --batch-size "
                      f"{cfg.batch_size}{' --pano' if cfg.pano else ''} --seed {cfg.seed}")  # fmt: skip
    vae_card = (vae_dir / "MODEL_CARD.md").read_text() if (vae_dir / "MODEL_CARD.md").is_file() else ""
    vae_cmd = next((ln.split("`")[1] for ln in vae_card.splitlines() if ln.startswith("- Command: `")), "n/a")
    return f"""# LDM3D{'-pano' if cfg.pano else ''} (latent3d, {variant})

Text -> RGB + depth latent diffusion (LDM3D, Stan et al. 2023, arXiv 2305.10853), diffusers
`StableDiffusionLDM3DPipeline` layout (like Intel/ldm3d{'-pano' if cfg.pano else ''}{'-4c' if variant == '4c' else ''}),
float16 weights. {H}x{W} {'equirectangular panoramas' if cfg.pano else 'images'}; depth output is normalised [0, 1] inverse
depth (bright = near). Recommended: {defaults['num_inference_steps']} DDIM steps, guidance {defaults['guidance_scale']}.

- Stage 1 (autoencoder): `{vae_cmd}`
- Stage 2 (this model): `{cmd}`
- Data: {n_data} captioned RGBD images {'from ' + str(cfg.data) if cfg.data else f'rendered by latent3d ({data_s:.0f} s)'}
  ({n_words} words in the vocabulary; other words run with a warning).
- Model: UNet2DConditionModel {list(cfg.block_out_channels)} (cross-attention {list(cfg.attention_levels)}) on
  {lat[1]}x{lat[2]}x{lat[0]} latents (scaling {scale:.5f}), {cfg.text_layers}-layer CLIPTextModel ({cfg.text_dim}-d),
  frozen {variant} KL-autoencoder; parameters: {', '.join(f'{k} {v / 1e6:.2f}M' for k, v in n_params.items())}.
- Objective: eps-prediction MSE, {cfg.beta_schedule} schedule T=1000, caption dropout {cfg.cond_drop}; AdamW lr
  {cfg.lr} (warm-up {cfg.warmup_steps}), batch {cfg.batch_size}, {cfg.steps} steps, EMA {cfg.ema_decay} (exported).
- Wall time: {wall_s / 60:.1f} min training. Final training loss (last logged windows): {final.get('loss', math.nan):.4f}.
"""


def train_rgbd(
    out_dir: Path, cfg: RGBDLDMConfig, device: str = "auto", resume: bool = False, progress: bool = True,
    command: str | None = None, checkpoint_every: int = 500,
) -> Path:  # fmt: skip
    """LDM3D stage 2: eps-prediction on the frozen RGBD autoencoder's latents; export ``out_dir/model``
    (Intel/ldm3d layout, EMA weights, model card)."""
    from latent3d.diffusion.ddpm import DDPMLoss
    from latent3d.diffusion.schedules import alphas_cumprod
    from latent3d.nets.rgbd_vae import variant_of
    from latent3d.nets.text_denoiser import TextConditionedDenoiser
    from latent3d.priors.vocab import words_of
    from latent3d.runtime import resolve_device, seeded
    from latent3d.train.diffusion_recipe import Captions, fit_diffusion
    from latent3d.train.trainer import TrainConfig, preflight, process_state

    if not cfg.vae:
        raise UserError("train rgbd needs the stage-1 autoencoder: run `latent3d train rgbd-vae --out RUN` first, "
                        "then pass --vae RUN")  # fmt: skip
    out_dir = Path(out_dir)
    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                       ema_decay=cfg.ema_decay, ckpt_every=checkpoint_every, seed=cfg.seed, device=device,
                       resume=resume, progress=progress, desc="train rgbd", extra={"rgbd": asdict(cfg)})  # fmt: skip
    preflight(tcfg)  # before any data is rendered or written
    vae_dir = resolve_vae_folder(cfg.vae)
    vae = _load_vae(vae_dir).eval().requires_grad_(False)
    variant = variant_of(vae)
    H, W = cfg.size
    ds = 2 ** (len(vae.config.block_out_channels) - 1)
    if H % ds or W % ds:
        raise UserError(f"image size {H}x{W} is not divisible by the autoencoder's downsampling {ds}")
    t0 = time.time()
    with seeded(cfg.seed):  # diffusers builds from the global RNG: seed it, restore the caller's
        main = process_state(device).is_main_process
        data = training_set(cfg, out_dir, reuse=(vae_dir.parent / "data",), cache=main)
        data_s = time.time() - t0
        mean, std = _encode_all(vae, _Packed(data, variant), resolve_device(device))
        vae = vae.cpu()
        scale = float(vae.config.scaling_factor)
        lat = tuple(mean.shape[1:])
        unet, text, tok, sched = build_ldm_components(cfg, words_of(data.captions), lat[0], lat[1:])
    model = TextConditionedDenoiser(unet, text)
    loss = DDPMLoss(alphas_cumprod(cfg.beta_schedule).float(), "epsilon")  # LDM eq. 2 / DDPM eq. 14

    def posterior_sample(i: torch.Tensor, g: torch.Generator) -> torch.Tensor:  # [B] -> z0 [B, C, h, w]
        return (mean[i] + std[i] * torch.randn((len(i), *lat), generator=g)) * scale

    captions = Captions.tokenized(tok, data.captions, cfg.max_tokens)
    res = fit_diffusion(model, len(mean), posterior_sample, loss, tcfg, cfg.batch_size, captions, cfg.cond_drop)
    unet, text = unet.cpu().eval(), text.cpu().eval()
    final = _last_losses(out_dir, ("loss",))
    defaults = {**SAMPLE_DEFAULTS, "height": H, "width": W, "variant": variant, "pano": cfg.pano,
                "depth": "normalised inverse depth (disparity) in [0, 1], 1 = near"}  # fmt: skip
    card = _ldm_card(cfg, out_dir, command, vae_dir, variant, defaults, len(data), data_s, len(tok) - 4, lat, scale,
                     {"vae": vae, "unet": unet, "text": text}, res.wall_s, final)
    if not process_state(device).is_main_process:
        return out_dir / "model"
    return export_ldm3d(out_dir / "model", vae, unet, text, tok, sched, defaults, card)
