"""Procedural ground truth: analytic renders of named objects and scenes, captions, transforms.json datasets.

Modules: ``primitives`` (shapes + ray casting), ``shading`` (materials, textures, lights, sky), ``raycast``
(pinhole / equirect renders), ``objects`` (named objects), ``scenes`` (floors, rooms, outdoor places),
``captions``, ``dataset`` (transforms.json writer/reader), ``generate`` (render + write datasets),
``multiview_config`` (settings of a multi-view object set, torch-free) and ``multiview`` (SRN / transforms.json
multi-view object datasets, written and read), ``rgbd`` (procedural RGBD sets with captions), ``rgbd_builder``
(RGBD pairs from real captioned images and a depth model), ``command`` (``latent3d data ...``).
Importing this package loads nothing heavy: each name below loads its module (torch, numpy) on first use, so
that the command line can import ``latent3d.data.command`` quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "caption": "captions", "scene_caption": "captions", "view_bin": "captions",
    "TransformsDataset": "dataset", "read_transforms_dataset": "dataset", "write_transforms_dataset": "dataset",
    "object_views": "generate", "write_object_dataset": "generate", "write_scene_dataset": "generate",
    "OBJECT_NAMES": "objects", "Object3D": "objects", "make_object": "objects",
    "Render": "raycast", "render_equirect": "raycast", "render_orbit": "raycast", "render_views": "raycast",
    "PLACES": "scenes", "SCENE_KINDS": "scenes", "Scene": "scenes", "make_scene": "scenes", "scene_cameras": "scenes",
    "COLORS": "shading", "Light": "shading", "Material": "shading", "Sky": "shading",
}  # fmt: skip
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"latent3d.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
