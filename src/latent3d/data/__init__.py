"""Procedural ground truth: analytic renders of named objects and scenes, captions, transforms.json datasets.

Modules: ``primitives`` (shapes + ray casting), ``shading`` (materials, textures, lights, sky), ``raycast``
(pinhole / equirect renders), ``objects`` (named objects), ``scenes`` (floors, rooms, outdoor places),
``captions``, ``dataset`` (transforms.json writer/reader), ``generate`` (render + write datasets).
Importing this package loads torch and numpy only (PIL is imported inside the I/O functions).
"""

from latent3d.data.captions import caption, scene_caption, view_bin
from latent3d.data.dataset import TransformsDataset, read_transforms_dataset, write_transforms_dataset
from latent3d.data.generate import object_views, write_object_dataset, write_scene_dataset
from latent3d.data.objects import OBJECT_NAMES, Object3D, make_object
from latent3d.data.raycast import Render, render_equirect, render_orbit, render_views
from latent3d.data.scenes import PLACES, SCENE_KINDS, Scene, make_scene, scene_cameras
from latent3d.data.shading import COLORS, Light, Material, Sky

__all__ = [
    "COLORS", "Light", "Material", "OBJECT_NAMES", "Object3D", "PLACES", "Render", "SCENE_KINDS", "Scene", "Sky",
    "TransformsDataset", "caption", "make_object", "make_scene", "object_views", "read_transforms_dataset",
    "render_equirect", "render_orbit", "render_views", "scene_cameras", "scene_caption", "view_bin",
    "write_object_dataset", "write_scene_dataset", "write_transforms_dataset",
]
