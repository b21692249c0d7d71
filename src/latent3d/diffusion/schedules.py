"""Noise schedules and conversions between parameterisations.

Two views of the same Gaussian corruption are used across latent3d:

* **discrete VP** (DDPM, Ho et al. 2020; DDIM, Song et al. 2021): ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` with
  ``a_t = alpha_bar_t = prod_{i<=t} (1 - beta_i)`` for integer ``t in [0, T)``;
* **continuous VE / EDM** (Karras et al. 2022, Table 1): ``x = x0 + sigma eps``.

They are related by ``x_VE = x_VP / sqrt(a)`` and ``sigma = sqrt((1 - a) / a)`` (Karras et al. 2022, Sec. 2 and
Appendix C.1; DDIM, Song et al. 2021, eq. 14). ``eps`` is the same in both views.

All conversion functions broadcast: ``alpha_bar`` may be a Python float, a 0-dim tensor or a tensor that broadcasts
against ``x_t`` (e.g. ``[B, 1, 1, 1]``); use :func:`expand_like` to turn a per-sample ``[B]`` vector into that shape.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "BetaSchedule",
    "PredictionType",
    "alphas_cumprod",
    "karras_sigmas",
    "sigma_to_alpha_bar",
    "alpha_bar_to_sigma",
    "expand_like",
    "eps_to_x0",
    "x0_to_eps",
    "v_to_eps",
    "v_to_x0",
    "eps_to_v",
    "x0_to_v",
    "to_eps_x0",
]

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
PredictionType = Literal["epsilon", "v_prediction", "sample"]


def alphas_cumprod(
    kind: BetaSchedule = "scaled_linear",
    T: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    max_beta: float = 0.999,
) -> Tensor:  # [T] float64
    """Cumulative products ``alpha_bar_t = prod_{i<=t} (1 - beta_i)``, ``t = 0 .. T-1`` (DDPM, Ho et al. 2020, Sec. 2).

    Matches diffusers' ``DDPMScheduler`` / ``DDIMScheduler(beta_schedule=kind, beta_start, beta_end)`` betas:

    * ``"linear"``: ``beta = linspace(beta_start, beta_end, T)`` (DDPM);
    * ``"scaled_linear"``: ``beta = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2`` (latent diffusion / Stable
      Diffusion; the default arguments are SD's);
    * ``"squaredcos_cap_v2"``: the cosine schedule of Nichol & Dhariwal 2021, eq. 17, with
      ``beta_t = min(1 - f(t+1)/f(t), max_beta)`` and ``f(t) = cos((t/T + 0.008)/1.008 * pi/2)^2``
      (``beta_start``/``beta_end`` are ignored, as in diffusers).

    Computed in float64 (diffusers uses float32; the two agree to ~1e-6). Cast with ``.float()`` where needed.
    """
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":

        def f(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor(
            [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=torch.float64
        )
    else:
        raise ValueError(f"unknown beta schedule {kind!r}; use 'linear', 'scaled_linear' or 'squaredcos_cap_v2'")
    return torch.cumprod(1.0 - betas, dim=0)


def karras_sigmas(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # [n + 1], decreasing, last entry 0
    """Noise levels of Karras et al. 2022, eq. 5 (Table 1, "EDM" column), with a trailing zero.

    ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`` for ``i = 0..n-1`` and
    ``sigma_n = 0``, exactly as k-diffusion's ``get_sigmas_karras`` (``n`` noise levels + the final 0).
    """
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    sigmas = torch.cat([sigmas, sigmas.new_zeros([1])])
    return sigmas.to(device=device, dtype=dtype)


def sigma_to_alpha_bar(sigma: Tensor | float) -> Tensor | float:
    """``alpha_bar = 1 / (1 + sigma^2)``, the inverse of :func:`alpha_bar_to_sigma` (Karras et al. 2022, App. C.1)."""
    return 1.0 / (1.0 + sigma**2)


def alpha_bar_to_sigma(alpha_bar: Tensor | float) -> Tensor | float:
    """``sigma = sqrt((1 - alpha_bar) / alpha_bar)``: VP level -> VE/EDM level (Song et al. 2021, eq. 14)."""
    return ((1.0 - alpha_bar) / alpha_bar) ** 0.5


def expand_like(
    v: Tensor | float,  # [] or [B]
    x: Tensor,  # [B, ...]
) -> Tensor | float:  # [] or [B, 1, ..., 1]
    """Reshape a per-sample vector ``[B]`` to ``[B, 1, ..., 1]`` so that it broadcasts against ``x``."""
    if isinstance(v, Tensor) and v.ndim == 1:
        return v.reshape(-1, *([1] * (x.ndim - 1)))
    return v


def eps_to_x0(
    x_t: Tensor,  # [B, ...]
    eps: Tensor,  # [B, ...]
    alpha_bar: Tensor | float,  # [] or broadcastable to x_t
) -> Tensor:  # [B, ...]
    """``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)`` ("predicted x0", DDIM, Song et al. 2021, eq. 9/12)."""
    return (x_t - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5


def x0_to_eps(
    x_t: Tensor,  # [B, ...]
    x0: Tensor,  # [B, ...]
    alpha_bar: Tensor | float,  # [] or broadcastable to x_t
) -> Tensor:  # [B, ...]
    """``eps = (x_t - sqrt(a) x0) / sqrt(1 - a)`` (inverse of DDIM eq. 9; undefined at ``a = 1``)."""
    return (x_t - alpha_bar**0.5 * x0) / (1 - alpha_bar) ** 0.5


def v_to_eps(
    x_t: Tensor,  # [B, ...]
    v: Tensor,  # [B, ...]
    alpha_bar: Tensor | float,  # [] or broadcastable to x_t
) -> Tensor:  # [B, ...]
    """``eps = sqrt(a) v + sqrt(1 - a) x_t`` for ``v = sqrt(a) eps - sqrt(1 - a) x0``
    (Salimans & Ho 2022, "Progressive distillation", Sec. 4 / App. D)."""
    return alpha_bar**0.5 * v + (1 - alpha_bar) ** 0.5 * x_t


def v_to_x0(
    x_t: Tensor,  # [B, ...]
    v: Tensor,  # [B, ...]
    alpha_bar: Tensor | float,  # [] or broadcastable to x_t
) -> Tensor:  # [B, ...]
    """``x0 = sqrt(a) x_t - sqrt(1 - a) v`` (Salimans & Ho 2022, Sec. 4)."""
    return alpha_bar**0.5 * x_t - (1 - alpha_bar) ** 0.5 * v


def eps_to_v(
    x_t: Tensor,  # [B, ...]
    eps: Tensor,  # [B, ...]
    alpha_bar: Tensor | float,  # [] or broadcastable to x_t
) -> Tensor:  # [B, ...]
    """``v = (eps - sqrt(1 - a) x_t) / sqrt(a)`` (inverse of :func:`v_to_eps`; Salimans & Ho 2022, Sec. 4)."""
    return (eps - (1 - alpha_bar) ** 0.5 * x_t) / alpha_bar**0.5


def x0_to_v(
    x_t: Tensor,  # [B, ...]
    x0: Tensor,  # [B, ...]
    alpha_bar: Tensor | float,  # [] or broadcastable to x_t
) -> Tensor:  # [B, ...]
    """``v = (sqrt(a) x_t - x0) / sqrt(1 - a)`` (inverse of :func:`v_to_x0`; Salimans & Ho 2022, Sec. 4)."""
    return (alpha_bar**0.5 * x_t - x0) / (1 - alpha_bar) ** 0.5


def to_eps_x0(
    x_t: Tensor,  # [B, ...]
    model_output: Tensor,  # [B, ...]
    alpha_bar: Tensor | float,  # [] or broadcastable to x_t
    prediction_type: PredictionType = "epsilon",
) -> tuple[Tensor, Tensor]:  # eps [B, ...], x0 [B, ...]
    """Both ``(eps, x0)`` from a model output of any parameterisation (diffusers names: ``"epsilon"``,
    ``"v_prediction"``, ``"sample"``), using DDIM eq. 9 and Salimans & Ho 2022 Sec. 4."""
    if prediction_type == "epsilon":
        return model_output, eps_to_x0(x_t, model_output, alpha_bar)
    if prediction_type == "v_prediction":
        return v_to_eps(x_t, model_output, alpha_bar), v_to_x0(x_t, model_output, alpha_bar)
    if prediction_type == "sample":
        return x0_to_eps(x_t, model_output, alpha_bar), model_output
    raise ValueError(f"unknown prediction_type {prediction_type!r}; use 'epsilon', 'v_prediction' or 'sample'")
