"""A small reference monocular depth estimator that latent3d trains on its own procedural RGBD renders.

LDM3D (arXiv 2305.10853, Table 2) measures its generated depth against ZoeDepth-N (Bhat et al. 2023, a *metric*
monocular estimator) run on the generated RGB images, and compares with DPT-Large's depth on the same images. In
our domain there is no pretrained estimator, so this is the in-domain stand-in: a small U-Net (Ronneberger et al.
2015) regressing metric log-depth from RGB, trained on exactly rendered (RGB, metric depth) pairs of
:func:`latent3d.data.rgbd.render_rgbd_set`. Sky and everything beyond ``max_depth`` is clamped to ``max_depth``
(the estimator's "far"); evaluations mask those pixels out.

Loss: L1 on log-depth plus the scale-invariant log term of Eigen et al. 2014 (eq. 4, lambda = 0.5), so both the
absolute scale and the relative structure are learned. Weights are saved as ``model.safetensors`` + ``config.json``
(:func:`save_metric_model` / :func:`load_metric_model`, shared with :mod:`latent3d.metrics.clip_score`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ----------------------------------------------------------------------------------------- save / load helpers
def save_metric_model(folder: str | Path, model: nn.Module, config: dict[str, Any], kind: str) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (``{"kind": ..., **config}``) atomically into ``folder``."""
    from safetensors.torch import save_file

    from latent3d.io.atomic import atomic_path, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(sd, str(tmp))
    write_text(folder / "config.json", json.dumps({"kind": kind, **config}, indent=1))
    return folder


def load_metric_model(folder: str | Path, kind: str, build: Callable[[dict], nn.Module]) -> nn.Module:
    """Read a folder written by :func:`save_metric_model`; ``build(config)`` makes the module to load into."""
    from safetensors.torch import load_file

    from latent3d.errors import UserError

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder} is not a saved {kind} (config.json + model.safetensors expected)")
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("kind") != kind:
        raise UserError(f"{folder} holds a {cfg.get('kind')!r}, not a {kind!r}")
    model = build(cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


# ---------------------------------------------------------------------------------------------------- network
def _block(cin: int, cout: int) -> nn.Sequential:
    g = 8 if cout % 8 == 0 else 1
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(g, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(g, cout), nn.SiLU())  # fmt: skip


class DepthNet(nn.Module):
    """U-Net (three 2x downsamplings) -> metric depth in ``[min_depth, max_depth]`` (sigmoid in log space)."""

    def __init__(self, width: int = 16, min_depth: float = 0.1, max_depth: float = 80.0):
        super().__init__()
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        w = width
        self.enc = nn.ModuleList([_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w)])
        self.dec = nn.ModuleList([_block(8 * w, 2 * w), _block(4 * w, w), _block(2 * w, w)])
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, images: Tensor) -> Tensor:  # [B, 3, H, W] in [0, 1] (H, W divisible by 8) -> [B, 1, H, W]
        """Log-depth in ``[log min_depth, log max_depth]``."""
        x, skips = images * 2 - 1, []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.dec, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), skip], 1))
        lo, hi = math.log(self.min_depth), math.log(self.max_depth)
        return lo + (hi - lo) * torch.sigmoid(self.head(x))

    @torch.no_grad()
    def predict_depth(self, images: Tensor, batch_size: int = 64) -> Tensor:  # [B, 3, H, W] -> [B, 1, H, W] metric
        """Metric depth; images of any size are resized to a multiple of 8 and the result resized back."""
        H, W = images.shape[-2:]
        h, w = max(8, round(H / 8) * 8), max(8, round(W / 8) * 8)
        out = []
        for x in images.float().split(batch_size):
            if (h, w) != (H, W):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            y = self(x)
            out.append(F.interpolate(y, size=(H, W), mode="bilinear", align_corners=False) if (h, w) != (H, W) else y)
        return torch.cat(out).exp()


# ---------------------------------------------------------------------------------------------------- training
@dataclass
class DepthNetConfig:
    """Training settings of the reference estimator (defaults: ~1 min to render + ~2 min to train on one CPU
    thread at 64x64; held-out renders: AbsRel 0.18 after median scaling, and the exact disparity of those renders
    scores AbsRel 0.13 against it under :func:`latent3d.metrics.depth.disparity_errors`)."""

    size: int = 64  # training resolution (square renders)
    n_train: int = 800  # rendered training images
    data_seed: int = 1001  # render seed of the training set (keep it apart from evaluation sets)
    steps: int = 1200
    batch_size: int = 12
    lr: float = 3e-3
    width: int = 16
    min_depth: float = 0.1
    max_depth: float = 80.0
    seed: int = 0


def depth_loss(
    pred_log: Tensor,  # [B, 1, H, W] predicted log-depth
    target: Tensor,  # [B, 1, H, W] metric depth (inf = sky)
    min_depth: float,
    max_depth: float,
) -> Tensor:  # []
    """L1 on log-depth + Eigen et al. 2014 eq. 4 scale-invariant log error (lambda = 0.5); targets clamped to
    ``[min_depth, max_depth]`` (sky -> ``max_depth``)."""
    y = torch.nan_to_num(target, posinf=max_depth).clamp(min_depth, max_depth).log()
    d = (pred_log - y).flatten(1)
    si = (d.pow(2).mean(1) - 0.5 * d.mean(1).pow(2)).clamp(min=0).sqrt().mean()
    return d.abs().mean() + si


def train_depth_net(cfg: DepthNetConfig | None = None, data=None, log: Callable[[str], None] | None = None) -> DepthNet:
    """Train :class:`DepthNet` on procedural renders (``data``: an :class:`~latent3d.data.rgbd.RGBDSet`, rendered
    from ``cfg`` when None). Deterministic for a given ``cfg.seed`` on CPU; augmentation: horizontal flips and
    brightness jitter (depth is unchanged by both)."""
    cfg = cfg or DepthNetConfig()
    t0 = time.time()
    if data is None:
        from latent3d.data.rgbd import render_rgbd_set

        data = render_rgbd_set(cfg.n_train, cfg.size, cfg.size, seed=cfg.data_seed)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = DepthNet(cfg.width, cfg.min_depth, cfg.max_depth)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    rgb, depth = data.rgb.float(), data.depth.float()
    for step in range(cfg.steps):
        i = torch.randint(0, len(rgb), (cfg.batch_size,), generator=g)
        x, y = rgb[i], depth[i]
        flip = torch.rand(cfg.batch_size, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.where(flip[:, None, None, None], y.flip(-1), y)
        x = (x * (0.85 + 0.3 * torch.rand(cfg.batch_size, 1, 1, 1, generator=g))).clamp(0, 1)
        loss = depth_loss(net(x), y, cfg.min_depth, cfg.max_depth)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step + 1) % 100 == 0:
            log(f"depth net step {step + 1}/{cfg.steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    return net.eval()


def save_depth_net(folder: str | Path, net: DepthNet, cfg: DepthNetConfig | None = None) -> Path:
    """``model.safetensors`` + ``config.json`` (network shape and training settings)."""
    c = asdict(cfg) if cfg is not None else {}
    c.update(width=net.enc[0][0].out_channels, min_depth=net.min_depth, max_depth=net.max_depth)
    return save_metric_model(folder, net, c, "latent3d-depth-net")


def load_depth_net(folder: str | Path) -> DepthNet:
    return load_metric_model(folder, "latent3d-depth-net",
                             lambda c: DepthNet(c["width"], c["min_depth"], c["max_depth"]))  # type: ignore[return-value]


def config_from_json(folder: str | Path) -> DepthNetConfig:
    """The :class:`DepthNetConfig` a saved estimator was trained with (unknown keys ignored)."""
    raw = json.loads((Path(folder) / "config.json").read_text())
    return DepthNetConfig(**{f.name: raw[f.name] for f in fields(DepthNetConfig) if f.name in raw})
