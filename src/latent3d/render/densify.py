"""Adaptive density control and the optimiser of 3D Gaussian Splatting (Kerbl et al. 2023, Sec. 5.2 and 7.1).

- Per-parameter Adam with the 3DGS learning rates; the position lr decays exponentially (log-linear) from
  1.6e-4 to 1.6e-6 times the scene extent over 30k steps (LucidDreamer also decays colour, scale and rotation lrs).
- View-space positional gradients (of the projected 2D means, in NDC units as in 3DGS: the pixel-space gradient
  times (W/2, H/2), as gsplat's DefaultStrategy with ``absgrad=False, packed=False``) are averaged per Gaussian
  over the views in which it is visible (radius > 0). The loss is taken to be averaged over the batch of C views, so
  the gradients are multiplied by C as gsplat's strategy does (``n_cameras``): a Gaussian's statistic is then that of
  each view's own loss, whatever the batch size (a C-view batch gives the same decisions as C one-view steps);
  every ``refine_every`` steps Gaussians with an average above
  ``grad_threshold`` are cloned (small: max scale <= percent_dense * extent, under-reconstruction) or split into
  ``split_n`` samples of themselves with scales / (0.8 * split_n) (large: over-reconstruction).
- Pruning: opacity below ``prune_opacity``; after the first opacity reset also Gaussians wider than
  ``max_screen_size`` pixels (radius) on screen or with a world scale above ``big_world * extent``.
- Every ``reset_every`` steps opacities are clamped to ``reset_opacity`` (and their Adam moments zeroed).
Adam state rows follow the Gaussians through clone / split / prune.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from latent3d.render.gaussians import GaussianModel, inverse_sigmoid
from latent3d.render.project import quat_to_rotmat


@dataclass
class LearningRates:
    """3DGS learning rates (``arguments/__init__.py`` of the INRIA code); positions scale with the scene extent."""

    means: float = 1.6e-4
    """initial position lr (times scene extent)"""
    means_final: float = 1.6e-6
    """final position lr (times scene extent)"""
    means_max_steps: int = 30_000
    """steps of the exponential position-lr decay"""
    sh_dc: float = 2.5e-3
    sh_rest: float = 2.5e-3 / 20.0
    opacity_logits: float = 5e-2
    log_scales: float = 5e-3
    quats: float = 1e-3
    sh_dc_final: float | None = None
    """final colour lr, decayed like the position lr (LucidDreamer's ``feature_lr_final``); None: constant"""
    log_scales_final: float | None = None
    """final scale lr (LucidDreamer's ``scaling_lr_final``); None: constant"""
    quats_final: float | None = None
    """final rotation lr (LucidDreamer's ``rotation_lr_final``); None: constant"""

    def at(self, step: int, extent: float = 1.0) -> dict[str, float]:
        """The lr of every decaying group at ``step``: positions always, the others where a final value is set."""
        out = {"means": expon_lr(step, self.means * extent, self.means_final * extent, self.means_max_steps)}
        for name in ("sh_dc", "log_scales", "quats"):
            final = getattr(self, f"{name}_final")
            if final is not None:
                out[name] = expon_lr(step, getattr(self, name), final, self.means_max_steps)
        return out


def expon_lr(step: int, lr_init: float, lr_final: float, max_steps: int) -> float:
    """Log-linear interpolation lr_init -> lr_final over ``max_steps`` (3DGS ``get_expon_lr_func`` without delay)."""
    if lr_init == lr_final or max_steps <= 0:
        return lr_init
    t = min(max(step / max_steps, 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1.0 - t) + math.log(lr_final) * t)


def make_optimizer(model: GaussianModel, lrs: LearningRates | None = None, extent: float = 1.0) -> torch.optim.Adam:
    """Adam with one parameter group per Gaussian attribute (named like the model attribute), eps 1e-15."""
    lrs = lrs or LearningRates()
    groups = []
    for name in GaussianModel.param_names:
        lr = getattr(lrs, name) * (extent if name == "means" else 1.0)
        groups.append({"params": [getattr(model, name)], "lr": lr, "name": name})
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def update_lrs(optimizer: torch.optim.Optimizer, step: int, lrs: LearningRates | None = None,
               extent: float = 1.0) -> dict[str, float]:
    """Set the lr of every decaying group for ``step`` (exponential decay); returns them by group name."""
    rates = (lrs or LearningRates()).at(step, extent)
    for g in optimizer.param_groups:
        if g.get("name") in rates:
            g["lr"] = rates[g["name"]]
    return rates


def _edit(
    model: GaussianModel,
    optimizer: torch.optim.Optimizer | None,
    param_fn: Callable[[str, Tensor], Tensor],
    state_fn: Callable[[str, Tensor], Tensor],
) -> None:
    """Replace every Gaussian parameter by ``param_fn(name, old)`` and its Adam moments by ``state_fn``."""
    done = set()
    if optimizer is not None:
        for group in optimizer.param_groups:
            name = group.get("name")
            if name not in GaussianModel.param_names:
                continue
            old = group["params"][0]
            new = nn.Parameter(param_fn(name, old.data))
            state = optimizer.state.pop(old, None)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key] = state_fn(name, state[key])
                optimizer.state[new] = state
            group["params"][0] = new
            setattr(model, name, new)
            done.add(name)
    for name in GaussianModel.param_names:
        if name not in done:
            setattr(model, name, nn.Parameter(param_fn(name, getattr(model, name).data)))


def append_gaussians(model: GaussianModel, optimizer: torch.optim.Optimizer | None, new: dict[str, Tensor]) -> None:
    """Append Gaussians (their Adam moments start at zero)."""
    _edit(
        model, optimizer,
        lambda n, p: torch.cat([p, new[n].to(p)], 0),
        lambda n, s: torch.cat([s, torch.zeros_like(new[n], dtype=s.dtype, device=s.device)], 0),
    )  # fmt: skip


def keep_gaussians(model: GaussianModel, optimizer: torch.optim.Optimizer | None, keep: Tensor) -> None:
    """Keep only the Gaussians where ``keep`` [N] is True."""
    _edit(model, optimizer, lambda n, p: p[keep], lambda n, s: s[keep])


def reset_opacity(model: GaussianModel, optimizer: torch.optim.Optimizer | None, value: float = 0.01) -> None:
    """Clamp opacities to at most ``value`` and zero their Adam moments (Kerbl et al. 2023 Sec. 5.2)."""
    cap = float(inverse_sigmoid(torch.tensor(value)))
    _edit(
        model, optimizer,
        lambda n, p: p.clamp(max=cap) if n == "opacity_logits" else p,
        lambda n, s: torch.zeros_like(s) if n == "opacity_logits" else s,
    )  # fmt: skip


@dataclass
class DensifyConfig:
    """When and how to densify/prune (3DGS defaults; step counts in optimisation steps)."""

    refine_start: int = 500
    """first step at which to clone/split/prune"""
    refine_stop: int = 15_000
    """no clone/split/prune from this step on"""
    refine_every: int = 100
    """clone/split/prune every this many steps"""
    reset_every: int = 3000
    """opacity reset every this many steps (0 = never)"""
    grad_threshold: float = 2e-4
    """average view-space (NDC) positional gradient norm above which a Gaussian is densified"""
    percent_dense: float = 0.01
    """max scale (fraction of extent) separating clone (below) from split (above)"""
    split_n: int = 2
    prune_opacity: float = 0.005
    max_screen_size: float = 20.0
    """prune Gaussians whose screen radius (pixels) exceeded this (only after the first opacity reset)"""
    big_world: float = 0.1
    """prune Gaussians with a scale above this fraction of extent (only after the first opacity reset)"""
    reset_opacity: float = 0.01


class DensityController:
    """Accumulates view-space gradients and applies clone / split / prune / opacity reset on schedule.

    Usage per step: ``img, alpha, meta = model.render(...)``; ``meta["means2d"].retain_grad()``; ``loss.backward()``;
    ``ctrl.update(meta)``; ``optimizer.step()``; ``ctrl.step(model, optimizer, step)``.
    """

    def __init__(self, cfg: DensifyConfig | None = None, extent: float = 1.0) -> None:
        self.cfg = cfg or DensifyConfig()
        self.extent = extent
        self.grad_sum: Tensor | None = None
        self.count: Tensor | None = None
        self.max_radii: Tensor | None = None

    def _reset_stats(self, n: int, device: torch.device) -> None:
        self.grad_sum = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)
        self.max_radii = torch.zeros(n, device=device)

    @torch.no_grad()
    def update(self, meta: dict) -> None:
        """Accumulate ||C d loss / d means2d|| in NDC units for every (camera, Gaussian) with radius > 0 (``loss``
        averaged over the C views of the batch)."""
        means2d, radii = meta["means2d"], meta["radii"]
        if not (means2d.is_leaf or means2d.retains_grad) or means2d.grad is None:
            raise RuntimeError("meta['means2d'].grad is None: call meta['means2d'].retain_grad() before backward()")
        C, N = radii.shape
        if self.grad_sum is None or self.grad_sum.numel() != N:
            self._reset_stats(N, means2d.device)
        g = means2d.grad.clone()
        g[..., 0] *= 0.5 * meta["width"] * C
        g[..., 1] *= 0.5 * meta["height"] * C
        vis = radii > 0  # [C, N]
        self.grad_sum += (g.norm(dim=-1) * vis).sum(0)
        self.count += vis.sum(0)
        self.max_radii = torch.maximum(self.max_radii, (radii.float() * vis).amax(0))

    def avg_grad(self) -> Tensor:  # [N]
        return self.grad_sum / self.count.clamp(min=1)

    @torch.no_grad()
    def step(self, model: GaussianModel, optimizer: torch.optim.Optimizer | None, step: int,
             generator: torch.Generator | None = None) -> dict[str, int]:
        """Run the refinement due at ``step`` (call after ``optimizer.step()``); returns what happened."""
        cfg, out = self.cfg, {}
        if cfg.refine_start < step < cfg.refine_stop and step % cfg.refine_every == 0 and self.grad_sum is not None:
            out = self.densify_and_prune(model, optimizer, prune_big=cfg.reset_every > 0 and step > cfg.reset_every,
                                         generator=generator)
            self._reset_stats(model.num, model.means.device)
        if cfg.reset_every > 0 and step % cfg.reset_every == 0 and 0 < step < cfg.refine_stop:
            reset_opacity(model, optimizer, cfg.reset_opacity)
            out["reset"] = 1
        return out

    @torch.no_grad()
    def densify_and_prune(self, model: GaussianModel, optimizer: torch.optim.Optimizer | None,
                          prune_big: bool = False, generator: torch.Generator | None = None) -> dict[str, int]:
        """Clone small / split large Gaussians with a high average view-space gradient, then prune."""
        cfg = self.cfg
        grads = self.avg_grad()
        high = grads >= cfg.grad_threshold
        max_scale = model.scales.amax(-1)
        small = max_scale <= cfg.percent_dense * self.extent
        clone, split = high & small, high & ~small
        n0 = model.num
        # clone: exact copies (they separate along the positional gradient at the next steps)
        if clone.any():
            append_gaussians(model, optimizer, {n: getattr(model, n).data[clone] for n in GaussianModel.param_names})
        # split: split_n samples from the Gaussian itself, scales divided by 0.8 * split_n
        split_full = torch.cat([split, split.new_zeros(model.num - n0)])
        n_split = int(split_full.sum())
        if n_split:
            k = cfg.split_n
            idx = torch.nonzero(split_full).squeeze(1).repeat(k)
            scales = model.scales.data[idx]
            eps = torch.randn(scales.shape, generator=generator).to(scales)
            R = quat_to_rotmat(model.quats.data[idx])
            new = {n: getattr(model, n).data[idx] for n in GaussianModel.param_names}
            new["means"] = (R @ (eps * scales)[..., None])[..., 0] + model.means.data[idx]
            new["log_scales"] = torch.log(scales / (0.8 * k))
            append_gaussians(model, optimizer, new)
            split_full = torch.cat([split_full, split_full.new_zeros(model.num - split_full.numel())])
        # prune: the split originals, transparent ones, and (after an opacity reset) huge ones
        prune = split_full | (model.opacities.data < cfg.prune_opacity)
        if prune_big:
            radii = torch.cat([self.max_radii, self.max_radii.new_zeros(model.num - n0)])
            prune |= (radii > cfg.max_screen_size) | (model.scales.data.amax(-1) > cfg.big_world * self.extent)
        if prune.any():
            keep_gaussians(model, optimizer, ~prune)
        return {"cloned": int(clone.sum()), "split": n_split, "pruned": int(prune.sum()) - n_split, "num": model.num}
