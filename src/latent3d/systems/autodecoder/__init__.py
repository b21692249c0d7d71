"""3DVADER (Ntavelis et al. 2023, "AutoDecoding Latent 3D Diffusion Models", arXiv 2307.05445), laid out as the paper:
``stage1`` (the volumetric autodecoder: posed views -> a latent volume per object), ``stage2`` (latent diffusion over
those volumes), ``generate`` (text -> latent volumes -> radiance grids and their views, turntable, mesh, Gaussians).
``config`` holds the settings of all three (torch-free), ``command`` their commands. The reusable parts live in
:mod:`latent3d.nets` (embeddings, 3D blocks, the 3D UNet), :mod:`latent3d.render.volume` (ray marching grids) and
:mod:`latent3d.diffusion` (EDM)."""
