"""LDM3D-pano: text -> a seamless equirectangular RGBD panorama (LDM3D, arXiv 2305.10853, Sec. 5 / DepthFusion).

An equirectangular image wraps around: its left and right borders are the same meridian. A UNet and a VAE decoder
with zero padding see two unrelated borders there and paint a visible seam. :func:`circular_width_padding` makes
every 2D convolution pad *circularly along the width* (zero padding stays along the height, where the poles are),
so the networks see the panorama as the cylinder it is -- the "circular padding" remedy for 360° generation
(e.g. Chen et al. 2022, Text2Light, Sec. 3.3). Self-attention and group norm are global and need nothing.
:func:`seam_score` measures what is left of a seam.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn


DEFAULT_PANO_MODEL = "ldm3d-pano-tiny"  # the bundled LDM3D-pano latent3d trains on procedural 360° places


@contextlib.contextmanager
def circular_width_padding(modules: Sequence[nn.Module | None]) -> Iterator[int]:
    """Within the context, every ``nn.Conv2d`` in ``modules`` pads its input circularly along the width.

    Each conv's width padding ``p`` is set to 0 and a forward pre-hook concatenates the last ``p`` and first ``p``
    columns instead; the height keeps the conv's own zero padding. Everything is restored on exit. Yields the number
    of convolutions changed.
    """
    changed: list[tuple[nn.Conv2d, tuple, Any]] = []

    def pad_width(p: int):
        def hook(_mod: nn.Module, args: tuple) -> tuple:
            x = args[0]  # [B, C, H, W]
            return (torch.cat([x[..., -p:], x, x[..., :p]], dim=-1), *args[1:])
        return hook

    try:
        for root in modules:
            if root is None:
                continue
            for m in root.modules():
                if isinstance(m, nn.Conv2d) and isinstance(m.padding, tuple) and m.padding[1] > 0:
                    if m.padding_mode != "zeros":
                        continue
                    changed.append((m, m.padding, m.register_forward_pre_hook(pad_width(m.padding[1]))))
                    m.padding = (m.padding[0], 0)
        yield len(changed)
    finally:
        for m, padding, handle in changed:
            handle.remove()
            m.padding = padding


def seam_score(img: Tensor | np.ndarray) -> float:  # img: [H, W] or [H, W, C]
    """How visible the left/right seam of an equirect image is: the mean absolute difference between the last and
    the first column, divided by the mean absolute difference between neighbouring columns elsewhere. About 1 means
    the wrap-around is as smooth as the rest of the image; a hard seam scores several times more."""
    x = torch.as_tensor(np.asarray(img), dtype=torch.float64)
    x = x[..., None] if x.dim() == 2 else x
    inner = (x[:, 1:] - x[:, :-1]).abs().mean()
    wrap = (x[:, :1] - x[:, -1:]).abs().mean()
    return float(wrap / inner.clamp_min(1e-12))


def resize_equirect(img: Tensor, height: int, width: int) -> Tensor:  # [H, W, C] -> [height, width, C]
    """Bilinear resize that wraps around in longitude (no seam introduced by the resampling itself)."""
    from latent3d.render.sphere import sample_equirect

    lon = 2.0 * math.pi * (torch.arange(width, dtype=torch.float32) + 0.5) / width - math.pi
    lat = 0.5 * math.pi - math.pi * (torch.arange(height, dtype=torch.float32) + 0.5) / height
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return sample_equirect(img.float(), lon, lat)


def generate_panorama(
    prompt: str,
    model: Any = None,
    seed: int = 0,
    device: Any = "cpu",
    steps: int | None = None,
    guidance: float | None = None,
    width: int | None = 512,
    circular: bool = True,
    disable_progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:  # rgb [H, W, 3] in [0, 1], disparity [H, W] in [0, 1], info
    """Sample an RGBD panorama with an LDM3D-pano model (bundled ``ldm3d-pano-tiny``, an ``Intel/ldm3d-pano``
    folder, or any LDM3D folder) at its 2:1 size (its ``_latent3d_defaults``, else its native height x twice that, as
    Intel/ldm3d-pano's 512x1024), with circular width padding in the UNet and the VAE, then
    resize it (wrapping in longitude) to ``width`` x ``width/2`` (``None``: keep the native size). ``model`` may
    also be an already loaded :class:`~latent3d.systems.ldm3d.pipeline.RGBDPipeline` (for many panoramas in one process).

    Returns the RGB, the disparity (bright = near) and a dict with the native size, the seam score of the raw
    sample, and the settings used.
    """
    from latent3d.systems.ldm3d.pipeline import RGBDPipeline

    pipe = model if isinstance(model, RGBDPipeline) else RGBDPipeline.from_pretrained(model or DEFAULT_PANO_MODEL,
                                                                                      device=device)
    h, w = pipe.defaults["height"], pipe.defaults["width"]
    if w != 2 * h:  # no 2:1 default (e.g. Intel/ldm3d-pano's folder): its native height, twice as wide (512x1024)
        h, w = pipe.prior.resolution, 2 * pipe.prior.resolution
    steps, guidance, h, w = pipe.settings(steps, guidance, h, w)
    g = torch.Generator().manual_seed(seed)
    prior = pipe.prior
    with circular_width_padding([prior.unet, prior.vae] if circular else []):
        out = pipe(prompt, steps=steps, guidance=guidance, height=h, width=w, generator=g,
                   disable_progress=disable_progress)  # fmt: skip
    rgb = out.rgb[0]  # [h, w, 3]
    disp = out.depth[0].to(torch.float32) / 65535.0  # [h, w]
    name = "a loaded RGBDPipeline" if isinstance(model, RGBDPipeline) else str(model or DEFAULT_PANO_MODEL)
    info = {"model": name, "native_size": [h, w], "steps": steps, "guidance": guidance,
            "circular_padding": circular, "seam_score_rgb": round(seam_score(rgb), 4),
            "seam_score_depth": round(seam_score(disp), 4)}  # fmt: skip
    if width is not None and width != w:
        both = resize_equirect(torch.cat([rgb, disp[..., None]], dim=-1), width // 2, width)
        rgb, disp = both[..., :3].clamp(0, 1), both[..., 3].clamp(0, 1)
    return rgb.numpy(), disp.numpy(), info
