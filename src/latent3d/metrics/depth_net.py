"""A small reference monocular depth estimator that latent3d trains on its own procedural RGBD renders.

LDM3D (arXiv 2305.10853, Table 2) measures its generated depth against ZoeDepth-N (Bhat et al. 2023, a *metric*
monocular estimator) run on the generated RGB images, and compares with DPT-Large's depth on the same images. In
our domain there is no pretrained estimator, so this is the in-domain stand-in: a small U-Net (Ronneberger et al.
2015) regressing metric log-depth from RGB, trained on exactly rendered (RGB, metric depth) pairs of
:func:`latent3d.data.procedural.rgbd_sets.render_rgbd_set`. Sky and everything beyond ``max_depth`` is clamped to
``max_depth`` (the estimator's "far"); evaluations mask those pixels out.

Loss: L1 on log-depth plus the scale-invariant log term of Eigen et al. 2014 (eq. 4, lambda = 0.5), so both the
absolute scale and the relative structure are learned; fitted on the shared trainer (:mod:`latent3d.metrics.fit`).
Weights are saved as ``model.safetensors`` + ``config.json`` (:mod:`latent3d.metrics.weights`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latent3d.metrics.fit import fit_metric_net
from latent3d.runtime import seeded
from latent3d.metrics.weights import load_metric_model, save_metric_model


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
    thread at 64x64; on the 64 held-out renders of ``benchmarks/rgbd_eval.py``: AbsRel 0.18 after median scaling,
    and the exact disparity of those renders scores AbsRel 0.15 against it under
    :func:`latent3d.metrics.depth.disparity_errors`)."""

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
    """Train :class:`DepthNet` on procedural renders (``data``: an :class:`~latent3d.data.formats.rgbd.RGBDSet`,
    rendered from ``cfg`` when None) on the shared trainer (:func:`~latent3d.metrics.fit.fit_metric_net`: AdamW,
    one-cycle lr rising over the first 10 %). Deterministic for a given ``cfg.seed`` on CPU; augmentation: horizontal
    flips and brightness jitter (depth is unchanged by both)."""
    cfg = cfg or DepthNetConfig()
    if data is None:
        from latent3d.data.procedural.rgbd_sets import render_rgbd_set

        data = render_rgbd_set(cfg.n_train, cfg.size, cfg.size, seed=cfg.data_seed)
    with seeded(cfg.seed):
        net = DepthNet(cfg.width, cfg.min_depth, cfg.max_depth)
    rgb, depth = data.rgb.float(), data.depth.float()

    def batch_fn(step: int, g: torch.Generator) -> tuple[Tensor, Tensor]:  # -> [b, 3, H, W], [b, 1, H, W]
        i = torch.randint(0, len(rgb), (cfg.batch_size,), generator=g)
        x, y = rgb[i], depth[i]
        flip = (torch.rand(cfg.batch_size, generator=g) < 0.5)[:, None, None, None]
        x, y = torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)
        return (x * (0.85 + 0.3 * torch.rand(cfg.batch_size, 1, 1, 1, generator=g))).clamp(0, 1), y

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor], g: torch.Generator) -> Tensor:
        return depth_loss(model(batch[0]), batch[1], cfg.min_depth, cfg.max_depth)

    return fit_metric_net(net, batch_fn, loss_fn, cfg.steps, cfg.lr, cfg.seed, 0.1, "depth net", log)


def save_depth_net(folder: str | Path, net: DepthNet, cfg: DepthNetConfig | None = None) -> Path:
    """``model.safetensors`` + ``config.json`` (network shape and training settings)."""
    c = asdict(cfg) if cfg is not None else {}
    c.update(width=net.enc[0][0].out_channels, min_depth=net.min_depth, max_depth=net.max_depth)
    return save_metric_model(folder, net, c, "latent3d-depth-net")


def load_depth_net(folder: str | Path) -> DepthNet:
    """A :class:`DepthNet` saved by :func:`save_depth_net` (a UserError if ``folder`` holds none)."""
    return load_metric_model(folder, "latent3d-depth-net",
                             lambda c: DepthNet(c["width"], c["min_depth"], c["max_depth"]))  # type: ignore[return-value]


def config_from_json(folder: str | Path) -> DepthNetConfig:
    """The :class:`DepthNetConfig` a saved estimator was trained with (unknown keys ignored)."""
    from latent3d.io.model_folder import read_config

    raw = read_config(Path(folder) / "config.json", "train the depth estimator again or copy it again")
    return DepthNetConfig(**{f.name: raw[f.name] for f in fields(DepthNetConfig) if f.name in raw})
