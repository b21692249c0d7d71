"""PLY files: 3D Gaussian splats in the INRIA layout, and plain coloured point clouds.

3DGS layout (Kerbl et al. 2023, "3D Gaussian Splatting for Real-Time Radiance Field Rendering",
``GaussianModel.save_ply`` in graphdeco-inria/gaussian-splatting): one ``vertex`` element, binary little endian,
every property float32, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

* ``f_rest`` is channel-major: ``f_rest_{c*(K-1) + (k-1)}`` holds colour channel c, SH coefficient k >= 1
  (INRIA stores ``_features_rest`` as [N, K-1, 3] and writes ``transpose(1, 2).flatten``).
* ``opacity`` is the pre-sigmoid logit, ``scale_*`` the log of the std-devs, ``rot_*`` a wxyz quaternion exactly as
  optimised (not normalised); normals are written as zeros and ignored on read.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from latent3d.errors import UserError
from latent3d.io.atomic import atomic_path

_SH_DEGREE = {1: 0, 4: 1, 9: 2, 16: 3}


def _f32(x: Any) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


@dataclass
class GaussianPLY:
    """Gaussian splats as stored in a 3DGS PLY (all float32 NumPy; torch tensors are converted on construction)."""

    means: np.ndarray  # [N, 3]
    sh: np.ndarray  # [N, K, 3], K in {1, 4, 9, 16}; k = 0 is the DC term
    opacity_logits: np.ndarray  # [N]
    log_scales: np.ndarray  # [N, 3]
    quats: np.ndarray  # [N, 4] wxyz, as optimised (unnormalised)

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _f32(getattr(self, f.name)))
        n = self.means.shape[0]
        want = {"means": (n, 3), "opacity_logits": (n,), "log_scales": (n, 3), "quats": (n, 4)}
        for name, shape in want.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"GaussianPLY.{name}: expected shape {shape}, got {getattr(self, name).shape}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3 or self.sh.shape[1] not in _SH_DEGREE:
            raise ValueError(f"GaussianPLY.sh: expected [N={n}, K in (1, 4, 9, 16), 3], got {self.sh.shape}")

    @property
    def num(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return _SH_DEGREE[self.sh.shape[1]]


def gaussian_ply_attributes(sh_degree: int) -> list[str]:
    """The INRIA vertex property names, in file order, for SH degree 0..3."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _header(n: int, props: list[tuple[str, str]]) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property {typ} {name}" for name, typ in props]
    return ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")


def _write_vertices(path: str | os.PathLike, data: np.ndarray, ply_types: dict[str, str]) -> Path:
    """Write a structured array as the single ``vertex`` element of a binary little-endian PLY, atomically."""
    header = _header(len(data), [(name, ply_types[name]) for name in data.dtype.names])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(data.tobytes())
    return Path(path)


def write_gaussian_ply(path: str | os.PathLike, g: GaussianPLY) -> Path:
    """Write splats as an INRIA-layout 3DGS PLY (readable by the INRIA viewer, SuperSplat, gsplat tools, ...)."""
    names = gaussian_ply_attributes(g.sh_degree)
    data = np.empty(g.num, dtype=[(name, "<f4") for name in names])
    cols = np.concatenate([
        g.means,
        np.zeros((g.num, 3), np.float32),  # normals
        g.sh[:, 0, :],  # f_dc_0..2
        g.sh[:, 1:, :].transpose(0, 2, 1).reshape(g.num, 3 * (g.sh.shape[1] - 1)),  # f_rest, channel-major
        g.opacity_logits[:, None],
        g.log_scales,
        g.quats,
    ], axis=1)  # [N, len(names)]
    for i, name in enumerate(names):
        data[name] = cols[:, i]
    return _write_vertices(path, data, {name: "float" for name in names})


def read_gaussian_ply(path: str | os.PathLike, plausible: bool = False) -> GaussianPLY:
    """Read an INRIA-layout 3DGS PLY with any SH degree 0..3 (ASCII or binary, any property order).

    Refused with one :class:`UserError`: unreadable files, missing or non-float attributes, 0 Gaussians, NaN/inf.
    ``plausible`` also refuses values no 3DGS optimiser writes (see :func:`check_plausible_gaussians`): what the
    commands that optimise or render a file (``dream --init``, ``view``) ask for."""
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path), mmap=False)  # no memory map: the arrays must outlive the file
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; pass the path of a 3DGS .ply file") from None
    except Exception as e:  # plyfile raises PlyHeaderParseError / PlyElementParseError / ValueError
        raise UserError(f"{path}: not a readable PLY file ({e}); pass a 3DGS .ply file") from None
    if "vertex" not in ply:
        raise UserError(f"{path}: PLY has no 'vertex' element, so it is not a 3DGS file")
    v = ply["vertex"].data
    names = set(v.dtype.names or ())
    n_rest = sum(1 for s in names if s.startswith("f_rest_"))
    k = n_rest // 3 + 1
    required = [s for s in gaussian_ply_attributes(_SH_DEGREE.get(k, 0)) if s not in ("nx", "ny", "nz")]
    missing = [s for s in required if s not in names]
    if missing:
        shown = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
        raise UserError(f"{path}: not a 3DGS PLY, vertex attributes missing: {shown} "
                        "(a plain point cloud or mesh PLY cannot be loaded as Gaussians)")
    if n_rest % 3 or k not in _SH_DEGREE:
        raise UserError(f"{path}: {n_rest} f_rest_* attributes; a 3DGS PLY has 0, 9, 24 or 45 (SH degree 0..3)")

    if len(v) == 0:
        raise UserError(f"{path}: the PLY holds 0 Gaussians; pass a 3DGS file with at least one")
    retyped = [s for s in required + [f"f_rest_{i}" for i in range(n_rest)] if v.dtype[s].kind != "f"]
    if retyped:
        raise UserError(f"{path}: 3DGS attributes must be float or double, {retyped[0]} is {v.dtype[retyped[0]]}")

    def col(*keys: str) -> np.ndarray:
        return np.stack([np.asarray(v[s], dtype=np.float32) for s in keys], axis=1)

    rest = col(*[f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.zeros((len(v), 0), np.float32)
    sh = np.concatenate([col("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
                         rest.reshape(len(v), 3, k - 1).transpose(0, 2, 1)], axis=1)  # [N, K, 3]
    g = GaussianPLY(
        means=col("x", "y", "z"),
        sh=sh,
        opacity_logits=np.asarray(v["opacity"], dtype=np.float32),
        log_scales=col("scale_0", "scale_1", "scale_2"),
        quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
    )
    _check_finite(path, g)
    if plausible:
        check_plausible_gaussians(path, g)
    return g


def _check_finite(path: str | os.PathLike, g: GaussianPLY) -> None:
    for name in ("means", "sh", "opacity_logits", "log_scales", "quats"):
        bad = int((~np.isfinite(getattr(g, name))).reshape(g.num, -1).any(1).sum())
        if bad:
            raise UserError(f"{path}: {bad} of {g.num} Gaussians have NaN or infinite {name}; the file is corrupt "
                            "(or its header names the wrong byte order)")


def check_plausible_gaussians(path: str | os.PathLike, g: GaussianPLY) -> None:
    """Refuse log-scales whose exp under/overflows float32 and zero-length rotations. A body read with the wrong
    byte order (a ``binary_big_endian`` header on little-endian data) lands here: its floats come out as NaN, huge
    or denormal numbers, so its quaternions are near zero."""
    big = float(np.abs(g.log_scales).max())
    if big > 80:  # exp(+-88) is the float32 limit; real splats sit within about [-15, 5]
        raise UserError(f"{path}: log-scales up to {big:.3g} in magnitude, outside float32's exp range; the file is "
                        "corrupt (or its header names the wrong byte order)")
    qn = np.linalg.norm(g.quats.astype(np.float64), axis=1)
    if (qn < 1e-12).any():
        raise UserError(f"{path}: {int((qn < 1e-12).sum())} Gaussians have a zero rotation quaternion; the file is "
                        "corrupt (or its header names the wrong byte order)")


def write_point_ply(path: str | os.PathLike,
                    points: Any,  # [N, 3] float
                    colors: Any = None,  # [N, 3] uint8, or float in [0, 1]
                    ) -> Path:
    """Write a coloured point cloud (x, y, z float32; red, green, blue uchar), readable by plyfile/trimesh/MeshLab."""
    pts = _f32(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"write_point_ply: points must be [N, 3], got {pts.shape}")
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    types = {"x": "float", "y": "float", "z": "float", "red": "uchar", "green": "uchar", "blue": "uchar"}
    rgb = None
    if colors is not None:
        from latent3d.io.image import _to_numpy

        c, _ = _to_numpy(colors)
        if c.shape != pts.shape:
            raise ValueError(f"write_point_ply: colors must be [N, 3] like points {pts.shape}, got {c.shape}")
        rgb = c if c.dtype == np.uint8 else (np.asarray(c, np.float32).clip(0, 1) * 255).round().astype(np.uint8)
        dtype += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(pts), dtype=dtype)
    for i, s in enumerate("xyz"):
        data[s] = pts[:, i]
    if rgb is not None:
        for i, s in enumerate(("red", "green", "blue")):
            data[s] = rgb[:, i]
    return _write_vertices(path, data, types)
