"""DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models") between any two discrete timesteps.

One function, :func:`ddim_step`, moves a latent from timestep ``t`` to ``t_next``:

* ``t_next < t`` is ordinary denoising (DDIM eq. 12, stochastic for ``eta > 0`` with sigma of eq. 16);
* ``t_next > t`` is DDIM inversion (the deterministic ODE of eq. 14 run forwards), as used by LucidDreamer's ISM
  (Liang et al. 2023, Sec. 3.2-3.3) and diffusers' ``DDIMInverseScheduler``.

Timestep ``-1`` stands for the clean end of the chain: its alpha_bar is ``1`` when ``set_alpha_to_one=True`` and
``alphas_cumprod[0]`` otherwise -- diffusers' ``final_alpha_cumprod`` (``DDIMScheduler``) and
``initial_alpha_cumprod`` (``DDIMInverseScheduler``). Stable Diffusion checkpoints ship ``set_alpha_to_one=False``.

Models are called as ``model(x, t, **extra_args)`` with ``t`` a ``[B]`` long tensor, k-diffusion style.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Sequence, get_args

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import trange

from .schedules import PredictionType, expand_like, to_eps_x0

__all__ = [
    "DDIMInversion",
    "ddim_step",
    "ddim_timesteps",
    "ddim_sample",
    "ddim_invert",
    "ism_inversion_schedule",
]

Spacing = Literal["leading", "trailing", "linspace"]
ModelT = Literal["current", "next"]  # ddim_invert: call the model at the current or the next timestep
SigmaRule = Literal["ddim", "ism"]  # eq. 16: sigma^2 = eta^2 var; LucidDreamer's ddim_step: min((1 - a_n)/2, eta var)
Timestep = int | Tensor  # int, [] or [B] long


def _alpha_bar_at(
    alphas_cumprod: Tensor,  # [T]
    t: Timestep,  # int, [] or [B]
    set_alpha_to_one: bool,
) -> Tensor:  # [] or [B] float64
    ac = alphas_cumprod.to(torch.float64)
    t = torch.as_tensor(t, dtype=torch.long, device=ac.device)
    end = ac.new_tensor(1.0) if set_alpha_to_one else ac[0]
    return torch.where(t >= 0, ac[t.clamp(min=0)], end)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # same draw as diffusers' randn_tensor (noise made on the generator's device, then moved)
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _ddim_step(
    x_t: Tensor,  # [B, ...]
    model_output: Tensor,  # [B, ...]
    alphas_cumprod: Tensor,  # [T]
    t: Timestep,
    t_next: Timestep,
    eta: float,
    noise: Tensor | None,  # [B, ...]
    prediction_type: PredictionType,
    set_alpha_to_one: bool,
    generator: torch.Generator | None,
    clip_sample: float | None = None,
    sigma_rule: SigmaRule = "ddim",
) -> tuple[Tensor, Tensor]:  # x_next [B, ...], x0 [B, ...]
    a_t = _alpha_bar_at(alphas_cumprod, t, set_alpha_to_one)
    a_n = _alpha_bar_at(alphas_cumprod, t_next, set_alpha_to_one)
    a_tx = expand_like(a_t, x_t).to(x_t)
    eps, x0 = to_eps_x0(x_t, model_output, a_tx, prediction_type)
    if clip_sample is not None:  # diffusers' clip_sample (pixel-space models): clamp x0, keep the model's eps
        x0 = x0.clamp(-clip_sample, clip_sample)
    var = torch.zeros_like(a_t)
    if eta > 0:
        # eq. 16: sigma^2 = eta^2 (1 - a_n)/(1 - a_t) (1 - a_t/a_n). |.| for inversion; clamped so that the
        # "direction pointing to x_t" coefficient sqrt(1 - a_n - sigma^2) stays real (at a_t = 1 it becomes 0).
        ratio = torch.where(a_t < 1, (1 - a_n) / (1 - a_t), torch.full_like(a_t, torch.inf))
        if sigma_rule == "ddim":
            var = torch.minimum(eta**2 * ratio * (1 - a_t / a_n).abs(), 1 - a_n)
        else:  # LucidDreamer's ddim_step (guidance/sd_step.py): eta scales the variance, capped at half of 1 - a_n
            var = torch.minimum(eta * ratio * (1 - a_t / a_n).abs(), (1 - a_n) / 2)
        var = torch.nan_to_num(var, nan=0.0)  # t == t_next at a = 1
    c_x0 = expand_like(a_n.sqrt(), x_t).to(x_t)
    c_eps = expand_like((1 - a_n - var).clamp(min=0).sqrt(), x_t).to(x_t)
    x_next = c_x0 * x0 + c_eps * eps
    if eta > 0:
        noise = _randn_like(x_t, generator) if noise is None else noise
        x_next = x_next + expand_like(var.sqrt(), x_t).to(x_t) * noise
    return x_next, x0


def ddim_step(
    x_t: Tensor,  # [B, ...] latent at timestep t
    model_output: Tensor,  # [B, ...] eps, v or x0 predicted at (x_t, t)
    alphas_cumprod: Tensor,  # [T]
    t: Timestep,  # int, [] or [B]; -1 = clean end
    t_next: Timestep,  # int, [] or [B]; -1 = clean end
    eta: float = 0.0,
    noise: Tensor | None = None,  # [B, ...] N(0, I) for eta > 0 (drawn from `generator` if None)
    prediction_type: PredictionType = "epsilon",
    set_alpha_to_one: bool = True,
    generator: torch.Generator | None = None,
    clip_sample: float | None = None,
) -> Tensor:  # [B, ...] latent at t_next
    """One DDIM step ``x_t -> x_{t_next}`` between any two timesteps (Song et al. 2021, eq. 12 with sigma of eq. 16).

    ``x_next = sqrt(a_n) x0 + sqrt(1 - a_n - sigma^2) eps + sigma z`` where ``(eps, x0)`` come from ``model_output``
    (see :func:`~latent3d.diffusion.schedules.to_eps_x0`) and
    ``sigma = eta sqrt((1 - a_n)/(1 - a_t)) sqrt(1 - a_t/a_n)``.

    * ``t_next < t``: denoising. Equals diffusers ``DDIMScheduler.step(model_output, t, x_t, eta,
      variance_noise=noise)`` when ``t_next = t - T // num_inference_steps`` (diffusers' own choice of previous step)
      and ``clip_sample=False``.
    * ``t_next > t``: inversion. With ``eta = 0`` this is diffusers ``DDIMInverseScheduler.step`` (which, unlike this
      function, takes the *target* timestep as its argument). For ``eta > 0`` the absolute value of eq. 16 is used and
      sigma^2 is clamped to ``1 - a_n``; from the clean end (``a_t = 1``) this makes the step the forward marginal
      ``q(x_{t_next} | x0)``.
    * ``-1`` (for either argument) is the clean end with alpha_bar ``1`` (``set_alpha_to_one=True``) or
      ``alphas_cumprod[0]`` (``False``), diffusers' ``final_alpha_cumprod`` / ``initial_alpha_cumprod``.
    * ``clip_sample=c`` clamps the predicted x0 to ``[-c, c]`` (the eps direction term is unchanged), as diffusers'
      ``DDIMScheduler(clip_sample=True, clip_sample_range=c).step`` (for pixel-space models).
    """
    return _ddim_step(
        x_t, model_output, alphas_cumprod, t, t_next, eta, noise, prediction_type, set_alpha_to_one, generator,
        clip_sample,
    )[0]


def ddim_timesteps(
    num_steps: int,
    T: int = 1000,
    spacing: Spacing = "leading",
    steps_offset: int = 0,
) -> Tensor:  # [num_steps] long, decreasing
    """Sampling timesteps of diffusers ``DDIMScheduler.set_timesteps`` (spacings of Lin et al. 2024, "Common diffusion
    noise schedules and sample steps are flawed", Table 2; DDIM, Song et al. 2021, Sec. 4.2 uses "leading").

    * ``"leading"``: ``arange(n) * (T // n)`` reversed, plus ``steps_offset`` (SD uses ``steps_offset=1``);
    * ``"trailing"``: ``round(arange(T, 0, -T/n)) - 1`` (``steps_offset`` ignored, as in diffusers);
    * ``"linspace"``: ``round(linspace(0, T - 1, n))`` reversed (``steps_offset`` ignored, as in diffusers).

    Reverse it (``.flip(0)``) for the timesteps of diffusers ``DDIMInverseScheduler`` ("leading"/"trailing").
    """
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps={num_steps} must be in [1, T={T}]")
    if spacing == "leading":
        ts = (np.arange(0, num_steps) * (T // num_steps)).round()[::-1].astype(np.int64) + steps_offset
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; use 'leading', 'trailing' or 'linspace'")
    return torch.from_numpy(ts.copy())


@torch.no_grad()
def ddim_sample(
    model: Callable[..., Tensor],
    x: Tensor,  # [B, ...] latent at timesteps[0]
    timesteps: Sequence[int] | Tensor,  # [n] decreasing
    alphas_cumprod: Tensor,  # [T]
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool | None = None,
    extra_args: dict | None = None,
    prediction_type: PredictionType = "epsilon",
    set_alpha_to_one: bool = True,
    t_end: int = -1,
    clip_sample: float | None = None,
) -> Tensor:  # [B, ...] latent at t_end (the sample for t_end = -1)
    """DDIM sampling (Song et al. 2021, Sec. 4.1-4.2, eq. 12 on a sub-sequence of timesteps): ``n`` model calls along
    ``timesteps[0] -> ... -> timesteps[n-1] -> t_end``, under ``torch.no_grad()``.

    Each step goes to the *next listed* timestep, so non-uniform lists (``"linspace"``, or ``"trailing"`` with ``T``
    not divisible by ``n``) are integrated consistently; diffusers instead always steps to ``t - T // n``. The two agree
    whenever ``timesteps`` are uniformly spaced by ``T // n`` (e.g. ``"leading"``, or ``"trailing"`` with ``n | T``).
    For ``eta > 0`` the noise of step ``i`` is ``torch.randn(x.shape, generator=generator)``, drawn in the same
    order as diffusers' pipelines draw it. ``callback`` receives ``{"x", "i", "t", "t_next", "denoised"}``.
    """
    extra_args = {} if extra_args is None else extra_args
    ts = [int(t) for t in timesteps] + [int(t_end)]
    s_in = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
    for i in trange(len(ts) - 1, disable=disable):
        out = model(x, ts[i] * s_in, **extra_args)
        x_next, x0 = _ddim_step(
            x, out, alphas_cumprod, ts[i], ts[i + 1], eta, None, prediction_type, set_alpha_to_one, generator,
            clip_sample,
        )
        if callback is not None:
            callback({"x": x, "i": i, "t": ts[i], "t_next": ts[i + 1], "denoised": x0})
        x = x_next
    return x


class DDIMInversion(NamedTuple):
    x: Tensor  # [B, ...] latent at timesteps[-1]
    trajectory: list[Tensor]  # n x [B, ...]: latent at each of timesteps[0..n-1] (first = input, last = x)
    model_outputs: list[Tensor]  # (n-1) x [B, ...]: model output used for step i -> i+1


@torch.no_grad()
def ddim_invert(
    model: Callable[..., Tensor],
    x: Tensor,  # [B, ...] latent at timesteps[0]
    timesteps: Sequence[int] | Tensor,  # [n] increasing; timesteps[0] may be -1 (clean) with model_t="next"
    alphas_cumprod: Tensor,  # [T]
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool | None = None,
    extra_args: dict | None = None,
    prediction_type: PredictionType = "epsilon",
    set_alpha_to_one: bool = True,
    model_t: ModelT = "current",
    return_trajectory: bool = False,
    sigma_rule: SigmaRule = "ddim",
) -> Tensor | DDIMInversion:
    """DDIM inversion (Song et al. 2021, eq. 14 run from data to noise): ``n - 1`` model calls along
    ``timesteps[0] -> timesteps[1] -> ... -> timesteps[n-1]``, under ``torch.no_grad()``.

    ``model_t`` picks the timestep label the model sees on the step ``t_i -> t_{i+1}``; in both cases the model is
    evaluated at the *current* latent ``x_{t_i}``:

    * ``"current"``: ``model(x_{t_i}, t_i)`` -- LucidDreamer's ``add_noise_with_cfg`` (Liang et al. 2023, Sec. 3.2,
      ISM's DDIM inversion); the ISM target ``eps(x_s, s, empty)`` is then ``model_outputs[-1]`` when the last step is
      ``s -> t`` (see :func:`ism_inversion_schedule`).
    * ``"next"``: ``model(x_{t_i}, t_{i+1})`` -- diffusers ``DDIMInverseScheduler`` (its ``step(out, t_{i+1}, x)``
      moves from ``t_{i+1} - T//n`` to ``t_{i+1}``). ``timesteps = [-1] + ddim_timesteps(n).flip(0).tolist()``
      reproduces a diffusers inversion loop exactly.

    ``eta > 0`` adds noise on every step; ``sigma_rule="ism"`` sizes it as LucidDreamer's ``ddim_step`` does
    (``sigma^2 = min((1 - a_n) / 2, eta |var|)`` with ``var`` of eq. 16 at ``eta = 1``) instead of eq. 16's
    ``sigma^2 = min(eta^2 |var|, 1 - a_n)``.

    Returns the final latent, or :class:`DDIMInversion` ``(x, trajectory, model_outputs)`` if ``return_trajectory``.
    ``callback`` receives ``{"x", "i", "t", "t_next", "denoised"}``.
    """
    extra_args = {} if extra_args is None else extra_args
    ts = [int(t) for t in timesteps]
    if any(b < a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"ddim_invert needs non-decreasing timesteps, got {ts}")
    if model_t == "current" and ts and ts[0] < 0:
        raise ValueError("timesteps[0] = -1 needs model_t='next' (the model cannot be called at t = -1)")
    if model_t not in get_args(ModelT):
        raise ValueError(f"unknown model_t {model_t!r}; use 'current' or 'next'")
    s_in = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
    xs, outs = [x], []
    for i in trange(len(ts) - 1, disable=disable):
        t_model = ts[i] if model_t == "current" else ts[i + 1]
        out = model(x, t_model * s_in, **extra_args)
        x_next, x0 = _ddim_step(
            x, out, alphas_cumprod, ts[i], ts[i + 1], eta, None, prediction_type, set_alpha_to_one, generator,
            sigma_rule=sigma_rule,
        )
        if callback is not None:
            callback({"x": x, "i": i, "t": ts[i], "t_next": ts[i + 1], "denoised": x0})
        x = x_next
        xs.append(x)
        outs.append(out)
    return DDIMInversion(x, xs, outs) if return_trajectory else x


def ism_inversion_schedule(
    t: int,
    delta_t: int,
    xs_delta_t: int | None = 200,
    xs_inv_steps: int | None = 5,
    steps_offset: int = 0,
) -> list[int]:  # increasing timesteps [start, ..., s, t]
    """Timesteps of LucidDreamer's ISM inversion (Liang et al. 2023, Sec. 3.2-3.3, eq. 12-13; official
    ``StableDiffusion.train_step`` + ``add_noise_with_cfg``): ``start -> ... -> s`` in strides of ``xs_delta_t``
    (at most ``xs_inv_steps`` of them, the last one capped at ``s``), then one step ``s -> t``.

    With indices ``i = timestep - steps_offset``: ``s = max(t - delta_t, 0)``, ``start = max(s - xs_delta_t *
    xs_inv_steps, 0)``, next ``= min(cur + xs_delta_t, s)`` until ``s`` is reached. ``xs_delta_t=None`` uses
    ``delta_t`` and ``xs_inv_steps=None`` uses ``ceil(s / xs_delta_t)`` (the official fallbacks). The official code
    also takes a no-op ``s -> s`` step when ``start == s == 0``; it is dropped here (identical result for eta = 0).

    The latent handed to :func:`ddim_invert` (``model_t="current"``) is the render noised to ``start``,
    ``sqrt(a_start) x0 + sqrt(1 - a_start) noise``, as the official code does. LucidDreamer indexes SD-2.1's
    timesteps with ``steps_offset=1`` (its ``scheduler.set_timesteps(1000)`` gives timestep = index + 1).
    Examples: ``(t=500, delta_t=100) -> [0, 200, 400, 500]``; ``(t=980, delta_t=80) -> [0, 200, 400, 600, 800,
    900, 980]`` (5 strides, the last capped at s = 900); ``(t=60, delta_t=100) -> [0, 60]`` (s = 0).
    """
    if delta_t < 0 or t < steps_offset:
        raise ValueError(f"need delta_t >= 0 and t >= steps_offset, got t={t}, delta_t={delta_t}")
    ind_t = t - steps_offset
    s = max(ind_t - delta_t, 0)
    stride = delta_t if xs_delta_t is None else xs_delta_t
    if stride <= 0:
        raise ValueError(f"xs_delta_t must be positive, got {stride}")
    n_inv = int(np.ceil(s / stride)) if xs_inv_steps is None else xs_inv_steps
    start = max(s - stride * n_inv, 0)
    inds, cur = [start], start
    for _ in range(n_inv):
        nxt = min(cur + stride, s)
        if nxt != cur:
            inds.append(nxt)
        cur = nxt
        if cur == s:
            break
    inds.append(ind_t)
    return [i + steps_offset for i in inds]
