"""``latent3d scene``: NF-LDM's generation (Kim et al. 2023, Sec. 3.3 and Fig. 2): ``g`` and a camera trajectory
``~ p(g)``, ``c ~ p(c | g)``, ``f ~ p(f | g, c)`` (:func:`~.scene_diffusion.sample_scene_latents`), the latent
decoder's voxel grid of density and features (Sec. 3.2), rendered by the scene auto-encoder's volume renderer and
feature decoder (Sec. 3.1) along the sampled trajectory.

Per sample ``OUT/sample_NN/``: ``flythrough.mp4`` and ``frames/NNN.png`` along the trajectory, ``depth/NNN.png``
(16-bit camera z-depth, metres = value x the sample's ``depth_unit_scale_factor`` in run.json, 0 = no surface),
``bev.png`` (the density and colour seen from above, +x right, +y up), ``voxels.npz`` (density and colour grid,
:mod:`latent3d.io.volume` layout), ``mesh.glb`` (marching cubes of the density, vertex colours, glTF y-up),
``latents.safetensors`` (g, trajectory, c, f: what ``latent3d scene edit`` starts from); ``OUT/run.json``.

A voxel's colour (voxels.npz, bev.png, the mesh's vertices) is the mean colour of the fly-through pixels whose
rendered depth lands on it (:func:`seen_colors`); a voxel no frame sees takes what the feature decoder draws for a
patch of its feature seen level (:func:`voxel_colors`: an approximation, the decoder's group norms see the whole
image).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from latent3d.errors import UserError

BEV_PIXELS = 256  # side of bev.png's longer axis
FPS = 12


@torch.no_grad()
def voxel_colors(scene_ae, grid: Tensor, chunk: int = 2048) -> Tensor:  # grid [C + 1, X, Y, Z] -> rgb [3, X, Y, Z]
    """Each voxel's colour as the feature decoder draws a 4 x 4 patch of rendered features all equal to the voxel's,
    fully opaque, seen level (elevation 0): the centre of its output."""
    C = scene_ae.cfg.features
    X, Y, Z = grid.shape[1:]
    feats = grid[:C].reshape(C, -1).T  # [N, C]
    out = []
    for part in feats.split(chunk):
        x = torch.cat([part, torch.ones_like(part[:, :1]), torch.zeros_like(part[:, :1])], dim=1)
        img = scene_ae.decoder(x[:, :, None, None].expand(-1, -1, 4, 4))  # [n, 3, 4 ds, 4 ds]
        s = img.shape[-1] // 4
        out.append(img[:, :, s:-s, s:-s].mean(dim=(2, 3)))
    return torch.cat(out).T.reshape(3, X, Y, Z).clamp(0, 1)


def seen_colors(
    points: Tensor,  # [P, 3] world
    rgb: Tensor,  # [N, 3, H, W] rendered frames
    depth: Tensor,  # [N, H, W] their z-depth (0: no surface)
    viewmats: Tensor,  # [N, 4, 4]
    K: Tensor,  # [3, 3]
    tol: float,  # metres: how far from the rendered surface a point still counts as on it
) -> tuple[Tensor, Tensor]:  # colours [P, 3], seen [P] bool
    """The mean colour of the pixels (nearest pixel of each frame) where ``points`` project in front of the camera
    and within ``tol`` of the rendered depth; ``seen`` is False (colour 0) for points no frame shows."""
    from latent3d.render.camera import project_points

    N, _, H, W = rgb.shape
    uv, z = project_points(points.double(), viewmats.double(), K.double().expand(N, 3, 3))  # [N, P, 2], [N, P]
    col, row = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H) & (z > 0)
    flat = (row.clamp(0, H - 1) * W + col.clamp(0, W - 1))  # [N, P]
    d = torch.gather(depth.reshape(N, -1).double(), 1, flat)
    vis = inside & (d > 0) & ((z - d).abs() <= tol)  # [N, P]
    c = torch.gather(rgb.reshape(N, 3, -1).double(), 2, flat[:, None].expand(N, 3, -1))  # [N, 3, P]
    n = vis.sum(0)
    colours = (c * vis[:, None]).sum(0).T / n.clamp_min(1)[:, None]
    return colours.float(), n > 0


def voxel_centres(shape: tuple[int, int, int], bbox_min: Tensor, bbox_max: Tensor) -> Tensor:  # -> [X * Y * Z, 3]
    """World centres of a grid's voxels in the renderer's index order (x slowest)."""
    axes = [bbox_min[i] + (torch.arange(n, dtype=torch.float64) + 0.5) * (bbox_max[i] - bbox_min[i]) / n
            for i, n in enumerate(shape)]  # fmt: skip
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def bev_image(density: Tensor, rgb: Tensor, bbox_min: Tensor, bbox_max: Tensor,
              background: float = 1.0) -> Tensor:  # fmt: skip
    """The grid seen from above (``density [X, Y, Z]``, ``rgb [3, X, Y, Z]``): per column, colours composited from the
    top voxel down, ``alpha = 1 - exp(-sigma dz)``, over ``background``; returns ``[Y, X, 3]`` with row 0 at +y."""
    dz = float(bbox_max[2] - bbox_min[2]) / density.shape[2]
    alpha = 1 - torch.exp(-density.clamp_min(0).flip(-1) * dz)  # [X, Y, Z] top first
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1]], dim=-1), dim=-1)
    w = alpha * trans
    img = (w[None] * rgb.flip(-1)).sum(-1) + background * (1 - w.sum(-1))[None]  # [3, X, Y]
    return img.permute(2, 1, 0).flip(0).clamp(0, 1)


def depth_scale(box: tuple[Tensor, Tensor]) -> float:
    """Metres per 16-bit depth unit: the finest "nice" step that holds the box's diagonal (no depth inside the box
    is longer)."""
    from latent3d.data.formats.transforms_json import choose_depth_scale

    return choose_depth_scale(float((box[1] - box[0]).double().norm()))


def flythrough_cameras(trajectory: Tensor, box: tuple[Tensor, Tensor], frames: int) -> Tensor:  # [K, 5] -> [N, 4, 4]
    """World-to-camera matrices of ``frames`` cameras evenly along a sampled trajectory."""
    from latent3d.systems.nfldm.scene_diffusion import decode_trajectory, resample_poses

    return decode_trajectory(resample_poses(trajectory, frames), *box)


@torch.no_grad()
def render_frames(scene_ae, grid: Tensor, box: tuple[Tensor, Tensor], viewmats: Tensor, K: Tensor, width: int,
                  height: int, chunk: int = 8, on_frame=None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``rgb [N, 3, H, W]`` and z-depth ``[N, H, W]`` (0 where a ray meets less than half an opaque surface; the
    expected depth of the hit otherwise, upsampled to the image size) of a grid ``[C + 1, X, Y, Z]``."""
    rgbs, depths = [], []
    dev = grid.device
    for vm in viewmats.split(chunk):
        Ks = K.to(dev).expand(len(vm), 3, 3)
        r = scene_ae.render(grid, box[0].to(dev), box[1].to(dev), vm.to(dev), Ks, height, width)
        hit = r.occupancy > 0.5
        d = torch.where(hit, r.depth / r.occupancy.clamp_min(1e-6), torch.zeros_like(r.depth))
        depths.append(F.interpolate(d[:, None], size=(height, width), mode="nearest")[:, 0].cpu())
        rgbs.append(r.rgb.clamp(0, 1).cpu())
        if on_frame is not None:
            on_frame(len(vm))
    return torch.cat(rgbs), torch.cat(depths)


def consecutive_reprojection(rgb: Tensor, depth: Tensor, viewmats: Tensor, K: Tensor) -> dict:
    """Frame-to-frame consistency of a fly-through: frame ``i + 1`` warped into frame ``i`` through frame ``i``'s
    depth (:func:`latent3d.render.reproject.reprojection_error`), the mean absolute colour error over the pixels
    that land in both (0..1 units; None when no pair overlaps) and their share."""
    from latent3d.render.reproject import reprojection_error

    errs, shares = [], []
    for i in range(len(rgb) - 1):
        e, s = reprojection_error(rgb[i + 1].permute(1, 2, 0), viewmats[i + 1], K, rgb[i].permute(1, 2, 0), depth[i],
                                  viewmats[i], K)  # fmt: skip
        shares.append(s)
        if not math.isnan(e):
            errs.append(e)
    return {"reprojection_l1": sum(errs) / len(errs) if errs else None,
            "reprojection_share": sum(shares) / max(len(shares), 1)}  # fmt: skip


@torch.no_grad()
def render_flythrough(model, grid: Tensor, trajectory: Tensor, frames: int,
                      on_frame=None) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """A grid ``[C + 1, X, Y, Z]`` rendered along ``frames`` cameras of its sampled ``trajectory [K, 5]``: rgb
    ``[N, 3, H, W]``, z-depth ``[N, H, W]`` (:func:`render_frames`) and the world-to-camera matrices ``[N, 4, 4]``."""
    vm = flythrough_cameras(trajectory.cpu(), tuple(b.cpu() for b in model.box), frames)
    rgb, depth = render_frames(model.scene_ae, grid, model.box, vm, model.K, model.width, model.height,
                               on_frame=on_frame)  # fmt: skip
    return rgb, depth, vm


@torch.no_grad()
def decode_grid(model, g: Tensor, c: Tensor, f: Tensor) -> Tensor:  # [1, G], [1, ...], [1, ...] -> [C + 1, X, Y, Z]
    """The scene grid of one sample's latents (the latent decoder's output in the scene auto-encoder's units)."""
    lae = model.diffusion.latent_ae
    return lae.denormalise(lae.decode(g, c, f))[0]


@torch.no_grad()
def write_scene_sample(out: Path, model, latents: dict[str, Tensor], frames: int, fps: float = FPS,
                       on_frame=None, grid: Tensor | None = None) -> dict:  # fmt: skip
    """Every file of one sample (module docstring) from its latents (``g [1, G]``, ``trajectory [1, K, 5]``,
    ``c``, ``f``) and their decoded ``grid`` (default: decoded here; a post-optimised one otherwise); returns its
    entry of run.json."""
    from latent3d.io.depth import write_depth_png16
    from latent3d.io.image import save_image
    from latent3d.io.mesh import export_mesh
    from latent3d.io.model_folder import save_tensors
    from latent3d.io.video import write_video
    from latent3d.io.volume import write_volume_npz
    from latent3d.render.grid_assets import grid_mesh

    grid = decode_grid(model, latents["g"], latents["c"], latents["f"]) if grid is None else grid
    if not torch.isfinite(grid).all():
        raise UserError(f"{out.name}: the decoded grid holds NaN or infinity; the model is damaged, retrain it")
    lo, hi = (b.cpu() for b in model.box)
    scale = depth_scale((lo, hi))
    rgb, depth, vm = render_flythrough(model, grid, latents["trajectory"][0], frames, on_frame)
    for i in range(frames):
        save_image(out / "frames" / f"{i:03d}.png", rgb[i].permute(1, 2, 0).numpy())
        u16 = (depth[i] / scale).round().clamp(0, 65535).to(torch.int32).numpy().astype("uint16")
        write_depth_png16(out / "depth" / f"{i:03d}.png", u16)
    video = write_video(out / "flythrough.mp4", rgb.permute(0, 2, 3, 1).numpy(), fps=fps)
    C = model.scene_ae.cfg.features
    fallback = voxel_colors(model.scene_ae, grid).cpu().reshape(3, -1).T
    grid = grid.cpu()
    density = grid[C]
    lo64, hi64 = lo.double(), hi.double()
    seen, has = seen_colors(voxel_centres(tuple(density.shape), lo64, hi64), rgb, depth, vm, model.K,
                            float(((hi64 - lo64) / torch.tensor(density.shape)).norm()))  # fmt: skip
    colors = torch.where(has[:, None], seen, fallback).T.reshape(3, *density.shape)
    bev = bev_image(density, colors, lo, hi)
    k = max(1, BEV_PIXELS // max(bev.shape[:2]))
    save_image(out / "bev.png", bev.repeat_interleave(k, 0).repeat_interleave(k, 1).numpy())
    write_volume_npz(out / "voxels.npz", density, colors, lo, hi)
    verts, faces, vcol = grid_mesh(density, colors, lo, hi)
    entry = {"flythrough": video.name, "frames": frames, "depth_unit_scale_factor": scale,
             "voxels_seen": round(float(has.float().mean()), 4), "mesh_vertices": int(len(verts)),
             "mesh_faces": int(len(faces))}  # fmt: skip
    if len(faces):
        export_mesh(out / "mesh.glb", verts, faces, vertex_colors=vcol)
        entry["mesh"] = "mesh.glb"
    if "bev" in latents:
        entry |= write_bev_condition(out, model, latents["bev"][0].cpu(), density)
    save_tensors({k: v[0].detach().cpu().contiguous() for k, v in latents.items()}, out / "latents.safetensors")
    return entry | consecutive_reprojection(rgb, depth, vm, model.K)


def write_bev_condition(out: Path, model, bev: Tensor, density: Tensor) -> dict:  # bev [K, X, Y], density [X, Y, Z]
    """``bev_map.png``, the map a sample followed (it reads back as the same map), and how well the sample follows
    it (:func:`~latent3d.systems.nfldm.bev.bev_agreement`: the ROC AUC of its column opacity for the map's solid
    cells; None where the map has no solid or no free cell)."""
    from latent3d.io.image import save_image
    from latent3d.systems.nfldm.bev import bev_agreement, bev_map_image, solid_columns

    d = model.diffusion
    save_image(out / "bev_map.png", bev_map_image(bev, d.bev))
    opacity = solid_columns(density, float(model.box[0][2]), float(model.box[1][2]), d.eye_z)
    auc = bev_agreement(opacity, bev, d.bev)
    return {"bev_map": "bev_map.png", "bev_agreement": round(auc, 4) if math.isfinite(auc) else None}


@torch.no_grad()
def sample_frames(model, n: int, frames: int, steps: int | None, generator: torch.Generator,
                  chunk: int = 16) -> Tensor:  # fmt: skip
    """Frames ``[n * frames, 3, H, W]`` of ``n`` sampled scenes, each rendered along its own trajectory (sampled
    ``chunk`` scenes at a time)."""
    from latent3d.systems.nfldm.scene_diffusion import sample_scene_latents

    out = []
    for k in range(0, n, chunk):
        g, traj, c, f = sample_scene_latents(model.diffusion, min(chunk, n - k), steps, generator)
        for i in range(len(g)):
            grid = decode_grid(model, g[i:i + 1], c[i:i + 1], f[i:i + 1])
            out.append(render_flythrough(model, grid, traj[i], frames)[0])
    return torch.cat(out)


def generate_scenes(model, out: Path, n: int, frames: int, steps: int | None, seed: int, progress: bool = True,
                    command: str | None = None, refine=None, bev: Tensor | None = None,
                    bev_source: str | None = None, bev_scale: float = 1.0) -> dict:  # fmt: skip
    """Sample ``n`` scenes with ``model`` (:class:`~.scene_model.SceneModel`) and write every output (module
    docstring); returns run.json. ``refine(k, grid, trajectory) -> (grid, run.json entries)`` (with a ``settings``
    dict for run.json) changes each decoded grid before it is rendered: post-optimisation
    (:func:`~.post_opt.post_optimiser`). ``bev [1, K, X, Y]``: a map every scene follows (BEV-conditioned
    synthesis, :mod:`.bev`; ``bev_source`` names it in run.json, ``bev_scale`` its guidance scale), written to each
    sample as ``bev_map.png``."""
    from tqdm.auto import tqdm

    from latent3d.io.atomic import atomic_dir, write_text
    from latent3d.systems.nfldm.scene_diffusion import sample_scene_latents

    t0 = time.time()
    dev = next(model.diffusion.g.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    g, traj, c, f = sample_scene_latents(model.diffusion, n, steps, gen, None if bev is None else bev.to(dev),
                                         bev_scale)
    t_sample = time.time() - t0
    samples = []
    bar = tqdm(total=n * frames, desc="render fly-throughs", unit="frame", disable=not progress)
    for k in range(n):
        name = f"sample_{k:02d}"
        latents = {"g": g[k:k + 1], "trajectory": traj[k:k + 1], "c": c[k:k + 1], "f": f[k:k + 1]}
        if bev is not None:
            latents["bev"] = bev[:1]
        grid, extra = None, {}
        if refine is not None:
            grid, extra = refine(k, decode_grid(model, g[k:k + 1], c[k:k + 1], f[k:k + 1]), traj[k])
        with atomic_dir(out / name) as tmp:  # a sample folder is there whole or not at all
            entry = write_scene_sample(tmp, model, latents, frames, on_frame=bar.update, grid=grid)
        samples.append({"folder": name, **entry, **extra})
    bar.close()
    run = {"command": command, "model": model.source, "seed": seed, "n": n, "frames": frames,
           "steps": steps or model.diffusion.g.cfg.sample_steps, "image_size": [model.width, model.height],
           "box": [b.tolist() for b in model.box],
           "sampling_s": round(t_sample, 2), "total_s": round(time.time() - t0, 2), "samples": samples,
           "post_opt": refine.settings if refine is not None else None, "bev": bev_source,
           "bev_scale": bev_scale if bev is not None else None}  # fmt: skip
    write_text(out / "run.json", json.dumps(run, indent=1))
    return run
