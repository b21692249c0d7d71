"""Lifting images into voxels (render/lift.py, NF-LDM Sec. 3.1): occupancy weights in closed form, frustum points
that project back onto their pixels at their depths, and the index_add splat equal to its dense twin (values and
gradients)."""

from __future__ import annotations

import math

import torch

from latent3d.render.camera import intrinsics_from_fov, look_at, project_points
from latent3d.render.lift import (
    depth_bins,
    frustum_points,
    lift,
    occupancy_weights,
    splat_to_voxels,
    splat_to_voxels_reference,
    voxel_index,
)


def test_occupancy_weights_of_constant_density_and_of_an_opaque_bin():
    centres, deltas = depth_bins(0.5, 4.5, 8)
    torch.testing.assert_close(centres, 0.75 + 0.5 * torch.arange(8.0))
    sigma = torch.full((1, 8, 2, 3), 0.7, dtype=torch.float64)
    w = occupancy_weights(sigma, deltas.double())
    d = torch.arange(8, dtype=torch.float64)[None, :, None, None]
    expect = torch.exp(-0.7 * 0.5 * d) * (1 - math.exp(-0.7 * 0.5))  # T_d alpha for a constant density
    torch.testing.assert_close(w, expect.expand_as(w), rtol=1e-14, atol=0)
    torch.testing.assert_close(w.sum(1), torch.full((1, 2, 3), 1 - math.exp(-0.7 * 4), dtype=torch.float64))
    sigma = torch.zeros(1, 8, 1, 1, dtype=torch.float64)
    sigma[0, 3] = 1e4  # an opaque surface in bin 3 hides bins 4..7
    w = occupancy_weights(sigma, deltas.double())[0, :, 0, 0]
    assert float(w[3]) == 1.0 and float(w.sum()) == 1.0 and float(w[4:].abs().max()) == 0.0
    cells = lift(torch.ones(1, 2, 1, 1, dtype=torch.float64), sigma, deltas.double())
    assert cells.shape == (1, 3, 8, 1, 1) and torch.equal(cells[0, 0, :, 0, 0], w) and torch.equal(cells[0, 2], sigma[0])


def test_frustum_points_project_back_onto_their_pixels_at_their_depths():
    eye = torch.tensor([[1.0, -2.0, 1.5], [0.0, 3.0, 1.0]], dtype=torch.float64)
    V = look_at(eye, torch.tensor([[2.0, 1.0, 1.2], [0.5, 0.0, 0.5]], dtype=torch.float64), dtype=torch.float64)
    K = intrinsics_from_fov(torch.tensor([1.2, 0.9]), 6, 4).double()
    depths = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    pts = frustum_points(K, V, depths, 4, 6)  # [2, 3, 4, 6, 3]
    for v in range(2):
        uv, z = project_points(pts[v].reshape(-1, 3), V[v:v + 1], K[v:v + 1])
        cols, rows = torch.meshgrid(torch.arange(6) + 0.5, torch.arange(4) + 0.5, indexing="xy")
        torch.testing.assert_close(uv[0].reshape(3, 4, 6, 2), torch.stack([cols, rows], -1).double().expand(3, 4, 6, 2))
        torch.testing.assert_close(z[0].reshape(3, 4, 6), depths[:, None, None].expand(3, 4, 6))


def test_a_point_lands_in_its_voxel_and_the_splat_equals_its_dense_twin():
    lo, hi, res = (-2.0, -1.0, 0.0), (2.0, 3.0, 1.0), (4, 8, 2)
    idx, inside = voxel_index(torch.tensor([[-1.9, 2.9, 0.6], [1.5, -0.25, 0.1], [2.5, 0.0, 0.5]]), lo, hi, res)
    assert inside.tolist() == [True, True, False]
    assert idx[:2].tolist() == [(0 * 8 + 7) * 2 + 1, (3 * 8 + 1) * 2 + 0]
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(500, 3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 5.0, 1.4]) - torch.tensor(
        [2.5, 1.5, 0.2], dtype=torch.float64)  # some outside the box
    vals = torch.randn(500, 3, generator=g, dtype=torch.float64, requires_grad=True)
    grid, count = splat_to_voxels(pts, vals, lo, hi, res)
    ref, ref_count = splat_to_voxels_reference(pts, vals, lo, hi, res)
    assert torch.equal(count, ref_count) and 0 < int(count.sum()) < 500 and int((count == 0).sum()) > 0
    torch.testing.assert_close(grid, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn(grid.shape, generator=g, dtype=torch.float64)
    (g1,) = torch.autograd.grad((grid * w).sum(), vals)
    (g2,) = torch.autograd.grad((ref * w).sum(), vals)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    one = (count == 1).nonzero()[0]  # a voxel holding one point holds exactly that point's values
    k = int(((voxel_index(pts, lo, hi, res)[0] == (one[0] * 8 + one[1]) * 2 + one[2]) & voxel_index(
        pts, lo, hi, res)[1]).nonzero()[0])
    assert torch.equal(grid[:, one[0], one[1], one[2]], vals[k].detach())
