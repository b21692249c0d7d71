"""EDM: "Elucidating the Design Space of Diffusion-Based Generative Models" (Karras et al. 2022, NVlabs/edm).

VE view ``x = x0 + sigma n``. The network ``F`` is wrapped by the preconditioning of Table 1 into a denoiser
``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` (eq. 7; :func:`edm_denoise`, or the module
:class:`EDMPrecond` around a network), trained with the weighted loss of eq. 8 at log-normal
noise levels, and sampled by Heun's 2nd-order method with optional churn (Alg. 2). Samplers follow k-diffusion's
signature ``(model, x, sigmas, extra_args=None, callback=None, disable=None, ...)`` where ``model(x, sigma [B])``
returns the denoised ``D(x, sigma)`` and ``sigmas`` ends with 0 (see
:func:`~latent3d.diffusion.schedules.karras_sigmas`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import trange

from .schedules import expand_like

__all__ = [
    "EDMLoss",
    "EDMPrecond",
    "edm_precond",
    "edm_denoise",
    "edm_loss_weight",
    "edm_sample_sigma",
    "edm_loss",
    "to_d",
    "sample_euler",
    "sample_heun",
]


def edm_precond(
    sigma: Tensor,  # any shape
    sigma_data: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # c_skip, c_out, c_in, c_noise, each sigma's shape
    """Preconditioning of Karras et al. 2022, Table 1 ("Ours") / Appendix B.6:
    ``c_skip = sd^2/(s^2+sd^2)``, ``c_out = s sd/sqrt(s^2+sd^2)``, ``c_in = 1/sqrt(s^2+sd^2)``, ``c_noise = ln(s)/4``."""
    sigma = torch.as_tensor(sigma)
    var = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / var
    c_out = sigma * sigma_data / var.sqrt()
    c_in = 1 / var.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_denoise(
    net: Callable[..., Tensor],
    x: Tensor,  # [B, ...] noisy input x0 + sigma n
    sigma: Tensor | float,  # [], [B] (or [B, 1, ..., 1])
    sigma_data: float = 0.5,
    **net_kwargs: Any,
) -> Tensor:  # [B, ...] denoised D(x, sigma)
    """``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` (Karras et al. 2022, eq. 7 and Table 1; NVlabs
    ``EDMPrecond.forward``). ``F`` is called as ``net(c_in x, c_noise [B], **net_kwargs)``; the result is in
    ``x``'s dtype promoted to at least float32."""
    dtype = torch.promote_types(x.dtype, torch.float32)  # coefficients in >= float32, as NVlabs
    sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1)
    sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
    c_skip, c_out, c_in, c_noise = (expand_like(c, x) for c in edm_precond(sigma, sigma_data))
    f = net((c_in * x).to(x.dtype), c_noise.flatten(), **net_kwargs)
    return c_skip * x.to(dtype) + c_out * f.to(dtype)


class EDMPrecond(nn.Module):
    """A network ``F`` wrapped into the denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise, **cond)``
    (Karras et al. 2022, eq. 7 and Table 1; NVlabs ``training/networks.py: EDMPrecond``), by :func:`edm_denoise`.

    ``F`` is any module (or function) called as ``net(c_in x, c_noise [B], **cond)`` that returns ``x``'s shape, for
    inputs of any rank (images ``[B, C, H, W]``, 3DVADER's latent volumes ``[B, C, D, H, W]``). ``forward(x, sigma
    [B] or [], **cond)`` returns ``D(x; sigma)``: the ``model`` of :func:`sample_euler` / :func:`sample_heun`
    (``cond`` in their ``extra_args``) and, with ``precond=False``, the ``net`` of :func:`edm_loss`. Being a module,
    it carries ``F``'s parameters (optimiser, EMA, checkpoints see them under ``net.``).
    """

    def __init__(self, net: nn.Module | Callable[..., Tensor], sigma_data: float = 0.5):
        super().__init__()
        self.net, self.sigma_data = net, float(sigma_data)

    def forward(
        self,
        x: Tensor,  # [B, ...] noisy input x0 + sigma n
        sigma: Tensor | float,  # [], [B]
        **cond: Any,  # passed to net, e.g. cond=class or text embedding
    ) -> Tensor:  # [B, ...] D(x; sigma)
        return edm_denoise(self.net, x, sigma, self.sigma_data, **cond)


def edm_loss_weight(
    sigma: Tensor,  # any shape
    sigma_data: float = 0.5,
) -> Tensor:  # sigma's shape
    """Loss weight ``lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2`` (Karras et al. 2022, Table 1,
    Sec. 5 "Loss weighting"), which makes the effective target of ``F`` have unit weight."""
    sigma = torch.as_tensor(sigma)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_sample_sigma(
    shape: tuple[int, ...] | torch.Size,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:  # shape
    """Training noise levels ``ln(sigma) ~ N(P_mean, P_std^2)`` (Karras et al. 2022, Table 1, Sec. 5)."""
    dev = generator.device if generator is not None else device
    rnd = torch.randn(shape, generator=generator, device=dev, dtype=dtype)
    return (rnd * P_std + P_mean).exp().to(device)


def edm_loss(
    net: Callable[..., Tensor],
    x0: Tensor,  # [B, ...] clean data
    sigma_data: float = 0.5,
    generator: torch.Generator | None = None,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    precond: bool = True,
    reduction: Literal["mean", "none"] = "mean",
    **net_kwargs: Any,
) -> Tensor:  # [] or [B, ...]
    """EDM training loss ``lambda(s) ||D(x0 + s n, s) - x0||^2`` with ``ln s ~ N(P_mean, P_std^2)``
    (Karras et al. 2022, eq. 8 and Table 1; NVlabs ``EDMLoss``; same order of random draws: sigma then n).

    ``net`` is the raw network ``F`` (wrapped by :func:`edm_denoise`), or already a denoiser ``D(x, sigma [B])``
    if ``precond=False``. ``reduction="none"`` returns the per-element loss like NVlabs (which then sums and divides
    by the batch size); ``"mean"`` averages over all elements.
    """
    b = x0.shape[0]
    dev = generator.device if generator is not None else x0.device
    sigma = edm_sample_sigma((b,), P_mean, P_std, generator, device=dev).to(x0.device)  # [B]
    n = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype).to(x0.device)
    y = x0 + expand_like(sigma, x0) * n
    d = edm_denoise(net, y, sigma, sigma_data, **net_kwargs) if precond else net(y, sigma, **net_kwargs)
    loss = expand_like(edm_loss_weight(sigma, sigma_data), x0) * (d - x0) ** 2
    return loss.mean() if reduction == "mean" else loss


@dataclass
class EDMLoss:
    """EDM's loss as a configured object (NVlabs ``training/loss.py: EDMLoss``): the data's ``sigma_data`` and the
    training noise levels ``ln sigma ~ N(P_mean, P_std^2)`` are set once, and ``loss(net, x0 [B, ...], generator,
    **cond) -> []`` is :func:`edm_loss` (Karras et al. 2022, eq. 8) of the raw network ``F`` under the
    preconditioning of this ``sigma_data`` -- the one that :class:`EDMPrecond` applies at sampling time."""

    sigma_data: float = 0.5
    P_mean: float = -1.2
    P_std: float = 1.2

    def __call__(self, net: Callable[..., Tensor], x0: Tensor, generator: torch.Generator | None = None,
                 **cond: Any) -> Tensor:  # fmt: skip
        return edm_loss(net, x0, self.sigma_data, generator, self.P_mean, self.P_std, **cond)

    def precond(self, net: nn.Module | Callable[..., Tensor]) -> EDMPrecond:
        """The denoiser ``D`` that ``net`` (``F``) was trained to be under this loss."""
        return EDMPrecond(net, self.sigma_data)


def to_d(
    x: Tensor,  # [B, ...]
    sigma: Tensor | float,  # [] or [B]
    denoised: Tensor,  # [B, ...]
) -> Tensor:  # [B, ...]
    """ODE derivative ``dx/dsigma = (x - D(x, sigma)) / sigma`` (Karras et al. 2022, eq. 3 with sigma(t) = t)."""
    return (x - denoised) / expand_like(sigma, x)


def _churn(
    x: Tensor,  # [B, ...]
    sigmas: Tensor,  # [N + 1]
    i: int,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:  # x_hat [B, ...], sigma_hat []
    # Alg. 2 lines 4-6: gamma = min(S_churn/N, sqrt(2)-1) inside [S_tmin, S_tmax]; x_hat = x + sqrt(s_hat^2 - s^2) eps.
    # Like k-diffusion, eps is drawn every step (so the random stream matches k-diffusion's).
    n = len(sigmas) - 1
    gamma = min(s_churn / n, 2**0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.0
    dev = generator.device if generator is not None else x.device
    eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device) * s_noise
    sigma_hat = sigmas[i] * (gamma + 1)
    if gamma > 0:
        x = x + eps * (sigma_hat**2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


@torch.no_grad()
def sample_euler(
    model: Callable[..., Tensor],
    x: Tensor,  # [B, ...] initial noise, already scaled by sigmas[0]
    sigmas: Tensor,  # [N + 1] decreasing, sigmas[-1] = 0
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:  # [B, ...]
    """Euler sampler of the probability-flow ODE (Karras et al. 2022, Alg. 2 without the 2nd-order correction),
    k-diffusion ``sample_euler`` semantics. ``callback`` gets ``{"x", "i", "sigma", "sigma_hat", "denoised"}``."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, generator)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_heun(
    model: Callable[..., Tensor],
    x: Tensor,  # [B, ...] initial noise, already scaled by sigmas[0]
    sigmas: Tensor,  # [N + 1] decreasing, sigmas[-1] = 0
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:  # [B, ...]
    """Heun's 2nd-order sampler with stochastic churn (Karras et al. 2022, Alg. 2; Alg. 1 when ``s_churn = 0``),
    k-diffusion ``sample_heun`` semantics: the step to ``sigma = 0`` is a plain Euler step (Alg. 1 line 7), so
    ``N`` steps cost ``2N - 1`` model calls. ``model(x, sigma [B], **extra_args)`` returns ``D(x, sigma)``.
    ``callback`` gets ``{"x", "i", "sigma", "sigma_hat", "denoised"}``. EDM's ImageNet/3DVADER-style settings:
    ``sigmas = karras_sigmas(N)``, ``x = randn * sigmas[0]``."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, generator)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt  # Euler step to sigma = 0
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x
