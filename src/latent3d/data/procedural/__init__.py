"""Procedural ground truth: latent3d's own analytic renders of named objects and scenes, with exact depth, masks
and captions, and the training sets made of them.

Modules: ``primitives`` (analytic shapes and vectorised ray casting against them), ``shading`` (materials,
procedural textures, lights, sky, the shading model), ``raycast`` (pinhole / equirectangular renders), ``objects``
(named objects), ``scenes`` (objects on floors, rooms, outdoor places), ``captions`` (object + colour + view, scene
descriptions), ``generate`` (posed, captioned views of objects / scenes written as transforms.json datasets),
``object_sets`` (multi-view object sets for 3DVADER: render, check the settings, write), ``object_sets_config``
(their settings and the object renders' field of view; torch-free) and ``rgbd_sets`` (captioned RGBD sets for
LDM3D, perspective and 360°).

Sets are written in the layouts of :mod:`latent3d.data.formats`. Importing this package imports none of its modules.
"""
