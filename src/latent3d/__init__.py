"""latent3d: 3D generation with latent diffusion on one shared core.

Importing the package is cheap: only torch and numpy are imported at top level; diffusers, transformers,
trimesh, imageio and friends are imported inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
