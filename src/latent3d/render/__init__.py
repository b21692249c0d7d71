"""Rendering and cameras.

``camera`` (the one camera convention, orbit / turntable / look-at cameras, pixel rays), ``camera_checks`` (every
camera read or written is checked here), ``project`` (EWA projection of Gaussians, tile assignment), ``rasterize``
(tile rasterization of 3D Gaussians, gsplat when present), ``sh`` (spherical harmonics), ``gaussians`` (3D Gaussians
as parameters), ``densify`` (3DGS adaptive density control), ``fusion`` (TSDF fusion of rendered depth into a mesh),
``depth_modes`` and ``sphere`` (DepthFusion's displaced sphere), ``stereo`` (omnidirectional stereo and
perspective views of it), ``volume`` (volume rendering of voxel grids), ``grid_assets`` (mesh, points and splats
from a radiance grid).
"""
