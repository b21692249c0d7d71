"""Volume rendering of voxel grids (render/volume.py): ray-box clipping by hand, closed forms of a constant-density
box (Max 1995 transmittance, truncated-exponential depth), axis order / voxel-centre convention with one dense voxel
in a non-cubic grid, and the fast path held to its loop twin (forward and gradients, float64)."""

from __future__ import annotations

import math

import pytest
import torch

from latent3d.render.volume import (
    ray_box_intersect,
    ray_samples,
    render_volume,
    render_volume_reference,
)

D64 = torch.float64
LO, HI = (-1.0, -2.0, -3.0), (1.0, 2.0, 3.0)


def _rays(o, d):  # [1, R, 3] each, from one (x, y, z) or a list of them
    return torch.tensor(o, dtype=D64).reshape(1, -1, 3), torch.tensor(d, dtype=D64).reshape(1, -1, 3)


# ---------------------------------------------------------------------------------------------------------------
# ray_box_intersect

@pytest.mark.parametrize(
    "o, d, near, far",
    [
        ((-5, 0, 0), (1, 0, 0), 4.0, 6.0),  # axis-aligned, zero y/z components
        ((-5, 0, 0), (2, 0, 0), 2.0, 3.0),  # t in units of |d|
        ((5, 1, 0), (-1, 0, 0), 4.0, 6.0),  # negative direction
        ((0, 0, -10), (0, 0, 1), 7.0, 13.0),
        ((-3, -3, -3), (1, 1, 1), 2.0, 4.0),  # diagonal: slabs x [2, 4], y [1, 5], z [0, 6]
        ((-2, -3, -4), (1, 1, 1), 1.0, 3.0),  # diagonal: x [1, 3], y [1, 5], z [1, 7]
        ((0, 0, 0), (0, 0, 1), 0.0, 3.0),  # from inside: starts at 0
        ((0, 0, 0), (0.6, 0.8, 0), 0.0, 1 / 0.6),  # from inside, diagonal: x exits at 1/0.6, before y at 2/0.8
        ((0.5, 0, 0), (-0.5, 0.5, 0), 0.0, 3.0),  # inside: x exits at t=3 (x=-1), y at 4
        ((-1, 0, 0), (0, 1, 0), 0.0, 2.0),  # on a face, parallel to it: inside (closed box)
    ],
)
def test_ray_box_hits(o, d, near, far):
    n, f, hit = ray_box_intersect(*_rays(o, d), LO, HI)
    assert bool(hit.all()) and n.shape == (1, 1)
    assert abs(n.item() - near) < 1e-12 and abs(f.item() - far) < 1e-12


@pytest.mark.parametrize(
    "o, d",
    [
        ((-5, 5, 0), (1, 0, 0)),  # parallel to the y slab, outside it
        ((-5, 0, 0), (1, 1, 0)),  # x [4, 6] and y [-2, 2] do not overlap
        ((-5, 0, 0), (-1, 0, 0)),  # box behind the origin
        ((0, 0, 0), (0, 0, 0)),  # zero direction, even from inside
        ((-1.5, 0, 0), (0, 0, 1)),  # parallel, just outside the x slab
    ],
)
def test_ray_box_misses(o, d):
    n, f, hit = ray_box_intersect(*_rays(o, d), torch.tensor(LO), torch.tensor(HI))
    assert not bool(hit.any())
    assert n.item() == 0.0 and f.item() == 0.0


def test_ray_box_batch_shapes_no_nan():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(2, 3, 5, 3, generator=g, dtype=D64) * 4
    d = torch.randn(2, 3, 5, 3, generator=g, dtype=D64)
    d[0, :, :, 1] = 0.0
    d[1, 0] = 0.0
    n, f, hit = ray_box_intersect(o, d, LO, HI)
    assert n.shape == f.shape == hit.shape == (2, 3, 5)
    assert torch.isfinite(n).all() and torch.isfinite(f).all()
    assert bool((n >= 0).all()) and bool((f[hit] > n[hit]).all())
    mid = o + 0.5 * (n + f)[..., None] * d  # segment midpoints lie in the box
    lo, hi = torch.tensor(LO, dtype=D64), torch.tensor(HI, dtype=D64)
    assert bool(((mid >= lo - 1e-9) & (mid <= hi + 1e-9)).all(-1)[hit].all())


# ---------------------------------------------------------------------------------------------------------------
# closed forms: constant density sigma, colour c, background b

SIGMA = 0.7
COLOUR = (0.2, 0.5, 0.9)
BACK = (0.1, 0.3, 0.6)


def _constant_grid(shape=(4, 5, 6), sigma=SIGMA, colour=COLOUR):
    density = torch.full((1, 1, *shape), sigma, dtype=D64)
    features = torch.tensor(colour, dtype=D64).reshape(1, 3, 1, 1, 1).expand(1, 3, *shape).contiguous()
    return density, features


@pytest.mark.numerics
@pytest.mark.parametrize(
    "o, d, L",
    [
        ((-5, 0.3, 0.1), (1, 0, 0), 2.0),  # along x through the box
        ((0.2, -0.5, -7), (0, 0, 1), 6.0),  # along z
        ((-3, -3, -3), (1 / math.sqrt(3),) * 3, 2 * math.sqrt(3)),  # diagonal, world length of t in [2, 4]*sqrt(3)
        ((0, 0, 0), (0.6, 0.8, 0), 1 / 0.6),  # from inside, unit direction: x = 0.6 t reaches 1 before y = 0.8 t 2
    ],
)
def test_constant_density_closed_form(o, d, L):
    density, features = _constant_grid()
    origins, dirs = _rays(o, d)
    out = render_volume(density, features, LO, HI, origins, dirs, n_samples=37, background=torch.tensor(BACK, dtype=D64))
    e = math.exp(-SIGMA * L)
    torch.testing.assert_close(out.occupancy, torch.tensor([[1 - e]], dtype=D64), rtol=0, atol=1e-13)
    want = torch.tensor(COLOUR, dtype=D64) * (1 - e) + torch.tensor(BACK, dtype=D64) * e
    torch.testing.assert_close(out.rgb, want.reshape(1, 1, 3), rtol=0, atol=1e-13)


def _truncated_exp_depth(sigma, L):  # E[s] for density sigma e^{-sigma s} on [0, L], normalised
    return 1 / sigma - L * math.exp(-sigma * L) / (1 - math.exp(-sigma * L))


def _discrete_depth(sigma, L, S):  # midpoint samples: sum_i q^i (1-q) (i + 1/2) delta / (1 - q^S), q = e^{-sigma delta}
    delta = L / S
    q = math.exp(-sigma * delta)
    sum_iq = q * (1 - S * q ** (S - 1) + (S - 1) * q**S) / (1 - q) ** 2  # sum_{i<S} i q^i
    return delta * (0.5 + (1 - q) * sum_iq / (1 - q**S))


@pytest.mark.numerics
@pytest.mark.parametrize("sigma", [0.7, 3.0])
def test_constant_density_depth(sigma):
    density, features = _constant_grid(sigma=sigma)
    origins, dirs = _rays((-5, 0.3, 0.1), (1, 0, 0))  # near 4, L 2
    near, L = 4.0, 2.0
    for S in (16, 64):  # the discrete closed form, exactly
        out = render_volume(density, features, LO, HI, origins, dirs, n_samples=S)
        assert abs(out.depth.item() - (near + _discrete_depth(sigma, L, S))) < 1e-12
    # continuous limit: each interval carries exactly its continuous mass, and the exponential is memoryless, so the
    # error is the same in every interval, delta/2 - (1/sigma - delta/(e^{sigma delta} - 1)) = sigma delta^2/12 - O(delta^4)
    S = 2048
    delta = L / S
    out = render_volume(density, features, LO, HI, origins, dirs, n_samples=S)
    err = out.depth.item() - (near + _truncated_exp_depth(sigma, L))
    assert 0 < err <= sigma * delta**2 / 12 * (1 + 1e-6) + 1e-12
    assert abs(err - (delta / 2 - 1 / sigma + delta / math.expm1(sigma * delta))) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, D64])
def test_empty_grid_renders_background_exactly(dtype):
    g = torch.Generator().manual_seed(1)
    B, R, C = 2, 50, 3
    density = torch.zeros(B, 1, 3, 4, 5, dtype=dtype, requires_grad=True)
    features = torch.rand(B, C, 3, 4, 5, generator=g, dtype=dtype, requires_grad=True)
    origins = torch.randn(B, R, 3, generator=g, dtype=dtype) * 4
    dirs = torch.randn(B, R, 3, generator=g, dtype=dtype)
    dirs[:, :10, 0] = 0.0  # parallel to the x faces
    bg = torch.rand(B, R, C, generator=g, dtype=dtype)
    out = render_volume(density, features, LO, HI, origins, dirs, n_samples=16, background=bg, return_weights=True)
    assert torch.equal(out.rgb, bg)
    assert bool((out.occupancy == 0).all()) and bool((out.depth == 0).all()) and bool((out.weights == 0).all())
    (out.rgb.sum() + out.occupancy.sum() + out.depth.sum()).backward()
    assert torch.isfinite(density.grad).all() and torch.isfinite(features.grad).all()
    assert density.grad.abs().sum() > 0  # density still gets a gradient from the empty state


@pytest.mark.parametrize("shape", ["C", "BC", "BRC"])
def test_background_shapes_and_misses(shape):
    density, features = _constant_grid(sigma=5.0)
    density, features = density.expand(2, -1, -1, -1, -1), features.expand(2, -1, -1, -1, -1)
    origins = torch.tensor([[[-5, 0, 0], [-5, 5, 0]]] * 2, dtype=D64)  # a hit and a miss per batch element
    dirs = torch.tensor([[[1, 0, 0], [1, 0, 0]]] * 2, dtype=D64)
    full = torch.tensor([[BACK, BACK], [COLOUR, COLOUR]], dtype=D64)  # [B, R, C]
    bg = {"C": full[0, 0], "BC": full[:, 0], "BRC": full}[shape]
    out = render_volume(density, features, LO, HI, origins, dirs, n_samples=8, background=bg)
    want = full if shape != "C" else full[0].expand(2, 2, 3)
    assert torch.equal(out.rgb[:, 1], want[:, 1]) and bool((out.occupancy[:, 1] == 0).all())
    assert bool((out.depth[:, 1] == 0).all()) and bool((out.occupancy[:, 0] > 0.99).all())


# ---------------------------------------------------------------------------------------------------------------
# axis order and voxel-centre convention: one dense voxel in a non-cubic grid and box

SHAPE1 = (4, 5, 6)  # X, Y, Z
LO1, HI1 = (0.0, 0.0, 0.0), (2.0, 5.0, 9.0)  # voxel size (0.5, 1, 1.5)
IDX1 = (1, 3, 4)  # centre (0.75, 3.5, 6.75)


@pytest.mark.numerics
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_single_voxel_axis_order(padding):
    density = torch.zeros(1, 1, *SHAPE1, dtype=D64)
    density[0, 0, IDX1[0], IDX1[1], IDX1[2]] = 2.0
    features = torch.ones(1, 3, *SHAPE1, dtype=D64)
    cx, cy, cz = 0.75, 3.5, 6.75
    size = (0.5, 1.0, 1.5)
    origins = [(-1, cy, cz), (cx, -1, cz), (cx, cy, -1),  # through the centre along x, y, z
               (-1, cy - 1, cz), (-1, cy + 1, cz), (-1, cy, cz + 1.5), (cx + 0.5, -1, cz), (cx, cy - 1, -1)]
    dirs = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    # S = 120 puts the kinks of the trilinear hat on interval boundaries on all three axes, so the midpoint rule
    # integrates the hat exactly: optical depth = sigma * voxel size along the ray's axis
    out = render_volume(density, features, LO1, HI1, *_rays(origins, dirs), n_samples=120, padding=padding)
    want = torch.tensor([1 - math.exp(-2.0 * s) for s in size] + [0.0] * 5, dtype=D64)
    torch.testing.assert_close(out.occupancy[0], want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# fast path == loop twin

def _random_scene(seed, B=2, R=40, C=3, shape=(3, 4, 5), zero_dirs=True):
    g = torch.Generator().manual_seed(seed)
    density = (torch.rand(B, 1, *shape, generator=g, dtype=D64) * 3).requires_grad_()
    features = torch.rand(B, C, *shape, generator=g, dtype=D64).requires_grad_()
    lo, hi = torch.tensor(LO, dtype=D64), torch.tensor(HI, dtype=D64)
    target = lo + (hi - lo) * torch.rand(B, R, 3, generator=g, dtype=D64) * 1.2 - 0.1 * (hi - lo)  # some miss
    origins = torch.randn(B, R, 3, generator=g, dtype=D64) * 5
    origins[:, :5] = target[:, :5] * 0.5  # some start inside
    dirs = torch.nn.functional.normalize(target - origins, dim=-1)
    if zero_dirs:
        dirs[:, 5:10, 1] = 0.0
    bg = torch.rand(B, C, generator=g, dtype=D64)
    return density, features, origins, dirs, bg


@pytest.mark.numerics
@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("jitter", [False, True])
def test_fast_matches_reference(padding, jitter):
    density, features, origins, dirs, bg = _random_scene(3)
    outs, grads = [], []
    for fn in (render_volume, render_volume_reference):
        gen = torch.Generator().manual_seed(7) if jitter else None
        out = fn(density, features, LO, HI, origins, dirs, n_samples=24, background=bg, generator=gen,
                 return_weights=True, padding=padding)
        g = torch.Generator().manual_seed(11)
        loss = ((out.rgb * torch.randn(out.rgb.shape, generator=g, dtype=D64)).sum()
                + (out.occupancy * torch.randn(out.occupancy.shape, generator=g, dtype=D64)).sum()
                + (out.depth * torch.randn(out.depth.shape, generator=g, dtype=D64)).sum())
        outs.append(out)
        grads.append(torch.autograd.grad(loss, (density, features)))
    fast, ref = outs
    assert fast.occupancy.max() > 0.5 and (fast.occupancy == 0).any()  # the scene has hits and misses
    for name in ("rgb", "occupancy", "depth", "weights"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), rtol=1e-10, atol=1e-12, msg=name)
    for gf, gr in zip(*grads):
        assert gr.abs().max() > 0
        torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-12)


@pytest.mark.numerics
@pytest.mark.parametrize("fn", [render_volume, render_volume_reference])
def test_gradcheck(fn):
    density, features, origins, dirs, bg = _random_scene(5, B=1, R=4, C=2, shape=(2, 3, 2), zero_dirs=False)

    def f(den, feat):
        out = fn(den, feat, LO, HI, origins, dirs, n_samples=5, background=bg)
        return out.rgb, out.occupancy, out.depth

    assert torch.autograd.gradcheck(f, (density, features), eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------
# sampling

def test_ray_samples_midpoints_and_jitter():
    near = torch.tensor([0.0, 1.0, 2.5], dtype=D64)
    far = torch.tensor([1.0, 3.0, 2.5], dtype=D64)  # the last is an empty segment
    S = 8
    delta = (far - near) / S
    left = near[:, None] + torch.arange(S, dtype=D64) * delta[:, None]
    mid = ray_samples(near, far, S)
    torch.testing.assert_close(mid, left + 0.5 * delta[:, None], rtol=0, atol=1e-14)
    t1 = ray_samples(near, far, S, torch.Generator().manual_seed(0))
    t2 = ray_samples(near, far, S, torch.Generator().manual_seed(0))
    t3 = ray_samples(near, far, S, torch.Generator().manual_seed(1))
    assert torch.equal(t1, t2) and not torch.equal(t1, t3) and not torch.equal(t1[:2], mid[:2])
    tol = 1e-14
    assert bool((t1 >= left - tol).all()) and bool((t1 <= left + delta[:, None] + tol).all())


def test_render_jitter_reproducible():
    density, features, origins, dirs, _ = _random_scene(9)

    def run(gen):
        return render_volume(density, features, LO, HI, origins, dirs, n_samples=16, generator=gen)

    a, b = run(torch.Generator().manual_seed(4)), run(torch.Generator().manual_seed(4))
    c, m = run(torch.Generator().manual_seed(5)), run(None)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth)
    assert not torch.equal(a.rgb, c.rgb) and not torch.equal(a.rgb, m.rgb)
    assert torch.equal(m.rgb, run(None).rgb)
    torch.testing.assert_close(a.rgb, m.rgb, rtol=0, atol=0.05)  # same integral, different quadrature points


def test_float32_inputs_and_bad_shapes():
    density, features, origins, dirs, _ = _random_scene(2)
    out = render_volume(density.float(), features.float(), LO, HI, origins.float(), dirs.float(), n_samples=16)
    ref = render_volume(density, features, LO, HI, origins, dirs, n_samples=16)
    assert out.rgb.dtype == torch.float32 and out.weights is None
    torch.testing.assert_close(out.rgb.double(), ref.rgb, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="density must be"):
        render_volume(density[:, 0], features, LO, HI, origins, dirs)
    with pytest.raises(ValueError, match="bbox_max"):
        render_volume(density, features, HI, LO, origins, dirs)
