"""Up-front memory estimate of sampling an image of a given size from a diffusers folder, read from its configs only
(before any weight loads), so that a size that cannot fit is refused with the estimate instead of swapping until the
kernel kills the process (issue 13)."""

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
    ds = 2 ** (len(vae.get("block_out_channels", [0])) - 1) if vae else 1
    tokens = (height // ds) * (width // ds)
    unet_act = 2 * batch * 16 * sum(unet.get("block_out_channels", [320, 640, 1280, 1280])) * tokens * dtype_bytes
    decoder = batch * 8 * int(vae.get("block_out_channels", [128])[0]) * height * width * dtype_bytes if vae else 0
    return int(weights + unet_act + decoder)


def check_fits(folder: str | Path, height: int, width: int, batch: int = 1, dtype_bytes: int = 4) -> int:
    """Refuse (one :class:`UserError` with the estimate) a size whose estimate exceeds the memory available now."""
    need, have = estimate_sampling_bytes(folder, height, width, batch, dtype_bytes), available_bytes()
    if need > have:
        what = f"--size {height}x{width}" + (f" x {batch} images" if batch > 1 else "")
        fix = "choose a smaller --size" + (" or fewer images" if batch > 1 else "")
        raise UserError(f"{what} needs about {need / 2**30:,.1f} GiB to sample, more than the {have / 2**30:.1f} GiB "
                        f"available; {fix}")
    return need


def check_size_fits(spec, height: int, width: int, batch: int = 1) -> None:
    """:func:`check_fits` for a ``--prior``/``--model`` spec (bundled name, folder or hub id), before it loads. Hub
    ids are not checked: their configs are not on disk until they load."""
    from latent3d.priors.loading import resolve_prior_path

    target, local = resolve_prior_path(spec)
    if local:
        check_fits(target, height, width, batch)
