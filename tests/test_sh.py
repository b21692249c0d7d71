"""Spherical-harmonics colour against a hand computation with the constants and signs of INRIA 3DGS (issue 12, item 5).

INRIA's ``utils/sh_utils.py`` (``eval_sh``) evaluates, for a unit direction (x, y, z) from the camera centre to the
Gaussian (``dir_pp = xyz - camera_center`` in ``gaussian_renderer/__init__.py``), the sum of ``C * poly(x, y, z) *
sh[k]`` written out below with its literal constants C0..C3; the colour is ``max(result + 0.5, 0)``. Orthonormality of
the basis (tests/test_rasterize.py) cannot see a sign; these tests can: every coefficient is checked on its own, and a
rendered degree-3 Gaussian is compared with the hand formula for the camera-to-Gaussian direction.

Everything is float64: sums of 16 terms of size <= 3, round-off < 1e-14, so ``TOL = 1e-12`` holds on any CPU, while
a flipped sign moves a basis value by 2 |Y_k| >= 2e-3 (generic directions, checked) and the rendered colour
by >= 0.05 (checked).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from latent3d.render.camera import camera_centers, look_at
from latent3d.render.rasterize import rasterize
from latent3d.render.sh import eval_sh, sh_basis

D = torch.float64
TOL = 1e-12  # float64, see the module docstring

pytestmark = pytest.mark.numerics

# INRIA 3DGS utils/sh_utils.py, copied as literals (not imported from latent3d)
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = [1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396]
C3 = [-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435]  # fmt: skip


def hand_basis(x: float, y: float, z: float) -> list[float]:
    """The 16 terms of INRIA's ``eval_sh`` for a unit direction, in its order and with its signs."""
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    return [
        C0,
        -C1 * y, C1 * z, -C1 * x,
        C2[0] * xy, C2[1] * yz, C2[2] * (2.0 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy),
        C3[0] * y * (3 * xx - yy), C3[1] * xy * z, C3[2] * y * (4 * zz - xx - yy),
        C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy), C3[5] * z * (xx - yy),
        C3[6] * x * (xx - 3 * yy),
    ]  # fmt: skip


def test_inria_constants_are_the_real_sh_normalisations():
    """The literals above are the real-SH normalisation constants (so the hand formula is the real basis)."""
    pi = math.pi
    assert C0 == pytest.approx(0.5 / math.sqrt(pi), abs=1e-15)
    assert C1 == pytest.approx(math.sqrt(3 / (4 * pi)), abs=1e-15)
    want2 = [0.5 * math.sqrt(15 / pi), -0.5 * math.sqrt(15 / pi), 0.25 * math.sqrt(5 / pi), -0.5 * math.sqrt(15 / pi),
             0.25 * math.sqrt(15 / pi)]  # fmt: skip
    want3 = [-0.25 * math.sqrt(35 / (2 * pi)), 0.5 * math.sqrt(105 / pi), -0.25 * math.sqrt(21 / (2 * pi)),
             0.25 * math.sqrt(7 / pi), -0.25 * math.sqrt(21 / (2 * pi)), 0.25 * math.sqrt(105 / pi),
             -0.25 * math.sqrt(35 / (2 * pi))]  # fmt: skip
    assert C2 == pytest.approx(want2, abs=1e-15) and C3 == pytest.approx(want3, abs=1e-15)


def _directions() -> torch.Tensor:  # [M, 3] generic unit directions: no component near 0, all sign patterns
    signs = torch.tensor([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], dtype=D)
    base = torch.tensor([[0.3, 0.5, 0.81], [0.72, -0.4, 0.35], [0.2, 0.9, -0.45]], dtype=D)
    return torch.nn.functional.normalize((signs[:, None] * base[None].abs()).reshape(-1, 3), dim=-1)


@pytest.mark.parametrize("k", range(16))
def test_each_basis_function_matches_inria(k):
    """One coefficient at a time (a one-hot SH vector) in every octant: a flipped sign, swapped index or wrong
    polynomial of coefficient k fails here and only here."""
    dirs = _directions()
    want = torch.tensor([hand_basis(*d.tolist())[k] for d in dirs], dtype=D)
    assert float(want.abs().min()) > 1e-3  # generic directions: the term is not ~0, so its sign is visible
    assert_close(sh_basis(3, dirs)[:, k], want, atol=TOL, rtol=0)
    coeffs = torch.zeros(len(dirs), 16, 3, dtype=D)
    coeffs[:, k] = torch.tensor([1.0, -2.0, 0.5], dtype=D)
    out = eval_sh(3, dirs * 2.5, coeffs)  # eval_sh normalises the direction itself
    assert_close(out, want[:, None] * torch.tensor([1.0, -2.0, 0.5], dtype=D), atol=TOL, rtol=0)


def test_rendered_degree3_gaussian_matches_hand_colour_with_camera_to_gaussian_direction():
    """Three cameras look at one degree-3 Gaussian off the origin; the colour of every drawn pixel (img / alpha,
    constant for one Gaussian without background) is max(0.5 + sum_k Y_k(d) c_k, 0) with d = (mean - camera centre)
    / |.|. The opposite direction (camera - mean, which flips every odd-degree term) gives colours >= 0.05 away."""
    mean = torch.tensor([0.3, -0.2, 0.15], dtype=D)
    eyes = torch.tensor([[2.5, 1.0, 1.2], [-1.0, -2.6, 0.4], [0.5, 1.8, -2.2]], dtype=D)
    V = look_at(eyes, mean.expand(3, 3), dtype=D)
    W = H = 15
    f = 20.0
    K = torch.tensor([[f, 0.0, W / 2], [0.0, f, H / 2], [0.0, 0.0, 1.0]], dtype=D).expand(3, 3, 3)
    g = torch.Generator().manual_seed(0)
    sh = torch.randn(1, 16, 3, generator=g, dtype=D) * 0.25
    sh[0, 0] = 0.0  # DC: colour 0.5, so that the view-dependent part decides everything
    quat = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=D)
    scale, opacity = torch.full((1, 3), 0.2, dtype=D), torch.tensor([0.9], dtype=D)
    img, alpha, _ = rasterize(mean[None], quat, scale, opacity, sh, V, K, W, H, sh_degree=3)
    centres = camera_centers(V)
    assert_close(centres, eyes, atol=TOL, rtol=0)
    for c in range(3):
        d = torch.nn.functional.normalize(mean - eyes[c], dim=0)
        want = [max(0.5 + sum(b * float(sh[0, k, ch]) for k, b in enumerate(hand_basis(*d.tolist()))), 0.0)
                for ch in range(3)]  # fmt: skip
        flipped = [max(0.5 + sum(b * float(sh[0, k, ch]) for k, b in enumerate(hand_basis(*(-d).tolist()))), 0.0)
                   for ch in range(3)]  # fmt: skip
        want_t, flipped_t = torch.tensor(want, dtype=D), torch.tensor(flipped, dtype=D)
        assert float((want_t - flipped_t).abs().max()) > 0.05  # the test can tell the two directions apart
        assert float(want_t.min()) > 0.0  # no channel clamped at 0: every coefficient counts
        drawn = alpha[c, ..., 0] > 0.05
        assert int(drawn.sum()) > 9
        colour = img[c][drawn] / alpha[c][drawn]
        assert_close(colour, want_t.expand_as(colour), atol=1e-10, rtol=0)  # division by alpha >= 0.05: 1e-10
