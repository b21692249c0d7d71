"""How a depth panorama is read when it displaces the sphere of a DepthFusion world (LDM3D, arXiv 2305.10853,
Sec. 5; :mod:`latent3d.render.sphere`); importing this module loads no torch, so the command line takes its choices
from here."""

from __future__ import annotations

from typing import Literal

DisplacementMode = Literal["disparity", "linear"]  # depth in [0, 1]: 1/r linear in it (LDM3D/DPT), or r linear
DepthMode = Literal[DisplacementMode, "metric"]  # or metric distance along the ray
