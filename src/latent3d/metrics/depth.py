"""Depth metrics: AbsRel, RMSE, delta1, with the alignments used for relative (scale/shift-ambiguous) depth.

Definitions (Eigen et al. 2014, "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network",
Sec. 4.1), over the valid pixels of one image, then averaged over images:

* ``AbsRel = mean(|d - d*| / d*)``
* ``RMSE = sqrt(mean((d - d*)^2))`` (in the units of ``d*``, metres for metric targets)
* ``delta1 = mean(max(d / d*, d* / d) < 1.25)``

A relative prediction is aligned to the target first, per image:

* ``"median"``: ``d <- d * median(d*) / median(d)`` (median scaling, Zhou et al. 2017, "Unsupervised Learning of
  Depth and Ego-Motion from Video", Sec. 4.1);
* ``"scale"`` / ``"scale_shift"``: least squares ``min_{s,t} sum (s d + t - d*)^2`` in closed form (MiDaS, Ranftl
  et al. 2020, TPAMI, the alignment of their scale- and shift-invariant loss and evaluation).

:func:`disparity_errors` is the MiDaS/DPT protocol for inverse-depth predictors (DPT, LDM3D): align the predicted
disparity to ``1 / d*`` by least squares in inverse-depth space, invert, and measure in depth space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Align = Literal["none", "median", "scale", "scale_shift"]
DELTA = 1.25


def _flat(x: Tensor) -> Tensor:  # [N, 1, H, W] | [N, H, W] | [H, W] (one image) -> [N, H*W] float64
    x = torch.as_tensor(x)
    if x.ndim == 2:
        x = x[None]
    return x.reshape(x.shape[0], -1).double()


def _fit_flat(p: Tensor, y: Tensor, m: Tensor, shift: bool) -> tuple[Tensor, Tensor]:  # [N, P] each -> [N], [N]
    w = m.double()
    p, y = torch.where(m, p, 0.0), torch.where(m, y, 0.0)
    a00, a01, a11 = (w * p * p).sum(1), (w * p).sum(1), w.sum(1)
    b0, b1 = (w * p * y).sum(1), (w * y).sum(1)
    if shift:
        det = a00 * a11 - a01 * a01
        ok = det > 1e-12 * a00 * a11  # False without valid pixels or for a constant prediction
        den = torch.where(ok, det, 1.0)
        return torch.where(ok, (a11 * b0 - a01 * b1) / den, 1.0), torch.where(ok, (a00 * b1 - a01 * b0) / den, 0.0)
    ok = a00 > 0
    return torch.where(ok, b0 / torch.where(ok, a00, 1.0), 1.0), torch.zeros_like(a00)


def _median_flat(p: Tensor, y: Tensor, m: Tensor) -> Tensor:  # [N, P] each -> [N]
    out = []
    for pi, yi, mi in zip(p, y, m):
        mp = pi[mi].median() if mi.any() else pi.new_tensor(0.0)
        out.append(yi[mi].median() / mp if mp != 0 else pi.new_tensor(1.0))
    return torch.stack(out)


def _align_flat(p: Tensor, y: Tensor, m: Tensor, mode: Align) -> Tensor:  # [N, P] each -> [N, P]
    if mode == "none":
        return p
    if mode == "median":
        return p * _median_flat(p, y, m)[:, None]
    if mode in ("scale", "scale_shift"):
        s, t = _fit_flat(p, y, m, shift=mode == "scale_shift")
        return p * s[:, None] + t[:, None]
    raise ValueError(f"unknown alignment {mode!r}; use none, median, scale or scale_shift")


def fit_scale_shift(
    pred: Tensor,  # [N, 1, H, W] | [N, H, W] | [H, W]
    target: Tensor,  # same shape
    mask: Tensor,  # same shape, bool
    shift: bool = True,
) -> tuple[Tensor, Tensor]:  # scale [N], shift [N] (0 when shift=False), float64
    """Per-image least squares ``argmin_{s,t} sum_mask (s p + t - y)^2`` from the 2x2 normal equations (MiDaS,
    Ranftl et al. 2020, TPAMI). Degenerate images (no valid pixel, constant prediction) get ``s = 1, t = 0``."""
    return _fit_flat(_flat(pred), _flat(target), _flat(mask) > 0, shift)


def median_scale(
    pred: Tensor,  # [N, 1, H, W] | [N, H, W] | [H, W]
    target: Tensor,  # same shape
    mask: Tensor,  # same shape, bool
) -> Tensor:  # [N] float64
    """Per-image ``median(target) / median(pred)`` over the valid pixels (Zhou et al. 2017, Sec. 4.1)."""
    return _median_flat(_flat(pred), _flat(target), _flat(mask) > 0)


def align(
    pred: Tensor,  # [N, 1, H, W] | [N, H, W] | [H, W]
    target: Tensor,  # same shape
    mask: Tensor,  # same shape, bool
    mode: Align = "scale_shift",
) -> Tensor:  # [N, H*W] float64
    """``pred`` aligned to ``target`` per image (see the module docstring), flattened to ``[N, H*W]``."""
    return _align_flat(_flat(pred), _flat(target), _flat(mask) > 0, mode)


@dataclass
class DepthErrors:
    abs_rel: float
    rmse: float
    delta1: float
    n: int  # images with at least one valid pixel

    def as_dict(self) -> dict:
        return {"abs_rel": round(self.abs_rel, 5), "rmse": round(self.rmse, 5), "delta1": round(self.delta1, 5),
                "n": self.n}  # fmt: skip


def _valid(target: Tensor, mask: Tensor | None, min_depth: float, max_depth: float | None) -> Tensor:
    y = _flat(target)
    v = torch.isfinite(y) & (y > min_depth)
    if max_depth is not None:
        v &= y < max_depth
    if mask is not None:
        v &= _flat(mask) > 0
    return v


def _errors(p: Tensor, y: Tensor, v: Tensor, min_depth: float) -> DepthErrors:  # p, y [N, P], v [N, P] bool
    p = p.clamp(min=min_depth)  # an aligned prediction may cross zero
    y = torch.where(v, y, 1.0)
    cnt = v.sum(1)
    keep = cnt > 0
    c = cnt.clamp(min=1).double()
    abs_rel = (torch.where(v, (p - y).abs() / y, 0.0).sum(1) / c)[keep]
    rmse = (torch.where(v, (p - y) ** 2, 0.0).sum(1) / c).sqrt()[keep]
    d1 = (torch.where(v, (torch.maximum(p / y, y / p) < DELTA).double(), 0.0).sum(1) / c)[keep]
    n = int(keep.sum())
    mean = (lambda x: float(x.mean())) if n else (lambda x: float("nan"))
    return DepthErrors(mean(abs_rel), mean(rmse), mean(d1), n)


def depth_errors(
    pred: Tensor,  # [N, 1, H, W] | [N, H, W] | [H, W] predicted depth
    target: Tensor,  # same shape: reference depth (metric or relative), non-finite / <= min_depth = invalid
    mask: Tensor | None = None,  # same shape, bool: pixels to evaluate (and to fit the alignment on)
    align_mode: Align = "none",
    min_depth: float = 1e-3,
    max_depth: float | None = None,
) -> DepthErrors:
    """AbsRel / RMSE / delta1 of ``pred`` against ``target`` (Eigen et al. 2014, Sec. 4.1), per image then averaged,
    after the optional per-image alignment ``align_mode`` in depth space."""
    v = _valid(target, mask, min_depth, max_depth)
    y = _flat(target)
    p = _align_flat(_flat(pred), torch.where(v, y, 0.0), v, align_mode)
    return _errors(p, y, v, min_depth)


def disparity_errors(
    pred_disparity: Tensor,  # [N, 1, H, W] | [N, H, W] | [H, W] relative inverse depth (bright = near)
    target_depth: Tensor,  # same shape: reference depth; non-finite / <= min_depth / >= max_depth = invalid
    mask: Tensor | None = None,  # same shape, bool
    align_mode: Align = "scale_shift",
    min_depth: float = 1e-3,
    max_depth: float | None = None,
) -> DepthErrors:
    """Errors of a relative inverse-depth map against a depth map, MiDaS protocol (Ranftl et al. 2020): align
    ``pred_disparity`` to ``1 / target_depth`` by least squares (``"scale_shift"``, or ``"scale"``/``"median"``) in
    inverse-depth space on the valid pixels, clamp it to ``>= 1 / max_depth`` (when given), invert, then AbsRel /
    RMSE / delta1 in depth space. This is how LDM3D's (and DPT's) depth is compared with a metric reference (LDM3D,
    arXiv 2305.10853, Table 2: AbsRel against ZoeDepth-N)."""
    v = _valid(target_depth, mask, min_depth, max_depth)
    y = _flat(target_depth)
    inv = torch.where(v, 1.0 / torch.where(v, y, 1.0), 0.0)
    a = _align_flat(_flat(pred_disparity), inv, v, align_mode)
    lo = 1.0 / max_depth if max_depth is not None else 1.0 / 1e6
    p = 1.0 / a.clamp(min=lo)
    return _errors(p, y, v, min_depth)
