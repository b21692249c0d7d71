"""The 2-D prior of NF-LDM's post-optimisation (Kim et al. 2023, Sec. 3.4): a diffusion model over scene frames
conditioned on an image embedding, so that score distillation can pull rendered views towards the embedding ``y``
of clean dataset frames and away from ``y'``, that of the model's own artefact-laden samples.

The paper fine-tunes a latent diffusion model on CLIP image embeddings. latent3d's in-domain stand-in (``latent3d
train scene-prior``) is a pixel-space diffusers ``UNet2DConditionModel`` (epsilon prediction, cosine schedule of
1000 steps) whose cross-attention reads one token: the embedding of :class:`latent3d.metrics.scene_features.
SceneFeatureNet` (trained here to tell the episodes apart), standardised; the zero token is the unconditional one
(dropped with ``cond_drop`` in training). It trains on the dataset's frames and on frames rendered from the scene
model's samples, each with its own embedding; ``y`` and ``y'`` are the mean embeddings of the two sets.

Saved as a latent3d model folder: ``config.json``, ``model.safetensors`` (feature net, embedding statistics, y, y'),
``unet/`` (diffusers ``save_pretrained``) and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.errors import UserError
from latent3d.systems.nfldm.config import ScenePriorConfig

KIND = "latent3d scene prior"
BETA_SCHEDULE = "squaredcos_cap_v2"
FEATURE_WIDTH = 32
FIX = "pass the --out folder of `latent3d train scene-prior`"


class EmbeddingUNet(nn.Module):
    """``eps(x_t [B, 3, r, r], t [B], y [B, D]) -> [B, 3, r, r]``: the UNet cross-attending to the one token ``y``."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=y[:, None].to(x_t.dtype)).sample


def build_unet(cfg: ScenePriorConfig, dim: int) -> EmbeddingUNet:
    """A fresh UNet of ``cfg`` cross-attending (two lowest levels and the middle) to a ``dim``-wide token."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.channels)
    cross = (False,) * max(n - 2, 0) + (True,) * min(n, 2)
    unet = UNet2DConditionModel(
        sample_size=cfg.resolution, in_channels=3, out_channels=3, block_out_channels=tuple(cfg.channels),
        layers_per_block=1, down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cross),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cross)),
        cross_attention_dim=dim, attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip
    return EmbeddingUNet(unet)


@dataclass
class ScenePrior:
    """What score distillation needs of a prior (:func:`latent3d.distill.sds.sds_grad`): ``alphas_cumprod``,
    ``compute_dtype`` and ``predict_eps_cfg``; plus the embedding net and the conditions y and y'."""

    unet: EmbeddingUNet
    features: nn.Module  # SceneFeatureNet
    mean: Tensor  # [D] embedding statistics
    std: Tensor  # [D]
    y: Tensor  # [D] standardised mean embedding of clean dataset frames
    y_neg: Tensor  # [D] standardised mean embedding of the scene model's rendered samples
    alphas_cumprod: Tensor  # [T]
    resolution: int
    compute_dtype: torch.dtype = torch.float32

    @property
    def device(self) -> torch.device:
        return self.alphas_cumprod.device

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def to(self, device) -> ScenePrior:
        for name in ("mean", "std", "y", "y_neg", "alphas_cumprod"):
            setattr(self, name, getattr(self, name).to(device))
        self.unet.to(device)
        self.features.to(device)
        return self

    def encode_images(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Frames at the prior's resolution ``[B, 3, r, r]`` in [0, 1] -> its pixels in [-1, 1] (differentiable)."""
        return images * 2 - 1

    def predict_eps_cfg(self, x_t: Tensor, t: Tensor, cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
        """``eps(x_t, y') + scale (eps(x_t, y) - eps(x_t, y'))`` with ``y = cond``, ``y' = uncond`` ``[B or 1, D]``
        (the zero token for plain classifier-free guidance) in one batched call."""
        from latent3d.diffusion.guidance import cfg_batched

        return cfg_batched(self.unet, x_t, t, cond, uncond, scale, cond_key="y")


def to_prior_pixels(images: Tensor, resolution: int) -> Tensor:  # [B, 3, H, W] in [0, 1] -> [B, 3, r, r] in [-1, 1]
    """Frames as the prior sees them: area-downsampled (bilinear up) to ``resolution``, scaled to [-1, 1]."""
    mode = "area" if images.shape[-1] >= resolution else "bilinear"
    return F.interpolate(images, size=(resolution, resolution), mode=mode) * 2 - 1


def train_scene_prior(model, data: Path, out: Path, cfg: ScenePriorConfig, device: str = "auto",
                      progress: bool = True, command: str | None = None) -> dict:  # fmt: skip
    """Train the prior (module docstring) for the scene model ``model`` (:class:`~.scene_model.SceneModel`) on the
    episodes ``data``; writes the model folder ``out`` and returns its summary."""
    import time

    from latent3d.diffusion.ddpm import DDPMLoss
    from latent3d.diffusion.schedules import alphas_cumprod
    from latent3d.io.model_folder import write_model_folder
    from latent3d.metrics.scene_features import embed_frames, train_scene_features
    from latent3d.runtime import seeded
    from latent3d.systems.nfldm.episodes import episode_frames
    from latent3d.systems.nfldm.generate import sample_frames
    from latent3d.train.diffusion_recipe import Captions, fit_diffusion
    from latent3d.train.trainer import TrainConfig

    t0 = time.time()
    real, labels = episode_frames(data)
    model_name = model.source
    fake = sample_frames(model, cfg.samples, cfg.frames, None, torch.Generator().manual_seed(cfg.seed)).cpu()
    features = train_scene_features(real, labels, steps=cfg.feature_steps, width=FEATURE_WIDTH, seed=cfg.seed)
    e_real, e_fake = embed_frames(features, real).float(), embed_frames(features, fake).float()
    e_all = torch.cat([e_real, e_fake])
    mean, std = e_all.mean(0), e_all.std(0).clamp_min(1e-6)
    y_rows = torch.cat([(e_all - mean) / std, torch.zeros(1, len(mean))])  # last row: the empty token
    x = to_prior_pixels(torch.cat([real, fake]), cfg.resolution)
    with seeded(cfg.seed):
        unet = build_unet(cfg, len(mean))
    ab = alphas_cumprod(BETA_SCHEDULE, 1000).float()
    tcfg = TrainConfig(out_dir=out / "training", steps=cfg.steps, lr=cfg.lr, warmup_steps=min(100, cfg.steps // 10),
                       ema_decay=0.999, seed=cfg.seed, device=device, progress=progress, desc="train scene-prior",
                       extra={"scene_prior": asdict(cfg), "model": model_name, "data": str(data)})  # fmt: skip
    rows = Captions(torch.zeros(len(y_rows), 1, dtype=torch.long), torch.ones(len(y_rows), 1, dtype=torch.bool))
    res = fit_diffusion(unet, len(x), lambda i, g: x[i], DDPMLoss(ab, "epsilon"), tcfg, cfg.batch_size,
                        captions=rows, cond_drop=cfg.cond_drop,  # the dropout rows; the last: the zero token
                        condition=lambda r, dev: {"y": y_rows[r].to(dev)})  # fmt: skip
    unet = unet.cpu().eval()
    summary = {"frames_real": len(real), "frames_samples": len(fake), "episodes": int(labels.max()) + 1,
               "steps": res.step, "final_loss": res.last_loss, "train_s": round(time.time() - t0, 1),
               "y_distance": float(((e_real.mean(0) - e_fake.mean(0)) / std).norm())}  # fmt: skip
    tensors = {**{f"features.{k}": v for k, v in features.state_dict().items()}, "mean": mean, "std": std,
               "y": (e_real.mean(0) - mean) / std, "y_neg": (e_fake.mean(0) - mean) / std}  # fmt: skip
    config = {"scene_prior": cfg, "feature_dim": len(mean), "feature_width": FEATURE_WIDTH,
              "episodes": summary["episodes"], "beta_schedule": BETA_SCHEDULE, "training": summary}  # fmt: skip
    write_model_folder(out / "model", KIND, config, tensors, _card(cfg, summary, command, model_name, data),
                       write_more=lambda tmp: unet.unet.save_pretrained(tmp / "unet", safe_serialization=True))
    run = {"command": command, "model": model_name, "data": str(Path(data).resolve())}
    (out / "run.json").write_text(json.dumps(run, indent=1))
    return summary


def _card(cfg: ScenePriorConfig, s: dict, command: str | None, model: str, data: Path) -> str:
    return f"""# latent3d scene prior (NF-LDM post-optimisation, Sec. 3.4)

- Trained by: `{command or 'latent3d train scene-prior'}` ({s['train_s']:.0f} s, {s['steps']} steps, final loss
  {s['final_loss']:.4f}).
- Data: {s['frames_real']} frames of {s['episodes']} episodes ({data.name}) and {s['frames_samples']} frames rendered
  from {cfg.samples} samples of the scene model {model}.
- Conditions: y = mean embedding of the dataset frames, y' = that of the samples ({s['y_distance']:.2f} standard
  deviations apart); pixel-space UNet {','.join(map(str, cfg.channels))} at {cfg.resolution} px, epsilon prediction,
  cosine schedule, condition dropout {cfg.cond_drop}.
"""


def read_prior_folder(folder: str | Path):  # -> ModelFolder
    """The model folder of a prior (the run's ``model`` folder, or the run folder itself), checked without reading
    any weight."""
    from latent3d.io.model_folder import read_model_folder

    folder = Path(folder)
    return read_model_folder(folder / "model" if (folder / "model").is_dir() else folder, KIND, FIX)


def load_scene_prior(folder: str | Path, device: str = "cpu") -> ScenePrior:
    """A prior written by :func:`train_scene_prior` (the run's ``model`` folder, or the run folder itself)."""
    from diffusers import UNet2DConditionModel

    from latent3d.diffusion.schedules import alphas_cumprod
    from latent3d.io.model_folder import from_pretrained, hf_load
    from latent3d.metrics.scene_features import SceneFeatureNet

    saved = read_prior_folder(folder)
    folder = saved.path
    cfg = saved.config(ScenePriorConfig, "scene_prior")
    dim, width, classes = (saved.get(k, int) for k in ("feature_dim", "feature_width", "episodes"))
    tensors = saved.tensors()
    unet = hf_load(lambda: from_pretrained(UNet2DConditionModel, folder / "unet"), f"{folder / 'unet'}: not a UNet",
                   FIX)  # fmt: skip
    if unet.config.cross_attention_dim != dim or unet.config.sample_size != cfg.resolution:
        raise UserError(f"{folder / 'unet'}: does not fit its config.json; {FIX}")

    def build() -> SceneFeatureNet:
        net = SceneFeatureNet(classes, width)
        net.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("features.")})
        return net

    features = saved.build(build).eval()
    extra = {k: tensors[k].float() for k in ("mean", "std", "y", "y_neg")}
    if any(v.shape != (dim,) for v in extra.values()):
        raise UserError(f"{saved.path}: embedding statistics of another size than {dim}; {FIX}")
    ab = alphas_cumprod(BETA_SCHEDULE, 1000).float()
    prior = ScenePrior(EmbeddingUNet(unet).eval(), features, extra["mean"], extra["std"], extra["y"], extra["y_neg"],
                       ab, cfg.resolution)  # fmt: skip
    return prior.to(device)
