"""Differentiable tile rasterization of 3D Gaussians in pure PyTorch (CPU and CUDA), gsplat backend when present.

Semantics follow Kerbl et al. 2023 (3DGS) Sec. 6 and gsplat's ``rasterization``: EWA projection (Zwicker et al. 2002)
with a 0.3 px dilation, 3-sigma radius, square tiles (16 px on gsplat; 8 on the torch path, 4 for small images),
per-tile front-to-back order by depth, ``alpha = min(0.999, o * exp(-power))`` (gsplat's clamp, so that both
backends render opaque splats alike; the INRIA rasterizer of 3DGS and LucidDreamer clamps at 0.99), Gaussians
with ``alpha < 1/255`` skipped, and a pixel stops at the Gaussian that would bring its transmittance below 1e-4
(that Gaussian is not blended).

Two implementations of the pixel stage, held together by tests:

- ``rasterize_to_pixels`` (fast path): tiles grouped into blocks of ``[tiles, tile px, K Gaussians]`` bounded by
  ``chunk_size`` elements; the Gaussian "power" is one matmul of a fixed per-pixel quadratic basis
  ``[1, x, y, x^2, xy, y^2]`` with per-(tile, Gaussian) coefficients ``theta``; transmittance by ``cumprod``; a
  hand-written backward recomputes alphas block by block (nothing ``[P, K]``-sized is kept between passes) and gets
  the suffix sums of the compositing gradient from the rendered colour, so memory is bounded by the block size.
- ``rasterize_to_pixels_reference`` (twin): every pixel against every Gaussian with plain autograd; tiny scenes only.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from latent3d.render.camera import camera_centers
from latent3d.render.project import Projection, isect_tiles, project_gaussians, quat_scale_to_covar
from latent3d.render.sh import eval_sh

ALPHA_MAX = 0.999  # gsplat's clamp (INRIA 3DGS: 0.99): backend="auto" renders the same on CPU and CUDA
ALPHA_MIN = 1.0 / 255.0  # Gaussians below this alpha are skipped at a pixel
T_MIN = 1e-4  # a pixel stops before the Gaussian that would bring its transmittance below this
_LOG_T_MIN = math.log(T_MIN)
_PAD_POWER = 1e4  # power of padding entries: exp(-1e4) == 0
# float32 neighbours below the thresholds: ``threshold(x, below(v), 0)`` keeps x >= v (as ``x < v`` masks compare
# in float32) in one fused pass, 5-8x faster on CPU than a boolean mask and ``masked_fill_``
_ALPHA_SKIP = float(np.nextafter(np.float32(ALPHA_MIN), np.float32(0)))
_T_LIVE = float(np.nextafter(np.float32(T_MIN), np.float32(0)))


def default_tile_size(backend: str, width: int, height: int) -> int:
    """Tile edge in px: 16 on gsplat (its default); on the torch path 8, or 4 for images of <= 64 px (rasterize())."""
    if backend != "torch":
        return 16
    return 4 if max(width, height) <= 64 else 8


RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
Backend = Literal["auto", "torch", "gsplat"]


# ----------------------------------------------------------------------------------------------------------------
# fast path


def _pixel_basis(tile_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:  # [P, 6]
    """Quadratic basis [1, x, y, x^2, xy, y^2] of pixel centres relative to the tile centre (row-major pixels)."""
    c = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - 0.5 * tile_size
    y, x = torch.meshgrid(c, c, indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    return torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y], dim=-1)


def _isect_theta(
    means2d: Tensor,  # [M, 2] pixel-space means of each (tile, Gaussian) pair
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M] > 0
    centers: Tensor,  # [M, 2] centre of the pair's tile in pixels
) -> Tensor:  # [M, 6]
    """Coefficients theta with ``power - log(o) = basis(px) . theta`` for pixels px of the pair's tile."""
    mx, my = (means2d - centers).unbind(-1)
    a, b, c = conics.unbind(-1)
    const = 0.5 * a * mx * mx + b * mx * my + 0.5 * c * my * my - torch.log(opacities)
    return torch.stack([const, -(a * mx + b * my), -(b * mx + c * my), 0.5 * a, b, 0.5 * c], dim=-1)


def _alpha_radii(
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [C, N]
    radii: Tensor,  # [C, N] int, the 3-sigma radii (0 = culled)
) -> Tensor:  # [C, N] int
    """Tile-culling radii: the 3-sigma radius, or less where the Gaussian's alpha drops below 1/255 sooner.

    ``alpha = o exp(-d^T Sigma^-1 d / 2) < 1/255`` once ``|d|^2 > 2 ln(255 o) lambda_max(Sigma)``, and a pixel of a
    tile outside the square of that half-size has ``|d|`` beyond it, so the pixels this drops are skipped pixels:
    the image and its gradients are unchanged while faint Gaussians touch fewer tiles (a bundled dream's splats,
    median opacity 0.02: 13 % fewer pairs with 8 px tiles). ``lambda_max(Sigma) = 1 / lambda_min(conic)``.
    """
    a, b, c = conics.unbind(-1)
    lam_min = 0.5 * (a + c) - torch.sqrt((0.5 * (a - c)) ** 2 + b * b)
    r2 = 2.0 * torch.log((255.0 * opacities).clamp_min(1.0)) / lam_min.clamp_min(1e-30)
    r = torch.ceil(torch.sqrt(r2) * (1.0 + 1e-4))  # the margin keeps float rounding on the safe side
    return torch.minimum(radii, r.clamp_max(float(torch.iinfo(torch.int32).max)).to(radii.dtype))


def _plan_blocks(counts: Tensor, pixels: int, chunk_size: int) -> list[tuple[Tensor, int, int]]:
    """Group non-empty tiles (sorted by count, descending) into blocks of at most ``chunk_size`` (tile, px, K) cells.

    Returns ``(tile_index [Tc], k_start, k_len)`` triples; a tile longer than ``chunk_size / pixels`` is split along
    K into consecutive blocks (processed in order, carrying transmittance).
    """
    nz = torch.nonzero(counts > 0).squeeze(1)
    if nz.numel() == 0:
        return []
    cnt = counts[nz]
    cnt_sorted, order = torch.sort(cnt, descending=True)
    tiles = nz[order]
    cl = cnt_sorted.tolist()
    kmax_chunk = max(1, chunk_size // pixels)
    blocks: list[tuple[Tensor, int, int]] = []
    i, n = 0, len(cl)
    while i < n:
        k = cl[i]
        if k > kmax_chunk:
            for k0 in range(0, k, kmax_chunk):
                blocks.append((tiles[i : i + 1], k0, min(kmax_chunk, k - k0)))
            i += 1
            continue
        tc = max(1, min(n - i, chunk_size // (pixels * k)))
        blocks.append((tiles[i : i + tc], 0, k))
        i += tc
    return blocks


def _block_alphas(theta: Tensor, basis: Tensor, idx: Tensor) -> Tensor:  # [Tc, P, Kc]
    """Clamped, skip-masked alphas of one block (shared by forward and backward so both see identical values)."""
    th = theta[idx]  # [Tc, Kc, 6]
    alpha = torch.matmul(basis, th.transpose(1, 2))  # power - log(o)
    # powers above 20 give alpha < 1/255 (skipped) either way; clamping keeps exp() out of denormals (slow on CPU)
    alpha = alpha.clamp_max_(20.0).neg_().exp_().clamp_max_(ALPHA_MAX)
    return torch.nn.functional.threshold_(alpha, _ALPHA_SKIP, 0.0)  # alpha < ALPHA_MIN -> 0, one fused pass


def _block_transmittance(om: Tensor, log_t_prev: Tensor | None) -> tuple[Tensor, Tensor]:
    """Inclusive transmittance prod_{j<=k} (1 - alpha_j) [Tc, P, Kc] and the log carry [Tc, P] for the next block.

    Computed in log space and floored at exp(-60): a plain cumprod runs into float32 denormals behind opaque
    layers (100x slower on CPU); values below T_MIN are masked out anyway.
    """
    log_t = torch.cumsum(torch.log(om), dim=-1)
    if log_t_prev is not None:
        log_t.add_(log_t_prev[:, :, None])
    log_t.clamp_min_(-60.0)
    return torch.exp(log_t), log_t[:, :, -1]


def _block_index(offsets: Tensor, counts: Tensor, tiles: Tensor, k0: int, kc: int, pad: int) -> Tensor:
    ar = torch.arange(k0, k0 + kc, device=offsets.device)
    idx = offsets[tiles][:, None] + ar
    return torch.where(ar < counts[tiles][:, None], idx, torch.full_like(idx, pad))


class _TileRaster(torch.autograd.Function):
    """Block-wise compositing with a hand-written backward (Kerbl et al. 2023 Sec. 6, Eq. 3)."""

    @staticmethod
    def forward(ctx, theta, colors, backgrounds, offsets, tile_size, chunk_size):
        # theta [M+1, 6] (last row = padding), colors [M+1, D], backgrounds [T, D] per tile; offsets [T+1]
        T_all, D = offsets.numel() - 1, colors.shape[-1]
        P = tile_size * tile_size
        basis = _pixel_basis(tile_size, theta.dtype, theta.device)
        counts = offsets[1:] - offsets[:-1]
        pad = theta.shape[0] - 1
        out = theta.new_zeros(T_all, P, D)
        acc = theta.new_zeros(T_all, P)
        blocks = _plan_blocks(counts, P, chunk_size)
        t_prev: Tensor | None = None
        for tiles, k0, kc in blocks:
            idx = _block_index(offsets, counts, tiles, k0, kc, pad)
            if k0 == 0:
                t_prev = None
            elif t_prev is not None and bool((t_prev < _LOG_T_MIN).all()):
                continue
            alpha = _block_alphas(theta, basis, idx)
            om = 1.0 - alpha
            trans, t_prev = _block_transmittance(om, t_prev)
            w = alpha.mul_(torch.nn.functional.threshold_(trans, _T_LIVE, 0.0)).div_(om)  # T < T_MIN: not blended
            col = torch.bmm(w, colors[idx])
            if k0 == 0:
                out[tiles] = col
                acc[tiles] = w.sum(-1)
            else:
                out[tiles] += col
                acc[tiles] += w.sum(-1)
        color_fg = out
        out = out + (1.0 - acc)[..., None] * backgrounds[:, None, :]
        ctx.save_for_backward(theta, colors, backgrounds, offsets, color_fg, acc)
        ctx.tile_size, ctx.chunk_size = tile_size, chunk_size
        return out, acc

    @staticmethod
    def backward(ctx, g_out, g_acc):
        theta, colors, backgrounds, offsets, color_fg, acc = ctx.saved_tensors
        tile_size, chunk_size = ctx.tile_size, ctx.chunk_size
        P = tile_size * tile_size
        basis = _pixel_basis(tile_size, theta.dtype, theta.device)
        counts = offsets[1:] - offsets[:-1]
        pad = theta.shape[0] - 1
        g_out = g_out.contiguous()
        t_fin = 1.0 - acc  # [T, P]
        # dL/dT_final through the background and through the accumulated alpha (= 1 - T_final)
        g_tfin = (g_out * backgrounds[:, None, :]).sum(-1) - g_acc
        g_bg = (g_out * t_fin[..., None]).sum(1) if ctx.needs_input_grad[2] else None
        total = (g_out * color_fg).sum(-1)  # sum_k g_k w_k over the whole ray
        const = total + g_tfin * t_fin  # [T, P]
        g_theta = torch.zeros_like(theta)
        g_colors = torch.zeros_like(colors)
        t_prev: Tensor | None = None
        pre_prev: Tensor | None = None
        for tiles, k0, kc in _plan_blocks(counts, P, chunk_size):
            idx = _block_index(offsets, counts, tiles, k0, kc, pad)
            if k0 == 0:
                t_prev, pre_prev = None, None
            elif t_prev is not None and bool((t_prev < _LOG_T_MIN).all()):
                continue
            alpha = _block_alphas(theta, basis, idx)
            om = 1.0 - alpha
            trans, t_prev = _block_transmittance(om, t_prev)
            trans = torch.nn.functional.threshold_(trans, _T_LIVE, 0.0)  # 0 past the stop, as in the forward
            w = (alpha * trans).div_(om)
            G = g_out[tiles]  # [Tc, P, D]
            c_blk = colors[idx]  # [Tc, Kc, D]
            g = torch.bmm(G, c_blk.transpose(1, 2))  # dL/dw  [Tc, P, Kc]
            cum = torch.cumsum(g * w, dim=-1)
            if pre_prev is not None:
                cum.add_(pre_prev[:, :, None])
            pre_prev = cum[:, :, -1]
            # dL/dalpha_k = (T_k+1 g_k - sum_{j>k} g_j w_j - dL/dT_fin * T_fin) / (1 - alpha_k)
            d = g.mul_(trans).add_(cum).sub_(const[tiles][:, :, None]).div_(om)
            # live pairs: blended (T >= T_MIN: sign(T) = 1) and not clamped (alpha < ALPHA_MAX; skipped ones are 0)
            d.mul_(torch.nn.functional.threshold_(alpha.neg_(), -ALPHA_MAX, 0.0)).mul_(trans.sign_())  # dL/dpower
            g_theta.index_add_(0, idx.reshape(-1), torch.matmul(d.transpose(1, 2), basis).reshape(-1, 6))
            g_colors.index_add_(0, idx.reshape(-1), torch.bmm(w.transpose(1, 2), G).reshape(-1, colors.shape[-1]))
        g_theta[pad] = 0
        g_colors[pad] = 0
        return g_theta, g_colors, g_bg, None, None, None


def _tiles_to_image(x: Tensor, C: int, tiles_y: int, tiles_x: int, tile_size: int, height: int, width: int) -> Tensor:
    D = x.shape[-1]
    x = x.reshape(C, tiles_y, tiles_x, tile_size, tile_size, D).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(C, tiles_y * tile_size, tiles_x * tile_size, D)[:, :height, :width]


def rasterize_to_pixels(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    depths: Tensor,  # [C, N] sort key (camera-space z)
    radii: Tensor,  # [C, N] int, 0 = culled
    width: int,
    height: int,
    tile_size: int = 8,
    backgrounds: Tensor | None = None,  # [C, D]
    chunk_size: int = 2**19,
) -> tuple[Tensor, Tensor, dict]:  # colors [C, H, W, D], alphas [C, H, W, 1], isect info
    """Alpha-composite projected Gaussians front to back per pixel (Kerbl et al. 2023 Eq. 3 and Sec. 6).

    Memory is bounded by ``chunk_size`` cells of ``[tiles, tile_size^2, K]`` per block (a few such tensors live at
    once); no Python loop over pixels or Gaussians, only over blocks.
    """
    C, N = radii.shape
    D = colors.shape[-1]
    opac = opacities.detach()
    cull = _alpha_radii(conics.detach(), opac, radii)
    isect = isect_tiles(means2d, cull, depths, width, height, tile_size, keep=opac >= ALPHA_MIN)
    n_tiles = isect.tiles_x * isect.tiles_y
    fid = isect.flatten_ids
    local = isect.tile_ids % n_tiles
    centers = torch.stack(
        [(local % isect.tiles_x + 0.5) * tile_size, (local // isect.tiles_x + 0.5) * tile_size], dim=-1
    ).to(means2d.dtype)
    theta = _isect_theta(
        means2d.reshape(-1, 2)[fid], conics.reshape(-1, 3)[fid], opacities.reshape(-1)[fid], centers
    )
    pad_theta = theta.new_zeros(1, 6)
    pad_theta[0, 0] = _PAD_POWER
    theta = torch.cat([theta, pad_theta], 0)
    col = torch.cat([colors.reshape(-1, D)[fid], colors.new_zeros(1, D)], 0)
    if backgrounds is None:
        bg = colors.new_zeros(C * n_tiles, D)
    else:
        bg = backgrounds.repeat_interleave(n_tiles, dim=0)
    out, acc = _TileRaster.apply(theta, col, bg, isect.isect_offsets, tile_size, chunk_size)
    img = _tiles_to_image(out, C, isect.tiles_y, isect.tiles_x, tile_size, height, width)
    alpha = _tiles_to_image(acc[..., None], C, isect.tiles_y, isect.tiles_x, tile_size, height, width)
    return img, alpha, isect._asdict()


def rasterize_to_pixels_reference(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    depths: Tensor,  # [C, N]
    radii: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = 8,
    backgrounds: Tensor | None = None,  # [C, D]
) -> tuple[Tensor, Tensor]:  # [C, H, W, D], [C, H, W, 1]
    """Reference twin of :func:`rasterize_to_pixels`: every pixel against every Gaussian, plain autograd.

    Same inclusion rule (a Gaussian is seen by the pixels of the tiles its 3-sigma box touches), same skip/stop
    rules; O(C * H * W * N) memory, for tests on tiny scenes.
    """
    C, N = radii.shape
    dev, dt = means2d.device, means2d.dtype
    ys, xs = torch.meshgrid(torch.arange(height, device=dev), torch.arange(width, device=dev), indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(dt) + 0.5  # [HW, 2]
    ptile = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1) // tile_size  # [HW, 2]
    outs, alphas = [], []
    for ci in range(C):
        order = torch.argsort(depths[ci].detach(), stable=True)
        m, cn, o, col, r = means2d[ci, order], conics[ci, order], opacities[ci, order], colors[ci, order], radii[ci, order]
        tm, tr = m.detach() / tile_size, (r.to(dt) / tile_size)[:, None]
        lo, hi = torch.floor(tm - tr).long(), torch.ceil(tm + tr).long()  # clipping does not change membership
        seen = ((ptile[:, None, :] >= lo[None]) & (ptile[:, None, :] < hi[None])).all(-1)  # [HW, N]
        seen &= (r > 0)[None] & (o.detach() >= ALPHA_MIN)[None]
        d = pix[:, None, :] - m[None]  # [HW, N, 2]
        power = 0.5 * (cn[:, 0] * d[..., 0] ** 2 + cn[:, 2] * d[..., 1] ** 2) + cn[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp(o[None] * torch.exp(-power), max=ALPHA_MAX)
        alpha = torch.where(seen & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
        t_incl = torch.cumprod(1.0 - alpha, dim=-1)
        live = t_incl.detach() >= T_MIN
        alpha = torch.where(live, alpha, torch.zeros_like(alpha))
        t_excl = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], -1), -1)
        w = alpha * t_excl  # [HW, N]
        img = w @ col
        t_fin = torch.prod(1.0 - alpha, dim=-1, keepdim=True)
        if backgrounds is not None:
            img = img + t_fin * backgrounds[ci]
        outs.append(img.reshape(height, width, -1))
        alphas.append((1.0 - t_fin).reshape(height, width, 1))
    return torch.stack(outs), torch.stack(alphas)


# ----------------------------------------------------------------------------------------------------------------
# full pipeline


def _gsplat_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def _rasterize_gsplat(*args, **kwargs) -> tuple[Tensor, Tensor, dict]:  # colors [C, H, W, X], alphas, meta
    """:func:`rasterize` by gsplat's ``rasterization`` (same arguments, ``packed=False``); meta["backend"] "gsplat"."""
    from gsplat import rasterization as _gs

    out, alphas, meta = _gs(*args, **kwargs, packed=False)
    meta = dict(meta)
    meta["backend"] = "gsplat"
    return out, alphas, meta


def _view_colors(
    means: Tensor,  # [N, 3]
    colors: Tensor,  # [N, D] or [C, N, D], or SH [N, K, 3] / [C, N, K, 3] when sh_degree is given
    viewmats: Tensor,  # [C, 4, 4]
    sh_degree: int | None,
) -> Tensor:  # [C, N, D]
    """The colour of each Gaussian in each view: as given, or ``max(SH(dir) + 0.5, 0)`` with dir from the camera
    centre to the mean (3DGS Sec. 4)."""
    C = viewmats.shape[0]
    if sh_degree is None:
        return colors if colors.dim() == 3 else colors[None].expand(C, -1, -1)
    dirs = means[None] - camera_centers(viewmats)[:, None]  # [C, N, 3]
    sh = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
    return torch.clamp_min(eval_sh(sh_degree, dirs, sh) + 0.5, 0.0)


def _render_channels(
    cols: Tensor,  # [C, N, D]
    depths: Tensor,  # [C, N]
    render_mode: RenderMode,
) -> Tensor:  # [C, N, X]: the colours, the depths, or both (depth last)
    """What is blended for ``render_mode``: colours (RGB), depth (D, ED) or colours with depth appended."""
    if render_mode in ("RGB+D", "RGB+ED"):
        return torch.cat([cols, depths[..., None]], -1)
    if render_mode in ("D", "ED"):
        return depths[..., None]
    if render_mode != "RGB":
        raise ValueError(f"render_mode must be one of RGB, D, ED, RGB+D, RGB+ED; got {render_mode!r}")
    return cols


def _render_backgrounds(
    backgrounds: Tensor | None,  # [C, D] (colour channels only)
    render_mode: RenderMode,
    C: int,
) -> Tensor | None:  # [C, X]: a depth channel of 0 appended (or alone) for the depth modes
    if backgrounds is None or render_mode == "RGB":
        return backgrounds
    extra = backgrounds.new_zeros(C, 1)
    return extra if render_mode in ("D", "ED") else torch.cat([backgrounds, extra], -1)


def _rasterize_torch_pixels(
    proj: Projection,  # of C views
    cols: Tensor,  # [C, N, X]
    opac: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int,
    backgrounds: Tensor | None,  # [C, X]
    impl: Literal["fused", "reference"],
    chunk_size: int,
) -> tuple[Tensor, Tensor, dict]:  # colors [C, H, W, X], alphas [C, H, W, 1], tile meta (fused only)
    """The pixel stage of the torch backend: the fast path or its dense reference twin."""
    meta: dict = {}
    if impl == "fused":
        img, alpha, isect = rasterize_to_pixels(
            proj.means2d, proj.conics, cols, opac, proj.depths, proj.radii, width, height, tile_size, backgrounds,
            chunk_size,
        )  # fmt: skip
        meta.update(
            tile_width=isect["tiles_x"], tile_height=isect["tiles_y"], tiles_per_gauss=isect["tiles_per_gauss"],
            flatten_ids=isect["flatten_ids"], isect_offsets=isect["isect_offsets"],
        )  # fmt: skip
    elif impl == "reference":
        img, alpha = rasterize_to_pixels_reference(
            proj.means2d, proj.conics, cols, opac, proj.depths, proj.radii, width, height, tile_size, backgrounds
        )
    else:
        raise ValueError(f"impl must be 'fused' or 'reference', got {impl!r}")
    return img, alpha, meta


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, need not be normalised
    scales: Tensor,  # [N, 3] > 0
    opacities: Tensor,  # [N] in [0, 1]
    colors: Tensor,  # [N, D] or [C, N, D], or SH [N, K, 3] / [C, N, K, 3] when sh_degree is given
    viewmats: Tensor,  # [C, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, D] (colour channels only)
    render_mode: RenderMode = "RGB",
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    tile_size: int | None = None,
    backend: Backend = "auto",
    impl: Literal["fused", "reference"] = "fused",
    chunk_size: int = 2**19,
) -> tuple[Tensor, Tensor, dict]:  # colors [C, H, W, X], alphas [C, H, W, 1], meta
    """Render C views of N Gaussians (Kerbl et al. 2023), with gsplat's ``rasterization`` conventions.

    ``render_mode`` "D" renders accumulated depth sum_i w_i z_i, "ED" expected depth (divided by alpha); "RGB+D" /
    "RGB+ED" append it as the last channel. With ``sh_degree`` the colour of a Gaussian is
    ``max(SH(dir) + 0.5, 0)`` with dir from the camera centre to the mean. ``rasterize_mode="antialiased"`` multiplies
    opacities by the EWA compensation sqrt(det(S) / det(S + eps2d I)) (Mip-Splatting / gsplat).
    ``backend="auto"`` uses gsplat when the tensors are on CUDA and gsplat is installed, else the pure-torch path;
    ``impl="reference"`` selects the dense autograd twin of the torch path (tiny scenes, tests).
    ``tile_size`` None: 16 on gsplat (its default), 8 on the torch path (4 for images of <= 64 px), which compares
    every pixel of a tile with every Gaussian that touches the tile: 8 px tiles render the same (max difference
    ~4e-5, from the 3-sigma tile culling) 1.6-1.9x faster on CPU than 16 (``benchmarks/rasterize.py``); 4 px tiles
    gain another 13 % on small images (the bundled dream's 32^2 views) but cost 40 % more memory on large ones.
    meta: radii, means2d (retain_grad() it for densification), depths, conics, opacities, tile_width, tile_height,
    tile_size, tiles_per_gauss, flatten_ids, isect_offsets, width, height, n_cameras, backend.
    """
    C = viewmats.shape[0]
    if backend == "auto":
        backend = "gsplat" if _gsplat_available(means.device) else "torch"
    if tile_size is None:
        tile_size = default_tile_size(backend, width, height)
    if backend == "gsplat":
        return _rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
            far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, backgrounds=backgrounds, render_mode=render_mode,
            rasterize_mode=rasterize_mode, tile_size=tile_size,
        )  # fmt: skip
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")

    covars = quat_scale_to_covar(quats, scales)
    proj = project_gaussians(
        means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane, rasterize_mode == "antialiased"
    )
    opac = opacities[None].expand(C, -1)
    if rasterize_mode == "antialiased":
        opac = opac * proj.compensations
    cols = _render_channels(_view_colors(means, colors, viewmats, sh_degree), proj.depths, render_mode)
    backgrounds = _render_backgrounds(backgrounds, render_mode, C)
    img, alpha, meta = _rasterize_torch_pixels(proj, cols, opac, width, height, tile_size, backgrounds, impl,
                                               chunk_size)
    if render_mode in ("ED", "RGB+ED"):
        img = torch.cat([img[..., :-1], img[..., -1:] / alpha.clamp(min=1e-10)], -1)
    meta.update(
        radii=proj.radii, means2d=proj.means2d, depths=proj.depths, conics=proj.conics, opacities=opac,
        tile_size=tile_size, width=width, height=height, n_cameras=C, backend="torch",
    )  # fmt: skip
    return img, alpha, meta


__all__ = [
    "ALPHA_MAX", "ALPHA_MIN", "T_MIN", "default_tile_size", "rasterize", "rasterize_to_pixels",
    "rasterize_to_pixels_reference",
]  # fmt: skip
