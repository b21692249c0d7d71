"""LucidDreamer (Liang et al. 2023, arXiv 2311.11284): text -> 3D Gaussian splats by Interval Score Matching.

``dream`` (cameras, view prompts, one distillation step, the optimisation loop), ``export`` (what ``dream`` writes
and its ground-truth score), ``command`` (``latent3d dream``). The objectives live in :mod:`latent3d.distill`."""
