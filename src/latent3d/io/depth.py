"""Depth maps: 16-bit PNG, quantisation, the LDM3D RGB-like packing, depth <-> disparity, colour previews.

Naming (see design.md, "Conventions"):
  * ``depth``     -- distance along the camera's +z axis (metric or relative); larger = farther.
  * ``disparity`` -- inverse depth normalised to [0, 1], bright (1) = near, as DPT / LDM3D output it.
  * ``d_u16``     -- a 16-bit quantised map (either kind) as stored in PNG-16 and in the LDM3D packing.

Every array function here works on NumPy arrays and on torch tensors alike (one implementation, dispatching on
the input type); torch is never imported by this module, only used when a tensor is passed in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np

from latent3d.io.atomic import atomic_path

Array = Any  # np.ndarray or torch.Tensor

U16_MAX = 65535


# ----------------------------------------------------------------------------------------------- backend helpers
def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_int64(x: Array) -> Array:
    """Widen integers before shifting / multiplying (NumPy 2 keeps uint8 * 256 in uint8: diffusers #14206)."""
    if _is_torch(x):
        return x.to(sys.modules["torch"].int64)
    return np.asarray(x).astype(np.int64)


def _as_float(x: Array, min32: bool = False) -> Array:
    """Floats stay as they are (``min32``: half precision is promoted to float32); integers become float32."""
    if _is_torch(x):
        torch = sys.modules["torch"]
        keep = x.is_floating_point() and not (min32 and x.dtype in (torch.float16, torch.bfloat16))
        return x if keep else x.to(torch.float32)
    x = np.asarray(x)
    keep = np.issubdtype(x.dtype, np.floating) and not (min32 and x.dtype == np.float16)
    return x if keep else x.astype(np.float32)


def _as_u16(x: Array) -> Array:
    """Clamp integer values to [0, 65535] and cast to uint16 (``torch.uint16`` for tensors)."""
    x = x.clip(0, U16_MAX)
    return x.to(sys.modules["torch"].uint16) if _is_torch(x) else x.astype(np.uint16)


def _stack(xs: list, dim: int) -> Array:
    if _is_torch(xs[0]):
        return sys.modules["torch"].stack(xs, dim=dim)
    return np.stack(xs, axis=dim)


def _select(x: Array, index: int, dim: int) -> Array:
    return x.select(dim, index) if _is_torch(x) else np.take(x, index, axis=dim)


# --------------------------------------------------------------------------------------------------- PNG-16 I/O
def write_depth_png16(path: str | os.PathLike, depth_u16: np.ndarray) -> Path:  # depth_u16: [H, W] uint16
    """Atomically write a single-channel 16-bit greyscale PNG (exact; PNG is lossless)."""
    from PIL import Image

    d = depth_u16.detach().cpu().numpy() if _is_torch(depth_u16) else np.asarray(depth_u16)
    if d.ndim != 2 or d.dtype != np.uint16:
        raise ValueError(f"write_depth_png16 expects a [H, W] uint16 array, got {d.dtype} {tuple(d.shape)}; "
                         "use quantize_depth() for float maps in [0, 1]")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(d)).save(tmp, format="PNG")  # mode "I;16" -> 16-bit greyscale
    return Path(path)


def read_depth_png16(path: str | os.PathLike) -> np.ndarray:  # -> [H, W] uint16
    """Read a 16-bit greyscale PNG written by :func:`write_depth_png16` (or any other tool) exactly; any other file
    (8-bit, colour, corrupt, not an image) is one :class:`~latent3d.errors.UserError`."""
    from latent3d.errors import UserError
    from latent3d.io.image import read_pil_array

    arr, mode = read_pil_array(path, None, "16-bit depth PNG")
    if mode not in ("I;16", "I;16B", "I;16L", "I") or arr.ndim != 2:
        raise UserError(f"{path}: expected a 16-bit greyscale PNG, got PIL mode {mode!r}; "
                        "write depth with latent3d's write_depth_png16 or as 16-bit greyscale")
    if arr.dtype != np.uint16:  # older Pillow opens 16-bit PNGs as 32-bit mode "I"
        if arr.min(initial=0) < 0 or arr.max(initial=0) > U16_MAX:
            raise UserError(f"{path}: values outside the 16-bit range")
        arr = arr.astype(np.uint16)
    return np.ascontiguousarray(arr)


# ------------------------------------------------------------------------------------------------ quantisation
def quantize_depth(depth: Array) -> Array:  # depth: [...] float in [0, 1] -> [...] uint16
    """Map [0, 1] to 0..65535 by rounding (values outside [0, 1] are clamped)."""
    x = _as_float(depth, min32=True).clip(0.0, 1.0) * U16_MAX  # float16 cannot hold 65535
    x = x.round()
    return _as_u16(_as_int64(x))


def dequantize_depth(d_u16: Array) -> Array:  # d_u16: [...] uint16 -> [...] float32 in [0, 1]
    """Inverse of :func:`quantize_depth`: ``d / 65535`` in float32 (exact round trip through quantize)."""
    x = _as_int64(d_u16)
    x = x.to(sys.modules["torch"].float32) if _is_torch(x) else x.astype(np.float32)
    return x / U16_MAX


# ----------------------------------------------------------------------------------------- LDM3D RGB-like packing
def pack_depth_rgb(d_u16: Array, dim: int = -1) -> Array:  # [...] uint16 -> [..., 3] float32 (dim=-1)
    """Pack 16-bit depth into three channels in [0, 1]: ``(0, d >> 8, d & 255) / 255``.

    LDM3D (Stan et al. 2023, arXiv 2305.10853, Sec. 3.1): the 16-bit depth map is turned into a 3-channel
    RGB-like image so that the KL-autoencoder sees RGB + depth as 6 channels. ``dim`` is where the new channel
    axis goes: -1 for NumPy channel-last, 1 for torch channel-first ``[B, 3, H, W]`` (input ``[B, H, W]``).
    Integers are widened to int64 before shifting, so uint8/uint16 inputs never overflow.
    """
    d = _as_int64(d_u16)
    if (d.min() < 0) or (d.max() > U16_MAX):
        raise ValueError("pack_depth_rgb expects values in 0..65535 (a uint16 depth map)")
    hi, lo = d >> 8, d & 255
    chans = [hi * 0, hi, lo]
    if _is_torch(d):
        chans = [c.to(sys.modules["torch"].float32) / 255.0 for c in chans]
    else:
        chans = [c.astype(np.float32) / np.float32(255.0) for c in chans]
    return _stack(chans, dim)


def unpack_depth_rgb(rgb: Array, dim: int = -1) -> Array:  # [..., 3] float in [0, 1] -> [...] uint16
    """Inverse of :func:`pack_depth_rgb`: ``round(G * 255) * 256 + round(B * 255)`` (R is ignored).

    Float channels are clamped to [0, 1] first (decoder outputs overshoot slightly); lossless for all 65536
    values in float32 and float16. Integer input (e.g. a uint8 image read from disk) is taken as 0..255 values
    and widened before the multiply (the NumPy 2 uint8 overflow of diffusers #14206). ``dim`` is the channel
    axis (1 for torch ``[B, 3, H, W]``). Tensors come back as ``torch.uint16`` (``.long()`` for arithmetic).
    """
    if rgb.shape[dim] != 3:
        raise ValueError(f"unpack_depth_rgb expects 3 channels on dim {dim}, got shape {tuple(rgb.shape)}")
    is_float = rgb.is_floating_point() if _is_torch(rgb) else np.issubdtype(np.asarray(rgb).dtype, np.floating)
    if is_float:
        x = _as_float(rgb)
        g, b = (_as_int64((_select(x, i, dim).clip(0.0, 1.0) * 255.0).round()) for i in (1, 2))
    else:
        x = _as_int64(rgb).clip(0, 255)
        g, b = _select(x, 1, dim), _select(x, 2, dim)
    return _as_u16(g * 256 + b)


# -------------------------------------------------------------------------------------------- depth <-> disparity
def depth_to_disparity(depth: Array, near: float | None = None, far: float | None = None) -> Array:
    """Depth along +z -> disparity in [0, 1] (bright = near): what DPT and LDM3D call their "depth" output.

    ``disparity = (1/depth - 1/far) / (1/near - 1/far)``, clamped to [0, 1]. ``near``/``far`` default to the
    min/max of the positive finite depths in the map. Non-positive or non-finite depths map to 0 (= far).
    """
    z = _as_float(depth)
    valid = (z > 0) & (z < float("inf"))
    if near is None or far is None:
        zv = z[valid]
        if zv.shape[0] > 0:
            near = float(zv.min()) if near is None else near
            far = float(zv.max()) if far is None else far
        else:
            near, far = near or 1.0, far or 1.0
    if not 0 < near <= far:
        raise ValueError(f"depth_to_disparity needs 0 < near <= far, got near={near}, far={far}")
    inv = 1.0 / z.clip(min=1e-12)
    span = 1.0 / near - 1.0 / far
    disp = (inv - 1.0 / far) / span if span > 0 else inv * 0 + 1.0
    disp = sys.modules["torch"].where(valid, disp, 0.0) if _is_torch(z) else np.where(valid, disp, 0.0)
    return disp.clip(0.0, 1.0)


def disparity_to_depth(disparity: Array, near: float, far: float) -> Array:
    """Inverse of :func:`depth_to_disparity` given the same ``near``/``far``: disparity 1 -> near, 0 -> far."""
    if not 0 < near <= far:
        raise ValueError(f"disparity_to_depth needs 0 < near <= far, got near={near}, far={far}")
    d = _as_float(disparity).clip(0.0, 1.0)
    inv = 1.0 / far + d * (1.0 / near - 1.0 / far)
    return 1.0 / inv


# ----------------------------------------------------------------------------------------------------- preview
# Turbo colormap (Mikhailov, Google 2019), his degree-5 polynomial fit; close to the published table except
# at the darkest end (x < 0.05).
_TURBO_R = (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943)
_TURBO_G = (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604)
_TURBO_B = (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973)


def turbo_lut() -> np.ndarray:  # -> [256, 3] uint8
    """The 256-entry turbo LUT (dark blue at 0 -> dark red at 255)."""
    x = np.linspace(0.0, 1.0, 256)
    powers = np.stack([x**i for i in range(6)], axis=-1)  # [256, 6]
    rgb = powers @ np.array([_TURBO_R, _TURBO_G, _TURBO_B]).T  # [256, 3]
    return (rgb.clip(0.0, 1.0) * 255.0).round().astype(np.uint8)


def depth_preview(depth: Array, kind: Literal["depth", "disparity"] = "depth") -> np.ndarray:
    """Colour preview of a depth or disparity map ``[H, W]`` -> ``[H, W, 3]`` uint8 (turbo; near = red).

    ``kind="depth"`` (distance along +z) is converted to disparity first so near is warm either way; a
    disparity map is min/max-normalised. Invalid pixels (non-finite, or depth <= 0) are black.
    """
    x = depth.detach().cpu().numpy() if _is_torch(depth) else np.asarray(depth)
    x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"depth_preview expects [H, W], got {x.shape}")
    valid = np.isfinite(x) & ((x > 0) if kind == "depth" else True)
    if kind == "depth":
        x = np.where(valid, depth_to_disparity(np.where(valid, x, 0.0)), 0.0)
    elif kind != "disparity":
        raise ValueError(f"kind must be 'depth' or 'disparity', got {kind!r}")
    lo, hi = (x[valid].min(), x[valid].max()) if valid.any() else (0.0, 1.0)
    t = np.where(valid, (x - lo) / (hi - lo) if hi > lo else 0.5, 0.0)
    out = turbo_lut()[np.round(t.clip(0, 1) * 255).astype(np.int64)]
    out[~valid] = 0
    return out
