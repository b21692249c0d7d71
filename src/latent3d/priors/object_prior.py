"""The bundled object prior: a small text-to-image diffusion model over renders of latent3d's named objects.

It is an ordinary diffusers-layout folder (``unet/`` UNet2DConditionModel in pixel space, ``text_encoder/``
CLIPTextModel, ``tokenizer/`` word-level, ``scheduler/`` DDIMScheduler, ``model_index.json``), so it is loaded by
exactly the code that loads Stable Diffusion (:class:`~latent3d.priors.diffusers_prior.DiffusersPrior`).
Training is the DDPM objective (Ho et al. 2020, eq. 14) with the v target (Salimans & Ho 2022, Sec. 4; eps-prediction
is an option) and 10% caption dropout for classifier-free guidance (Ho & Salimans 2022, Sec. 3.2), run by the
shared trainer. A small pixel-space eps model learns the clean image poorly at high noise, where v weights it fully;
that is where an image's colours are decided.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from latent3d.data.captions import caption
from latent3d.data.objects import make_object
from latent3d.data.raycast import render_views
from latent3d.data.shading import COLORS
from latent3d.render.camera import orbit_cameras
from latent3d.runtime import num_threads, resolve_device

PRIOR_OBJECTS = ("snowman", "chair", "table", "mushroom", "lamp", "rocket", "tree", "house")
# settings latent3d uses with this prior unless told otherwise: this small pixel-space v model samples best unguided
# (prior_eval: guidance 1.25 already scores lower), while score distillation needs guidance
PRIOR_DEFAULTS = {"guidance_scale": 1.0, "ism_guidance_scale": 5.0, "sds_guidance_scale": 10.0}


@dataclass
class ObjectPriorConfig:
    """Data, network and optimisation settings of ``latent3d train prior``."""

    resolution: int = 32
    """Image size (pixels); the prior works in pixel space."""
    objects: tuple[str, ...] = PRIOR_OBJECTS
    colors: tuple[str, ...] = tuple(sorted(COLORS))
    views: int = 48
    """Rendered views per (object, colour)."""
    elevation_range_deg: tuple[float, float] = (-10.0, 80.0)
    radius: float = 3.0
    fov_y: float = 0.7
    supersample: int = 4
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    attn_levels: int = 1
    """How many of the lowest-resolution UNet levels have text cross-attention (the mid block always has)."""
    text_dim: int = 64
    text_layers: int = 2
    max_tokens: int = 12
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    """What the UNet predicts: "epsilon" (DDPM) or "v_prediction" (v = sqrt(abar) eps - sqrt(1 - abar) x0, Salimans &
    Ho 2022, Sec. 4), which weights the clean-image error at high noise, where colour and layout are decided."""
    cond_drop: float = 0.1
    """Probability of training on the empty caption (enables classifier-free guidance)."""
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-4
    warmup_steps: int = 500
    ema_decay: float = 0.999
    seed: int = 0
    init: str | None = None
    """An exported prior folder (same vocabulary and network) to start from instead of random weights."""
    extra: dict = field(default_factory=dict)


def render_training_set(cfg: ObjectPriorConfig) -> tuple[Tensor, list[str]]:
    """Renders ``[N, 3, R, R]`` in [0, 1] (white background) and their captions ("a red snowman, side view").

    Azimuths are stratified per (object, colour), elevations uniform in ``elevation_range_deg``; deterministic.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    images, caps = [], []
    with num_threads(1):  # the ray caster is many small element-wise ops: one thread is fastest
        _render_all(cfg, g, images, caps)
    return torch.cat(images).contiguous(), caps  # cat keeps the channels-last strides of the permuted renders


def _render_all(cfg: ObjectPriorConfig, g: torch.Generator, images: list, caps: list) -> None:
    for name in cfg.objects:
        for color in cfg.colors:
            obj = make_object(name, color)
            az = 360.0 * (torch.rand(1, generator=g) + torch.arange(cfg.views)) / cfg.views - 180.0
            lo, hi = cfg.elevation_range_deg
            el = lo + (hi - lo) * torch.rand(cfg.views, generator=g)
            V, K = orbit_cameras(cfg.radius, el, az, cfg.fov_y, cfg.resolution, cfg.resolution)
            r = render_views(obj, V, K, cfg.resolution, cfg.resolution, ss=cfg.supersample)
            images.append(r.rgb.permute(0, 3, 1, 2).clamp(0, 1))
            caps += [caption(name, color, float(a), float(e)) for a, e in zip(az, el)]


_DATA_KEYS = ("resolution", "objects", "colors", "views", "elevation_range_deg", "radius", "fov_y", "supersample", "seed")


def _cached_training_set(out_dir: Path, cfg: ObjectPriorConfig) -> tuple[Tensor, list[str], float]:
    """The training renders, cached in ``out_dir/data``; returns (images [N, 3, R, R] in [0, 1], captions, render
    seconds).

    The cache is keyed by the data settings (a changed setting renders afresh). A fresh run trains on what it reads
    back from the cache, not on the tensor the renderer returned, so a resumed run (which only reads) trains on the
    same values *and* the same memory layout: a channels-last tensor takes other CPU convolution kernels, whose
    float rounding differs (that broke bit-for-bit resume).
    """
    from safetensors.torch import load_file, save_file

    from latent3d.io.atomic import atomic_path, write_text

    key = json.dumps({k: getattr(cfg, k) for k in _DATA_KEYS}, sort_keys=True)
    meta_path, data_path = out_dir / "data" / "captions.json", out_dir / "data" / "renders.safetensors"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() and data_path.exists() else {}
    if meta.get("key") != key:
        t0 = time.time()
        images, caps = render_training_set(cfg)
        meta = {"key": key, "captions": caps, "render_s": time.time() - t0}
        data_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(data_path) as tmp:
            save_file({"images": images}, str(tmp))
        write_text(meta_path, json.dumps(meta))
    return load_file(data_path)["images"], meta["captions"], meta["render_s"]


def _load_init(folder: Path, unet: nn.Module, text: nn.Module, tok) -> None:
    """Copy the weights of an exported prior into fresh components (fine-tuning); vocabularies must agree."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from latent3d.errors import UserError

    index = folder / "model_index.json"
    if not index.exists():
        raise UserError(f"--init {folder}: not an exported prior (no model_index.json)")
    vocab = json.loads((folder / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    if vocab != tok.get_vocab():
        raise UserError(f"--init {folder}: its vocabulary differs from this run's captions")
    try:
        unet.load_state_dict(UNet2DConditionModel.from_pretrained(folder / "unet").float().state_dict())
        text.load_state_dict(CLIPTextModel.from_pretrained(folder / "text_encoder").float().state_dict())
    except RuntimeError as e:
        raise UserError(f"--init {folder}: network shapes differ from this run's settings ({str(e).splitlines()[0]})")


def build_components(cfg: ObjectPriorConfig, vocabulary: list[str]):
    """Fresh (unet, text_encoder, tokenizer, scheduler) for ``vocabulary`` (the captions' words)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from latent3d.priors.vocab import build_word_text_encoder, build_word_tokenizer

    tok = build_word_tokenizer(vocabulary, cfg.max_tokens)
    n, k = len(cfg.block_out_channels), cfg.attn_levels
    down = ("DownBlock2D",) * (n - k) + ("CrossAttnDownBlock2D",) * k
    up = ("CrossAttnUpBlock2D",) * k + ("UpBlock2D",) * (n - k)
    unet = UNet2DConditionModel(
        sample_size=cfg.resolution, in_channels=3, out_channels=3, block_out_channels=cfg.block_out_channels,
        layers_per_block=1, down_block_types=down, up_block_types=up, cross_attention_dim=cfg.text_dim,
        attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip
    text = build_word_text_encoder(tok, cfg.text_dim, cfg.text_layers, cfg.max_tokens)
    sched = DDIMScheduler(beta_schedule=cfg.beta_schedule, clip_sample=True, set_alpha_to_one=True,
                          prediction_type=cfg.prediction_type, timestep_spacing="leading")  # fmt: skip
    return unet, text, tok, sched


class TextToEps(nn.Module):
    """UNet + text encoder trained jointly (the bundled object prior, LDM3D stage 2):
    ``forward(x_t [B, C, h, w] (pixels or latents), t [B], input_ids [B, L]) -> [B, C, h, w]``, the UNet's
    prediction (eps, or v for a ``v_prediction`` prior)."""

    def __init__(self, unet: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, x_t: Tensor, t: Tensor, input_ids: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=self.text_encoder(input_ids)[0]).sample


def export_prior(folder: Path, unet, text_encoder, tokenizer, scheduler, card: str) -> Path:
    """Write the diffusers-layout folder (float16 safetensors, configs, tokenizer, model card) atomically."""
    from latent3d.io.atomic import atomic_dir

    with atomic_dir(folder) as tmp:
        unet.to(torch.float16).save_pretrained(tmp / "unet")
        text_encoder.to(torch.float16).save_pretrained(tmp / "text_encoder")
        unet.float(), text_encoder.float()
        tokenizer.save_pretrained(tmp / "tokenizer")
        scheduler.save_pretrained(tmp / "scheduler")
        index = {
            "_class_name": "Latent3DObjectPrior", "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "scheduler": ["diffusers", "DDIMScheduler"],
            "_latent3d_defaults": PRIOR_DEFAULTS,
        }  # fmt: skip
        (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
        (tmp / "MODEL_CARD.md").write_text(card)
    return Path(folder)


def _card(cfg: ObjectPriorConfig, n_images: int, render_s: float, train_s: float, final_loss: float,
          n_params: int, where: str, out_dir: Path) -> str:
    init = f" --init {cfg.init}" if cfg.init else ""
    command = (f"latent3d train prior --out {out_dir}{init} --steps {cfg.steps} --batch-size {cfg.batch_size} "
               f"--lr {cfg.lr:g} --warmup-steps {cfg.warmup_steps} --prediction-type {cfg.prediction_type} "
               f"--ema-decay {cfg.ema_decay:g} --views {cfg.views} --seed {cfg.seed}")
    objective = {"epsilon": "eps-prediction MSE (DDPM)",
                 "v_prediction": "v-prediction MSE (v = sqrt(abar) eps - sqrt(1 - abar) x0)"}[cfg.prediction_type]
    return f"""# object-prior

A text-to-image diffusion prior over latent3d's procedural objects, in pixel space at {cfg.resolution}x{cfg.resolution}.
Loaded like any diffusers Stable-Diffusion-layout folder (`latent3d sample`, `--prior object-prior`).

- Reproduce: `{command}`, then copy `{out_dir}/model` to `src/latent3d/weights/object-prior`.
- Data: {n_images} renders by latent3d's ray caster: {len(cfg.objects)} objects ({", ".join(cfg.objects)}) x
  {len(cfg.colors)} colours x {cfg.views} views (azimuth stratified, elevation U{list(cfg.elevation_range_deg)} deg,
  radius {cfg.radius}, fov {cfg.fov_y} rad, white background, {cfg.supersample}x supersampled). Captions:
  "a red snowman, side view" (front |az| <= 45, back |az| >= 135, overhead elevation > 60, else side).
- Model: UNet2DConditionModel {list(cfg.block_out_channels)} (text cross-attention in the lowest {cfg.attn_levels} level(s) and
  the mid block) + {cfg.text_layers}-layer CLIPTextModel ({cfg.text_dim}-d) over a word-level vocabulary; {n_params / 1e6:.2f}M parameters, stored float16.
- Objective: {objective}, {cfg.beta_schedule} schedule, T=1000, caption dropout {cfg.cond_drop}.
- Optimisation: AdamW lr {cfg.lr:g} (warm-up {cfg.warmup_steps}), batch {cfg.batch_size}, {cfg.steps} steps, EMA
  {cfg.ema_decay:g} (the exported weights are the EMA){f"; started from {cfg.init}" if cfg.init else ""}.
- Wall time on {where}: rendering the data {render_s:.0f} s, training {train_s / 60:.1f} min; final
  training loss (mean of the last 10 steps) {final_loss:.4f}.
- Knows only its vocabulary: other words still run, with one warning line.

## Evaluation

Run `python benchmarks/prior_eval.py` (object/colour/view classifier trained on renders; accuracy of samples vs of
renders).
"""


def train_object_prior(
    out_dir: Path,
    cfg: ObjectPriorConfig,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int = 500,
) -> Path:
    """Render the training set, train with the shared trainer (a checkpoint every ``checkpoint_every`` steps),
    export ``out_dir/model`` (EMA weights)."""
    from latent3d.diffusion.schedules import alphas_cumprod
    from latent3d.priors.vocab import words_of
    from latent3d.train.trainer import TrainConfig, preflight, train

    tcfg = TrainConfig(out_dir=out_dir, steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                       ema_decay=cfg.ema_decay, ckpt_every=checkpoint_every, seed=cfg.seed, device=device,
                       resume=resume, progress=progress, desc="train prior", extra={"prior": asdict(cfg)})  # fmt: skip
    preflight(tcfg)  # a refused resume neither renders nor touches out_dir
    torch.manual_seed(cfg.seed)
    images, caps, render_s = _cached_training_set(Path(out_dir), cfg)
    unet, text, tok, sched = build_components(cfg, words_of(caps))
    if cfg.init:
        _load_init(Path(cfg.init), unet, text, tok)
    ids = tok(caps, padding="max_length", max_length=cfg.max_tokens, truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=cfg.max_tokens, return_tensors="pt").input_ids
    data = images.mul(2).sub(1)  # [N, 3, R, R] in [-1, 1]
    abar = alphas_cumprod(cfg.beta_schedule).float()
    model = TextToEps(unet, text)
    if cfg.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {cfg.prediction_type!r}")
    v_pred = cfg.prediction_type == "v_prediction"

    def batch_fn(step: int, g: torch.Generator):
        i = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.cond_drop
        x0 = data[i]
        t = torch.randint(0, len(abar), (cfg.batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        return x0, torch.where(drop[:, None], empty, ids[i]), t, eps

    def loss_fn(m, batch, g):
        x0, input_ids, t, eps = (b.to(next(iter(m.parameters())).device) for b in batch)
        a = abar.to(x0.device)[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps  # DDPM eq. 4
        target = eps if not v_pred else a.sqrt() * eps - (1 - a).sqrt() * x0  # DDPM eq. 14 / v (Salimans & Ho)
        return (m(x_t, t, input_ids) - target).pow(2).mean()

    res = train(model, batch_fn, loss_fn, tcfg)
    res.ema.copy_to(model)
    n_params = sum(p.numel() for p in model.parameters())
    dev = resolve_device(device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    card = _card(cfg, len(data), render_s, res.wall_s, res.last_loss, n_params, where, Path(out_dir))
    return export_prior(Path(out_dir) / "model", unet.cpu(), text.cpu(), tok, sched, card)
