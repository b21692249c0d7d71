"""Triangle meshes to GLB / OBJ / PLY through trimesh, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from latent3d.io.atomic import write_bytes
from latent3d.io.image import _to_numpy, to_uint8_image

_FORMATS = (".glb", ".obj", ".ply")


def build_trimesh(vertices: Any,  # [V, 3] float
                  faces: Any,  # [F, 3] int
                  vertex_colors: Any = None,  # [V, 3 | 4] uint8, or float in [0, 1]
                  uv: Any = None,  # [V, 2] float, origin bottom-left (OpenGL / OBJ / trimesh convention)
                  texture: Any = None,  # [H, W, 3] uint8 (row 0 = top of the image)
                  name: str = "material"):
    """A ``trimesh.Trimesh`` (``process=False``: vertex order and count are kept) with colours or a PBR texture."""
    import trimesh
    from PIL import Image

    v = _to_numpy(vertices)[0].astype(np.float64)
    f = _to_numpy(faces)[0].astype(np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"export_mesh: vertices must be [V, 3] and faces [F, 3], got {v.shape} and {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"export_mesh: face indices must be in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    if (uv is None) != (texture is None):
        raise ValueError("export_mesh: uv and texture must be given together")
    if texture is not None and vertex_colors is not None:
        raise ValueError("export_mesh: give either vertex_colors or uv + texture, not both")

    visual = None
    if vertex_colors is not None:
        c, _ = _to_numpy(vertex_colors)
        if c.shape not in ((len(v), 3), (len(v), 4)):
            raise ValueError(f"export_mesh: vertex_colors must be [V, 3|4] with V={len(v)}, got {c.shape}")
        if c.dtype != np.uint8:
            c = (np.asarray(c, np.float32).clip(0, 1) * 255).round().astype(np.uint8)
        visual = trimesh.visual.ColorVisuals(vertex_colors=c)
    elif texture is not None:
        t = _to_numpy(uv)[0].astype(np.float64)
        if t.shape != (len(v), 2):
            raise ValueError(f"export_mesh: uv must be [V, 2] with V={len(v)}, got {t.shape}")
        img = Image.fromarray(to_uint8_image(texture))
        material = trimesh.visual.material.PBRMaterial(name=name, baseColorTexture=img,
                                                       metallicFactor=0.0, roughnessFactor=1.0)
        visual = trimesh.visual.TextureVisuals(uv=t, material=material)
    return trimesh.Trimesh(vertices=v, faces=f, visual=visual, process=False)


def z_up_to_y_up(points: Any) -> Any:  # [..., 3] NumPy or torch -> the same type
    """latent3d world (z up) to glTF (y up, right-handed): ``(x, y, z) -> (x, z, -y)``, a -90 deg turn about x."""
    if isinstance(points, np.ndarray):
        return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)
    import torch

    return torch.stack([points[..., 0], points[..., 2], -points[..., 1]], dim=-1)


def export_mesh(path: str | os.PathLike,
                vertices: Any,  # [V, 3] float
                faces: Any,  # [F, 3] int
                vertex_colors: Any = None,  # [V, 3 | 4] uint8, or float in [0, 1]
                uv: Any = None,  # [V, 2] float in [0, 1], v up (OpenGL convention; trimesh flips it for glTF)
                texture: Any = None,  # [H, W, 3] uint8
                ) -> Path:
    """Write a mesh given in latent3d's z-up world; the format comes from the suffix: ``.glb`` (turned to glTF's
    y-up with :func:`z_up_to_y_up`, so that Blender and glTF viewers show it upright; texture embedded as PBR
    baseColorTexture),
    ``.obj`` (a textured OBJ also writes ``<stem>.mtl`` and its texture PNG beside it; OBJ vertex colours have
    no alpha) or ``.ply`` (vertex colours only).

    Every file is written atomically. Returns the path of the main file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"export_mesh: unsupported suffix {path.suffix!r}; use one of {', '.join(_FORMATS)}")
    if suffix == ".ply" and texture is not None:
        raise ValueError("export_mesh: PLY cannot carry a texture image; use .glb or .obj, or pass vertex_colors")
    if suffix == ".glb":
        vertices = z_up_to_y_up(_to_numpy(vertices)[0].astype(np.float64))
    mesh = build_trimesh(vertices, faces, vertex_colors, uv, texture, name=path.stem)
    if suffix == ".obj":
        from trimesh.exchange.obj import export_obj

        text, extra = export_obj(mesh, include_texture=True, return_texture=True, mtl_name=f"{path.stem}.mtl")
        for fname, data in extra.items():  # the .mtl and its texture image(s), next to the OBJ
            write_bytes(path.parent / fname, data)
        write_bytes(path, text.encode("utf-8"))  # last: an OBJ on disk always has its side files
        return path
    data = mesh.export(file_type=suffix[1:])  # bytes for glb / binary ply
    return write_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"))
