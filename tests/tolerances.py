"""Tolerances that hold on every CPU (issue 12): derived from float32's unit round-off and the reference's
magnitude, never from what one machine printed.

Import as ``from tolerances import ...``: pytest puts ``tests/`` on ``sys.path`` (no ``__init__.py``), so this works
from any directory the suite is collected from.

Why these bounds hold across kernels: AVX-512, AVX2 and the scalar ``default`` kernels of ATen, and 1 vs 2 OpenMP
threads, sum in different orders and fuse multiply-adds differently. Each summation of n float32 terms can then differ
by at most ~n * eps32 * sum|terms| (Higham, "Accuracy and Stability of Numerical Algorithms", eq. 4.4); in practice
the error grows like sqrt(n) * eps32 * |ref|. A test's ``k`` is the number of float32 rounding steps of its
computation (depth of the network times a small factor), written beside it.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7, unit round-off of float32 (x2)
EPS64 = torch.finfo(torch.float64).eps  # 2.22e-16


def f32_atol(ref: Tensor, k: float) -> float:
    """``k * eps32 * max|ref|``: the absolute error of a float32 computation with ~k rounding steps whose result has
    the reference's magnitude."""
    return float(k * EPS32 * ref.detach().abs().max().clamp_min(1e-30))


def rel_err(a: Tensor, b: Tensor) -> float:
    """Norm-wise relative error ``||a - b|| / ||b||`` (in float64): for gradients of two float32 paths, where one
    element of a near-cancelling sum can be off by much more than eps while the vector as a whole agrees."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def assert_close_f32(actual: Tensor, expected: Tensor, k: float, msg: str = "") -> None:
    """Element-wise ``|actual - expected| <= k * eps32 * max|expected|`` (both compared in float64)."""
    atol = f32_atol(expected, k)
    err = float((actual.detach().double() - expected.detach().double()).abs().max())
    assert err <= atol, f"{msg} max abs error {err:.3e} > {k} * eps32 * max|ref| = {atol:.3e}"


def assert_rel_close(actual: Tensor, expected: Tensor, k: float, msg: str = "") -> None:
    """Norm-wise ``||actual - expected|| / ||expected|| <= k * eps32``."""
    err = rel_err(actual, expected)
    assert err <= k * EPS32, f"{msg} relative error {err:.3e} > {k} * eps32 = {k * EPS32:.3e}"
