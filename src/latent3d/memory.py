"""One memory preflight for every command whose options scale memory (issues 13, 30): an estimate from the options
and the model's configs only, made before anything large is allocated or any weight loads, so that settings that
cannot fit are refused with the estimate (``needs ~X GB, Y GB free``) instead of reaching the allocator (or swapping
until the kernel kills the process) after minutes of work. :func:`latent3d.cli.main` turns an allocator failure that
still happens into one line as well.

The estimates are peak *additional* bytes, calibrated on a 2-core CPU with ``benchmarks/memory_preflight.py``
(which prints each estimate beside the measured peak); they err on the high side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from latent3d.errors import UserError


def available_bytes() -> int:
    """MemAvailable of /proc/meminfo (Linux), else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _config(folder: Path, sub: str) -> dict:
    try:
        doc = json.loads((folder / sub / "config.json").read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def estimate_sampling_bytes(folder: str | Path, height: int, width: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    """Estimated peak memory of CFG sampling + decoding at ``height x width``: the weights (the safetensors files on
    disk) plus the activations, which grow with the pixel count. PyTorch's scaled-dot-product attention (what
    diffusers runs) is memory-efficient on CPU and GPU, so attention adds no tokens^2 term; what dominates is the VAE
    decoder's last block at full resolution, about 8 live tensors of ``block_out_channels[0]`` channels per pixel
    (measured on the bundled ldm3d-tiny: 1.1 KB per pixel vs the 1.0 KB this gives), plus the UNet's blocks at the
    latent resolution for the conditional and unconditional halves."""
    folder = Path(folder)
    unet, vae = _config(folder, "unet"), _config(folder, "vae")
    weights = sum(f.stat().st_size for f in folder.glob("*/*.safetensors"))
    try:
        ds = 2 ** (len(vae.get("block_out_channels", [0])) - 1) if vae else 1
        unet_width = sum(int(c) for c in unet.get("block_out_channels", [320, 640, 1280, 1280]))
        vae_width = int(vae.get("block_out_channels", [128])[0]) if vae else 0
    except (TypeError, ValueError, IndexError):  # a damaged config.json: the loader says what is wrong with it
        ds, unet_width, vae_width = 8, 320 + 640 + 1280 + 1280, 128
    tokens = (height // ds) * (width // ds)
    unet_act = 2 * batch * 16 * unet_width * tokens * dtype_bytes
    decoder = batch * 8 * vae_width * height * width * dtype_bytes
    return int(weights + unet_act + decoder)


def refuse_unless_fits(need: int, what: str, fix: str) -> int:
    """The preflight: one :class:`UserError` line ``WHAT needs ~X GB, Y GB free; FIX`` when the estimate ``need``
    (bytes) exceeds the memory available now; returns ``need``."""
    have = available_bytes()
    if need > have:
        raise UserError(f"{what} needs ~{need / 1e9:,.1f} GB, {have / 1e9:.1f} GB free; {fix}")
    return need


def check_fits(folder: str | Path, height: int, width: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    """Refuse a sampling size whose estimate exceeds the memory available now."""
    what = f"--size {height}x{width}" + (f" x {batch} images" if batch > 1 else "")
    fix = "choose a smaller --size" + (" or fewer images" if batch > 1 else "")
    return refuse_unless_fits(estimate_sampling_bytes(folder, height, width, batch, dtype_bytes), f"sampling {what}", fix)


def check_size_fits(spec, height: int, width: int, batch: int = 1) -> None:
    """:func:`check_fits` for a ``--prior``/``--model`` spec (bundled name, folder or hub id), before it loads. Hub
    ids are not checked: their configs are not on disk until they load."""
    from latent3d.priors.loading import resolve_prior_path

    target, local = resolve_prior_path(spec)
    if local:
        check_fits(target, height, width, batch)


# ------------------------------------------------------------------------- the other commands, from their options
RENDER_BYTES_PER_PIXEL = 350  # data objects: the ray caster's tensors of one object's views (measured 117-347)
MARCH_BYTES_PER_SAMPLE = 128  # a ray-marching sample kept for backward (measured ~120: 30 floats)
VOXEL_BYTES = 8 * 4  # one channel of one voxel of a 3D network's activation, forward + backward (measured ~29)
ADAM_BYTES_PER_PARAM = 4 * 4  # weight, gradient, Adam's two moments (float32)


def meta_params(build) -> int:
    """Parameter count of the module ``build()`` makes, built on PyTorch's meta device (no memory allocated)."""
    import torch

    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def data_objects_bytes(views: int, size: int) -> int:
    """``latent3d data objects``: the views of one object are rendered and held together."""
    return views * size * size * RENDER_BYTES_PER_PIXEL


def _attention_bytes(batch: int, side: int, heads: int = 1) -> int:
    tokens = side**3
    return 3 * batch * heads * tokens * tokens * 4  # scores, softmax, their gradient


def autodecoder_train_bytes(cfg, params: int) -> int:
    """``latent3d train autodecoder``, one step: ``objects_per_step`` decoded volumes (G1 at 4^3 and 8^3, G2's
    stages, the radiance grid) and their rendered patches, with gradients, plus ``params`` trained by Adam."""
    vols = cfg.base_channels * 4**3 + cfg.latent_channels * 8**3
    side, chans = 8, cfg.latent_channels
    for w in cfg.widths:
        side *= 2
        vols += cfg.blocks * 2 * w * side**3
        chans = w
    grid = 4 * (side * cfg.shuffle) ** 3 + chans * side**3
    act = cfg.objects_per_step * (vols + grid) * VOXEL_BYTES
    rays = cfg.objects_per_step * cfg.views_per_object * cfg.patch**2
    att = sum(_attention_bytes(cfg.objects_per_step, s) for s in cfg.attention)
    return params * ADAM_BYTES_PER_PARAM + act + rays * cfg.samples * MARCH_BYTES_PER_SAMPLE + att


def object_diffusion_train_bytes(cfg, params: int, channels: int) -> int:
    """``latent3d train object-diffusion``, one step: the 3D UNet's activations over ``batch_size`` latent
    volumes of ``channels`` x 8^3 (encoder and decoder at every level), attention, and Adam + EMA."""
    vox = channels * 8**3
    for level, mult in enumerate(cfg.channel_mult):
        side = 8 >> level
        vox += 2 * (cfg.blocks + 1) * 2 * cfg.model_channels * mult * side**3
    heads = max(1, cfg.model_channels * max(cfg.channel_mult) // cfg.head_channels)
    att = sum(_attention_bytes(cfg.batch_size, s, heads) for s in (*cfg.attention, 8 >> (len(cfg.channel_mult) - 1)))
    return params * (ADAM_BYTES_PER_PARAM + 4) + cfg.batch_size * vox * VOXEL_BYTES + att


def object_sample_bytes(cfg, grid_size: int, samples: int) -> int:
    """``latent3d object``, one sample at a time: the decoded grid, the rendered views and turntable frames
    (float RGB + occupancy, their clamped copy, the uint8 video) and one chunk of marched rays."""
    images = max(cfg.views, cfg.frames) * cfg.size**2 * (4 * 4 + 3 * 4 + 3)
    return images + 8 * 4 * grid_size**3 * 4 + 8192 * samples * MARCH_BYTES_PER_SAMPLE


def immersive_bytes(cfg) -> int:
    """``latent3d immersive``: the displaced sphere and its tracer (~2 KB a quad: measured 1.1 GB at 1024 x 512
    quads), the two stereo eyes (~100 B a pixel) and the tour's frames held for the video."""
    frames = max(2, round(cfg.tour_seconds * cfg.tour_fps))
    return (2048 * cfg.sphere_lon * cfg.sphere_lat + 100 * cfg.stereo_width**2
            + frames * cfg.view_size**2 * (3 * 4 + 3))  # fmt: skip


def check_dream_fits(spec, views: int) -> None:
    """``latent3d dream``: each step renders ``views`` images at the prior's size and back-propagates the prior's
    guided prediction through them: twice :func:`estimate_sampling_bytes` of a batch of ``views``. Hub ids are not
    checked (their configs are not on disk until they load)."""
    from latent3d.priors.loading import resolve_prior_path

    target, local = resolve_prior_path(spec)
    if not local:
        return
    unet, vae = _config(Path(target), "unet"), _config(Path(target), "vae")
    try:
        side = int(unet.get("sample_size", 64)) * (2 ** (len(vae["block_out_channels"]) - 1) if vae else 1)
    except (TypeError, ValueError, KeyError):  # a damaged config.json: the loader says what is wrong with it
        return
    refuse_unless_fits(2 * estimate_sampling_bytes(target, side, side, views), f"--views {views} at {side}x{side}",
                       "lower --views")
