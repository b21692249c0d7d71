"""Data: latent3d's own procedural ground truth, recordings from a real engine, and the dataset formats users bring,
in three rooms.

- :mod:`latent3d.data.procedural`: what latent3d makes itself -- ``primitives`` (shapes + ray casting), ``shading``
  (materials, textures, lights, sky), ``raycast`` (pinhole / equirect renders), ``objects`` (named objects),
  ``scenes`` (floors, rooms, outdoor places), ``captions``, ``generate`` (render + write transforms.json datasets),
  ``object_sets`` (multi-view object sets: render + write, their settings check), ``object_sets_config`` (their
  settings, torch-free), ``rgbd_sets`` (captioned RGBD sets, perspective and 360°).
- :mod:`latent3d.data.formats`: the readers and writers of datasets on disk -- ``transforms_json`` (nerfstudio
  transforms.json; ``write_episode``, the one writer of posed RGB-D episode folders), ``multiview`` (SRN / pixelNeRF
  and transforms.json object folders), ``rgbd`` (latent3d's RGBD set layout), ``rgbd_builder`` (RGBD pairs from real
  captioned images and a depth model), ``gsn`` (GSN's published VizDoom / Replica episodes).
- :mod:`latent3d.data.recorders`: data recorded from a real engine -- ``vizdoom`` (an exploring agent's posed RGB-D
  trajectories in VizDoom, NF-LDM's VizDoom data; the optional ``vizdoom`` package), ``vizdoom_config`` (its
  settings and install check, torch-free).
- ``command`` (``latent3d data ...``).

The procedural and recorders rooms write through the formats room; the formats room imports neither.
Importing this package loads nothing heavy: each name below loads its module (torch, numpy) on first use, so
that the command line can import ``latent3d.data.command`` quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "caption": "procedural.captions", "scene_caption": "procedural.captions", "view_bin": "procedural.captions",
    "TransformsDataset": "formats.transforms_json", "read_transforms_dataset": "formats.transforms_json",
    "write_transforms_dataset": "formats.transforms_json",
    "object_views": "procedural.generate", "write_object_dataset": "procedural.generate",
    "write_scene_dataset": "procedural.generate",
    "OBJECT_NAMES": "procedural.objects", "Object3D": "procedural.objects", "make_object": "procedural.objects",
    "Render": "procedural.raycast", "render_equirect": "procedural.raycast", "render_orbit": "procedural.raycast",
    "render_views": "procedural.raycast",
    "PLACES": "procedural.scenes", "SCENE_KINDS": "procedural.scenes", "Scene": "procedural.scenes",
    "make_scene": "procedural.scenes", "scene_cameras": "procedural.scenes",
    "COLORS": "procedural.shading", "Light": "procedural.shading", "Material": "procedural.shading",
    "Sky": "procedural.shading",
}  # fmt: skip
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"latent3d.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
