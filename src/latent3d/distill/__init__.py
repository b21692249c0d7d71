"""Score distillation objectives over any :class:`~latent3d.priors.base.DiffusionPrior`: SDS and ISM."""

from .common import distillation_loss, noise_latents
from .ism import ISMSettings, ism_grad, ism_timestep
from .sds import SDSSettings, sds_grad, sds_timestep

__all__ = ["ISMSettings", "SDSSettings", "distillation_loss", "ism_grad", "ism_timestep", "noise_latents",
           "sds_grad", "sds_timestep"]
