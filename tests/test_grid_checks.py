"""The grid convention in one place: world points to ``grid_sample`` coordinates (a voxel centre reads exactly its
voxel, the box faces are -1 and 1, the axes passed as (z, y, x)), and the checks' first problem."""

import numpy as np
import torch
import torch.nn.functional as F

from latent3d.render.grid_checks import box_problem, grid_problem, grid_sample_coords


def test_a_voxel_centre_reads_its_voxel_and_the_box_faces_are_plus_minus_one():
    grid = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 1, 2, 3, 4)  # [1, 1, X, Y, Z]
    lo, hi = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 3.0, 6.0], dtype=torch.float64)
    idx = torch.tensor([[0, 0, 0], [1, 2, 3], [1, 0, 2], [0, 1, 3]], dtype=torch.float64)
    centres = lo + (idx + 0.5) * (hi - lo) / torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    vals = F.grid_sample(grid, grid_sample_coords(centres, lo, hi)[None, :, None, None, :], align_corners=False)
    expected = grid[0, 0][tuple(idx.long().T)]
    torch.testing.assert_close(vals.flatten(), expected, rtol=0, atol=1e-12)  # weight 1 on the voxel, up to rounding
    assert torch.equal(grid_sample_coords(torch.stack([lo, hi]), lo, hi), torch.tensor([[-1.0] * 3, [1.0] * 3],
                                                                                         dtype=torch.float64))


def test_the_first_problem_of_a_grid():
    d, c, lo, hi = np.ones((2, 2, 2)), np.zeros((3, 2, 2, 2)), np.zeros(3), np.ones(3)
    assert grid_problem(d, c, lo, hi) is None
    assert "density must be [X, Y, Z]" in grid_problem(d[0], c, lo, hi)
    assert "rgb must be [3, 2, 2, 2] like density" in grid_problem(d, c[:2], lo, hi)
    assert "must be [3]" in grid_problem(d, c, lo[:2], hi)
    bad = d.copy()
    bad[0, 0, :] = np.nan
    assert grid_problem(bad, c, lo, hi) == "density has 2 NaN or infinite values"
    assert "density must be >= 0" in grid_problem(-d, c, lo, hi)
    assert grid_problem(d, c, hi, lo) == box_problem(hi, lo) == "bbox_max [0.0, 0.0, 0.0] must exceed bbox_min " \
        "[1.0, 1.0, 1.0] on every axis"
    assert box_problem(torch.zeros(3), torch.ones(3)) is None  # tensors too
