"""DDPM training objective (Ho et al. 2020) with the eps, v (Salimans & Ho 2022) or x0 target.

VP view ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020, eq. 4); the network is trained with the
"simple" unweighted MSE to its target (eq. 14): ``eps`` (DDPM), ``v = sqrt(abar) eps - sqrt(1 - abar) x0``
(Salimans & Ho 2022, Sec. 4 / Appendix D) or ``x0`` itself (``"sample"``). The names of the targets are diffusers'
``prediction_type`` values, so a model trained here samples with a diffusers scheduler of that prediction type.

A weighting ``w(lambda_t)`` of the noise level (``lambda_t = log SNR_t``, ``SNR_t = abar_t / (1 - abar_t)``; Kingma
et al. 2021, "Variational Diffusion Models", Sec. 3-4, and NF-LDM's x0 objective ``E[w(lambda_t) ||x0 - psi(x_t,
t)||^2]``, Kim et al. 2023, Sec. 3.3) is an option: ``"constant"`` (the simple loss, w = 1 in the units of the
target) or ``"min_snr"`` (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", arXiv
2303.09556, Sec. 3.4: ``min(SNR_t, gamma)`` in x0 units, i.e. ``min(SNR, gamma) / SNR`` on the eps target and
``min(SNR, gamma) / (SNR + 1)`` on v; gamma 5 there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from .schedules import PredictionType, expand_like

__all__ = ["DDPMLoss", "Weighting", "ddpm_loss", "ddpm_target", "loss_weight", "q_sample"]

Weighting = Literal["constant", "min_snr"]


def q_sample(
    x0: Tensor,  # [B, ...] clean data
    noise: Tensor,  # [B, ...] standard normal
    alpha_bar_t: Tensor,  # [B, 1, ..., 1] (or broadcastable to x0)
) -> Tensor:  # [B, ...] x_t
    """The forward process in closed form, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020, eq. 4;
    diffusers ``DDPMScheduler.add_noise``)."""
    return alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * noise


def ddpm_target(
    x0: Tensor,  # [B, ...] clean data
    noise: Tensor,  # [B, ...] the eps of q_sample
    alpha_bar_t: Tensor,  # [B, 1, ..., 1] (or broadcastable to x0)
    prediction_type: PredictionType,
) -> Tensor:  # [B, ...]
    """What the network learns to output: ``eps`` (Ho et al. 2020, eq. 14), ``v = sqrt(abar) eps - sqrt(1 - abar) x0``
    (Salimans & Ho 2022, Sec. 4; diffusers ``DDPMScheduler.get_velocity``) or ``x0`` (``"sample"``)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return alpha_bar_t.sqrt() * noise - (1 - alpha_bar_t).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {prediction_type!r}")


def loss_weight(
    alpha_bar_t: Tensor,  # [B]
    prediction_type: PredictionType,
    weighting: Weighting = "constant",
    snr_gamma: float = 5.0,
) -> Tensor:  # [B]
    """``w(lambda_t)`` of each sample in the units of the ``prediction_type`` target (module docstring): 1, or
    min-SNR-gamma (Hang et al. 2023, Sec. 3.4), the same weight ``min(SNR, gamma)`` of the x0 error whichever target
    the network predicts (the eps error is ``SNR`` times the x0 error, the v error ``SNR + 1`` times)."""
    if weighting == "constant":
        return torch.ones_like(alpha_bar_t)
    if weighting != "min_snr":
        raise ValueError(f"weighting must be 'constant' or 'min_snr', got {weighting!r}")
    snr = alpha_bar_t / (1 - alpha_bar_t)
    if prediction_type == "epsilon":
        return (snr_gamma / snr).clamp(max=1.0)  # min(SNR, gamma) / SNR, also where SNR = 0
    w = snr.clamp(max=snr_gamma)
    return w / (snr + 1) if prediction_type == "v_prediction" else w


def ddpm_loss(
    net: Callable[..., Tensor],
    x0: Tensor,  # [B, ...] clean data (images or latents)
    t: Tensor,  # [B] integer timesteps in [0, T)
    noise: Tensor,  # [B, ...] standard normal
    alpha_bar: Tensor,  # [T] cumulative product of (1 - beta), e.g. schedules.alphas_cumprod(...)
    prediction_type: PredictionType = "epsilon",
    weighting: Weighting = "constant",
    snr_gamma: float = 5.0,
    **cond: Any,  # passed on to net after (x_t, t), e.g. input_ids=[B, L]
) -> Tensor:  # []
    """The simple DDPM loss ``mean ||net(x_t, t, **cond) - target||^2`` with ``x_t`` of :func:`q_sample` (Ho et al.
    2020, eq. 4 and 14) and the target of :func:`ddpm_target` (eps, v of Salimans & Ho 2022 Sec. 4, or x0); with a
    ``weighting`` other than ``"constant"``, ``mean_b w_b mean ||net - target||_b^2`` with ``w`` of
    :func:`loss_weight` (NF-LDM's ``E[w(lambda_t) ||x0 - psi(x_t, t)||^2]`` for ``prediction_type="sample"``).

    ``alpha_bar`` is moved to ``x0``'s device and indexed by ``t``; the random draws (``t``, ``noise``) are the
    caller's, so a training loop keeps its own generator and its stream of random numbers."""
    a_t = alpha_bar.to(x0.device)[t]  # [B]
    a = expand_like(a_t, x0)  # [B, 1, ..., 1]
    x_t = q_sample(x0, noise, a)
    target = ddpm_target(x0, noise, a, prediction_type)
    err = (net(x_t, t, **cond) - target).pow(2)
    if weighting == "constant":
        return err.mean()
    per_item = err.reshape(len(err), -1).mean(1)  # [B]
    return (loss_weight(a_t, prediction_type, weighting, snr_gamma).to(per_item) * per_item).mean()


@dataclass
class DDPMLoss:
    """The DDPM objective as a configured loss, called like :class:`~latent3d.diffusion.edm.EDMLoss`:
    ``loss(net, x0 [B, ...], generator, **cond) -> []`` draws ``t ~ U{0..T-1}`` then ``eps ~ N(0, I)`` from
    ``generator`` (on its device, then moved to ``x0``'s) and returns :func:`ddpm_loss` (Ho et al. 2020, eq. 14; the
    target of ``prediction_type``, weighted by ``weighting``)."""

    alpha_bar: Tensor  # [T] cumulative product of (1 - beta)
    prediction_type: PredictionType = "epsilon"
    weighting: Weighting = "constant"
    snr_gamma: float = 5.0

    def __call__(self, net: Callable[..., Tensor], x0: Tensor, generator: torch.Generator | None = None,
                 **cond: Any) -> Tensor:  # fmt: skip
        dev = generator.device if generator is not None else x0.device
        t = torch.randint(0, len(self.alpha_bar), (x0.shape[0],), generator=generator, device=dev)
        eps = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
        return ddpm_loss(net, x0, t.to(x0.device), eps.to(x0.device), self.alpha_bar, self.prediction_type,
                         self.weighting, self.snr_gamma, **cond)
