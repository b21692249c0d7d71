"""Model-agnostic diffusion math shared by every latent3d system.

* :mod:`.schedules` -- alpha_bar schedules (DDPM/LDM/cosine), Karras sigmas, eps/x0/v conversions;
* :mod:`.ddpm` -- the DDPM training loss (eps / v / x0 targets, constant or min-SNR weighting) and ``DDPMLoss``, its configured form;
* :mod:`.ddim` -- DDIM step between any two timesteps, sampling, inversion (LucidDreamer ISM schedule);
* :mod:`.edm` -- EDM preconditioning (a function and the ``EDMPrecond`` module), the loss (``EDMLoss``),
  Euler/Heun samplers (k-diffusion signature);
* :mod:`.guidance` -- classifier-free and negative guidance;
* :mod:`.noise_levels` -- fitting EDM's noise levels (sigma_data, P_mean / P_std) to the data.

Only torch, numpy and tqdm are imported here (no diffusers).
"""

from .ddim import (
    DDIMInversion,
    ddim_invert,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ism_inversion_schedule,
)
from .ddpm import DDPMLoss, ddpm_loss, ddpm_target, loss_weight, q_sample
from .edm import (
    EDMLoss,
    EDMPrecond,
    edm_denoise,
    edm_loss,
    edm_loss_weight,
    edm_precond,
    edm_sample_sigma,
    sample_euler,
    sample_heun,
    to_d,
)
from .guidance import CFGModel, cfg, cfg_batched
from .schedules import (
    alpha_bar_to_sigma,
    alphas_cumprod,
    eps_to_v,
    eps_to_x0,
    expand_like,
    karras_sigmas,
    sigma_to_alpha_bar,
    to_eps_x0,
    v_to_eps,
    v_to_x0,
    x0_to_eps,
    x0_to_v,
)

__all__ = [
    "CFGModel",
    "DDIMInversion",
    "DDPMLoss",
    "EDMLoss",
    "EDMPrecond",
    "alpha_bar_to_sigma",
    "alphas_cumprod",
    "cfg",
    "cfg_batched",
    "ddim_invert",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_loss",
    "ddpm_target",
    "edm_denoise",
    "edm_loss",
    "edm_loss_weight",
    "edm_precond",
    "edm_sample_sigma",
    "eps_to_v",
    "eps_to_x0",
    "expand_like",
    "ism_inversion_schedule",
    "karras_sigmas",
    "loss_weight",
    "q_sample",
    "sample_euler",
    "sample_heun",
    "sigma_to_alpha_bar",
    "to_d",
    "to_eps_x0",
    "v_to_eps",
    "v_to_x0",
    "x0_to_eps",
    "x0_to_v",
]
