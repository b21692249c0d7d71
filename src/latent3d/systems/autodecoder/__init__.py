"""3DVADER (Ntavelis et al. 2023, "AutoDecoding Latent 3D Diffusion Models", arXiv 2307.05445).

Stage 1, the autodecoder: ``config`` (settings, torch-free), ``decoder`` (embedding -> G1 -> 8^3 latent volume -> G2 ->
radiance grid), ``losses`` (pyramidal reconstruction and foreground loss), ``cameras`` (learnable pose corrections),
``train`` (training on posed views with the shared trainer, held-out evaluation, export), ``command``
(``latent3d train autodecoder``). The reusable parts live in :mod:`latent3d.nets` (embeddings, 3D blocks) and
:mod:`latent3d.render.volume`.
"""
