"""Where the RGBD panorama of ``latent3d immersive`` comes from (read with ``--from``, or generated from a prompt).

Panorama sources go through :func:`panorama_source`: files, or generation by the text-to-panorama generator
registered as LDM3D-pano (:mod:`latent3d.priors.panorama`; ``rgb [H, W, 3]`` in [0, 1] and ``depth [H, W]`` disparity
in [0, 1], bright = near).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from latent3d.errors import UserError


MIN_PANO_HEIGHT = 8  # rows: below this a sphere has fewer latitude bands than the stereo renderer needs


def load_depth_image(path: str | Path, notes: list[str] | None = None) -> np.ndarray:  # -> [H, W] float32 in [0, 1]
    """Read a depth/disparity image: 16-bit greyscale PNG (``/ 65535``), 8-bit greyscale (``/ 255``), a grey RGB
    image, or an LDM3D-packed RGB image ``(0, d >> 8, d & 255)`` (unpacked to 16 bits).

    What had to be assumed (8 bits only, a lossy JPEG, a constant map) is appended to ``notes``."""
    from latent3d.io.depth import U16_MAX, unpack_depth_rgb
    from latent3d.io.image import read_pil_array

    path = Path(path)
    notes = [] if notes is None else notes
    arr, mode = read_pil_array(path, None, "depth image (a 16-bit or 8-bit greyscale PNG)")
    if mode in ("RGBA", "LA", "P", "PA", "1", "CMYK", "YCbCr"):
        arr, mode = read_pil_array(path, "RGB", "depth image")[0], "RGB"
    if path.suffix.lower() in (".jpg", ".jpeg"):
        notes.append(f"{path.name} is a JPEG: lossy compression adds noise to the depth; a PNG keeps it exact")
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        if arr.min(initial=0) < 0 or arr.max(initial=0) > U16_MAX:
            raise UserError(f"{path}: values outside the 16-bit range; save the depth as a 16-bit PNG")
        d = arr.astype(np.float32) / U16_MAX
    elif mode == "F":
        if not np.isfinite(arr).all():
            raise UserError(f"{path}: the depth image holds NaN or infinite values")
        d = np.clip(arr.astype(np.float32), 0.0, 1.0)
    elif mode == "L":
        d = arr.astype(np.float32) / 255.0
        notes.append(f"{path.name} is 8-bit: 256 depth levels, so displaced surfaces show steps; 16-bit keeps 65536")
    elif mode == "RGB":
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            d = arr[..., 0].astype(np.float32) / 255.0
            notes.append(f"{path.name} is 8-bit grey RGB: 256 depth levels; 16-bit greyscale keeps 65536")
        elif (arr[..., 0] == 0).all():  # LDM3D packing: R = 0, G = high byte, B = low byte
            d = unpack_depth_rgb(arr).astype(np.float32) / U16_MAX
        else:
            raise UserError(f"{path}: a colour image is not a depth map; pass the greyscale (disparity) depth PNG")
    else:
        raise UserError(f"{path}: unsupported image mode {mode!r}; pass a 16-bit or 8-bit greyscale PNG")
    if d.size and float(d.max()) == float(d.min()):
        notes.append(f"{path.name} is constant ({float(d.min()):.3f}): a plain sphere, no parallax in stereo")
    return d


def _resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    d = torch.from_numpy(np.ascontiguousarray(depth))[None, None]
    return F.interpolate(d, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def load_panorama(rgb_path: str | Path, depth_path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read an RGB + depth equirect panorama pair; returns (rgb [H, W, 3], depth [H, W], notes).

    Every file problem is one :class:`UserError`; every assumption made (resizing, 8 bits, JPEG, constant depth) is
    one note, printed as a warning line and recorded in ``run.json``."""
    from latent3d.io.image import load_image

    rgb = load_image(rgb_path)
    H, W = rgb.shape[:2]
    if abs(W - 2 * H) > max(1, 0.01 * W):
        raise UserError(f"{rgb_path} is {W}x{H}: an equirectangular 360° panorama is twice as wide as it is high")
    if H < MIN_PANO_HEIGHT:
        raise UserError(f"{rgb_path} is {W}x{H}: too small for a panorama; give at least "
                        f"{2 * MIN_PANO_HEIGHT}x{MIN_PANO_HEIGHT} pixels")
    notes: list[str] = []
    depth = load_depth_image(depth_path, notes)
    if depth.shape != (H, W):
        dh, dw = depth.shape
        if abs(dw - 2 * dh) > max(1, 0.01 * dw):
            raise UserError(f"{depth_path} is {dw}x{dh}: the depth panorama must be 2:1 like the RGB ({W}x{H})")
        depth = _resize_depth(depth, H, W)
        notes.append(f"depth resized from {dw}x{dh} to {W}x{H} to match the RGB")
    for note in notes:
        print(f"latent3d: warning: {note}", file=sys.stderr)
    return rgb, depth, notes


def panorama_source(prompt: str | None, from_rgb: Path | None, from_depth: Path | None, seed: int,
                    device: Any, model: str | None = None, steps: int | None = None,
                    guidance: float | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The one place that decides where the RGBD panorama comes from: files (``--from``) or generation."""
    if from_rgb is not None or from_depth is not None:
        if from_rgb is None or from_depth is None:
            raise UserError("--from needs two paths: the RGB panorama and its depth image")
        rgb, depth, notes = load_panorama(from_rgb, from_depth)
        return rgb, depth, {"source": "files", "rgb": str(from_rgb), "depth": str(from_depth), "notes": notes}
    if not (prompt or "").strip():
        raise UserError("give a prompt to generate a panorama, or --from RGB.png DEPTH.png to use your own")
    from latent3d.priors.panorama import LDM3D_PANO, get_panorama_generator

    generate = get_panorama_generator(LDM3D_PANO)
    rgb, depth, info = generate(prompt or "", model=model, seed=seed, device=device, steps=steps, guidance=guidance)
    return np.asarray(rgb, np.float32), np.asarray(depth, np.float32), {"source": "generated", "prompt": prompt,
                                                                        **info}
