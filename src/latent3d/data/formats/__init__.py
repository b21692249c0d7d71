"""Datasets on disk: the readers and writers of the formats users bring (and latent3d writes).

Modules: ``transforms_json`` (nerfstudio / NeRF-blender ``transforms.json`` posed-image datasets), ``multiview``
(multi-view object datasets: SRN / pixelNeRF and transforms.json object folders, ``ObjectViews``), ``rgbd``
(latent3d's captioned RGBD set layout, ``RGBDSet``), ``rgbd_builder`` (RGBD pairs from real captioned images and
a monocular depth model) and ``gsn`` (GSN's published VizDoom / Replica episodes, read as posed RGB-D datasets).
Every camera a reader reads passes :mod:`latent3d.render.camera_checks` (the transforms.json and SRN writers check
theirs before writing anything); every problem of a file is one :class:`~latent3d.errors.UserError` line. Nothing
here imports :mod:`latent3d.data.procedural` or :mod:`latent3d.data.recorders`. Importing this package imports none
of its modules.
"""
