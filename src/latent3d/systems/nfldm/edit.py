"""``latent3d scene edit``: NF-LDM's scene editing (Kim et al. 2023, Sec. 4 applications): a box of the bird's-eye
view is resampled by diffusion inpainting, first ``c`` given the scene's ``g``, then ``f`` given ``g`` and the new
``c``; the latents outside the box are the sample's own, exactly.

Inpainting replaces, before every denoising step at timestep ``t``, the kept part of ``x_t`` by the original
latents noised to ``t`` (``sqrt(a_t) x0 + sqrt(1 - a_t) eps``, fresh ``eps`` each step: the replacement method of
Song et al. 2021, App. I / Lugmayr et al. 2022 without resampling), and at the end by the original itself; sampled
``c`` and ``f`` are then snapped to their codebooks, the kept part again copied from the original.

The box ``X0,Y0,X1,Y1`` is in fractions of the scene's extent (0..1), X along +x (left to right in bev.png), Y
along +y (bottom to top); it is widened to whole cells of ``c`` (each ``downsample`` cells of ``f``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from latent3d.errors import UserError

LATENT_KEYS = ("g", "trajectory", "c", "f")


def parse_region(text: str) -> tuple[float, float, float, float]:
    """``"X0,Y0,X1,Y1"`` with ``0 <= X0 < X1 <= 1`` and ``0 <= Y0 < Y1 <= 1``; anything else is one UserError line."""
    parts = text.split(",")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise UserError(f"--region {text!r}: give four numbers X0,Y0,X1,Y1 (fractions of the scene, 0..1)")
    x0, y0, x1, y1 = vals
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise UserError(f"--region {text}: need 0 <= X0 < X1 <= 1 and 0 <= Y0 < Y1 <= 1 (fractions of the scene)")
    return x0, y0, x1, y1


def region_cells(region: tuple[float, float, float, float], xc: int, yc: int) -> Tensor:  # -> [Xc, Yc] bool
    """The cells of a ``xc x yc`` coarse grid the box touches (True = resampled)."""
    x0, y0, x1, y1 = region
    mask = torch.zeros(xc, yc, dtype=torch.bool)
    i0, i1 = math.floor(x0 * xc + 1e-9), max(math.ceil(x1 * xc - 1e-9), math.floor(x0 * xc + 1e-9) + 1)
    j0, j1 = math.floor(y0 * yc + 1e-9), max(math.ceil(y1 * yc - 1e-9), math.floor(y0 * yc + 1e-9) + 1)
    mask[i0:min(i1, xc), j0:min(j1, yc)] = True
    return mask


@torch.no_grad()
def inpaint_level(model, known: Tensor, resample: Tensor, steps: int, generator: torch.Generator | None = None,
                  eta: float = 0.0, **latents: Tensor) -> Tensor:  # fmt: skip
    """One level's latents ``known [1, *shape]`` (latent auto-encoder units) resampled where ``resample`` (bool,
    broadcastable to them) is True, given the coarser ``latents``; the rest is ``known`` exactly (module docstring)."""
    from latent3d.diffusion.ddim import ddim_step, ddim_timesteps
    from latent3d.systems.nfldm.scene_diffusion import TRAIN_TIMESTEPS, schedule

    dev = next(model.parameters()).device
    gdev = generator.device if generator is not None else dev
    level = model.level
    x0 = model.encode({level: known.to(dev)})
    keep = ~resample.to(dev)
    ac = schedule(model.cfg).to(dev)
    cond = model.condition({k: v.to(dev) for k, v in latents.items()})
    x = torch.randn(x0.shape, generator=generator, device=gdev).to(dev)
    ts = [int(t) for t in ddim_timesteps(steps, TRAIN_TIMESTEPS, "trailing")] + [-1]
    s_in = torch.ones(len(x), dtype=torch.long, device=dev)
    for t, t_next in zip(ts[:-1], ts[1:]):
        noise = torch.randn(x0.shape, generator=generator, device=gdev).to(dev)
        x = torch.where(keep, ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * noise, x)
        out = model(x, t * s_in, **cond)
        x = ddim_step(x, out, ac, t, t_next, eta, prediction_type="sample", generator=generator)
    return torch.where(keep, known.to(dev), model.decode(x)[level])


def edit_latents(models, latents: dict[str, Tensor], region: tuple[float, float, float, float], steps: int,
                 generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor, Tensor]:  # fmt: skip
    """New latents of one scene (``g [1, G]``, ``trajectory``, ``c``, ``f``; :class:`~.scene_diffusion.SceneDiffusion`
    ``models``) with ``region`` of c, then of f, resampled; also the masks of c ``[Xc, Yc]`` and f ``[X, Y]``."""
    c, f = latents["c"], latents["f"]
    xc, yc = c.shape[2:4]
    mask_c = region_cells(region, xc, yc)
    k = f.shape[2] // xc
    mask_f = mask_c.repeat_interleave(k, 0).repeat_interleave(f.shape[3] // yc, 1)
    lae = models.latent_ae
    g = latents["g"]
    bev = {"bev": latents["bev"]} if "bev" in latents else {}  # the sample's map, if it was made with one
    g_c, g_f = (m.given_g(g, bool(bev)) for m in (models.c, models.f))  # as when the sample was drawn
    new_c = inpaint_level(models.c, c, mask_c[None, None, :, :, None], steps, generator, models.c.cfg.eta, g=g_c,
                          **bev)  # fmt: skip
    new_c = torch.where(mask_c[None, None, :, :, None].to(c.device), lae.vq_c.snap(new_c)[0], c.to(new_c.device))
    new_f = inpaint_level(models.f, f, mask_f[None, None], steps, generator, models.f.cfg.eta, g=g_f, c=new_c, **bev)
    new_f = torch.where(mask_f[None, None].to(f.device), lae.vq_f.snap(new_f)[0], f.to(new_f.device))
    return {"g": g, "trajectory": latents["trajectory"], "c": new_c, "f": new_f, **bev}, mask_c, mask_f


def read_sample(sample: Path) -> tuple[dict[str, Tensor], str | None]:
    """A ``latent3d scene`` sample's latents (each with a batch axis of 1) and the model its run.json names."""
    from latent3d.io.model_folder import load_tensors, read_config

    path = sample / "latents.safetensors"
    fix = "give a sample folder (OUT/sample_NN) written by `latent3d scene`"
    if not sample.is_dir() or not path.is_file():
        raise UserError(f"{sample}: no latents.safetensors; {fix}")
    t = load_tensors(path, fix)
    missing = [k for k in LATENT_KEYS if k not in t]
    if missing:
        raise UserError(f"{path}: no {missing[0]!r} latent; {fix}")
    if not all(torch.is_floating_point(v) and torch.isfinite(v).all() for v in t.values()):
        raise UserError(f"{path}: latents must be finite floating-point tensors; {fix}")
    run = sample.parent / "run.json"
    model = read_config(run, fix).get("model") if run.is_file() else None
    keys = LATENT_KEYS + (("bev",) if "bev" in t else ())  # the map the sample followed, if any
    return {k: t[k].float()[None] for k in keys}, model if isinstance(model, str) else None


def check_fits(model, latents: dict[str, Tensor], sample: Path) -> None:
    """The sample's latents must have the shapes the model's denoisers make."""
    d = model.diffusion
    want = {"g": (d.g.global_dim,), "c": tuple(d.c.shape), "f": tuple(d.f.shape)}
    for k, shape in want.items():
        if tuple(latents[k].shape[1:]) != shape:
            raise UserError(f"{sample}: its {k} is {list(latents[k].shape[1:])}, the model makes {list(shape)}; "
                            "pass the --model that generated it")  # fmt: skip


def edit_scene(model, sample: Path, latents: dict[str, Tensor], region: tuple[float, float, float, float], out: Path,
               steps: int | None, frames: int, seed: int, command: str | None = None) -> dict:  # fmt: skip
    """Resample ``region`` of a sample and write the edited sample (every file of ``latent3d scene``) to ``out``
    with ``before_after.png`` (bird's-eye views, then first frames) and ``edit.json``; returns edit.json."""
    from latent3d.io.atomic import atomic_dir, write_text
    from latent3d.io.image import load_image, make_grid, save_image
    from latent3d.systems.nfldm.generate import write_scene_sample

    dev = next(model.diffusion.c.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    n_steps = steps or model.diffusion.c.cfg.sample_steps
    new, mask_c, mask_f = edit_latents(model.diffusion, {k: v.to(dev) for k, v in latents.items()}, region, n_steps,
                                       gen)  # fmt: skip
    with atomic_dir(out) as tmp:
        entry = write_scene_sample(tmp, model, new, frames)
        before, after = (load_image(d / "bev.png") for d in (sample, tmp))
        box = _outline(after, region)
        firsts = [load_image(d / "frames" / "000.png") for d in (sample, tmp) if (d / "frames" / "000.png").is_file()]
        save_image(tmp / "before_after.png", make_grid([before, box] + _fit(firsts, before.shape[:2]), ncols=2))
        c_out, f_out = (_change(latents[k].cpu(), new[k].cpu(), ~m) for k, m in (("c", mask_c), ("f", mask_f)))
        doc = {"command": command, "model": model.source, "sample": str(sample), "region": list(region),
               "steps": n_steps, "seed": seed, "cells_c": int(mask_c.sum()), "cells_f": int(mask_f.sum()),
               "max_change_outside": {"c": c_out, "f": f_out},
               "mean_change_inside": {k: float((latents[k].cpu() - new[k].cpu()).abs().mean()) for k in ("c", "f")},
               **entry}  # fmt: skip
        write_text(tmp / "edit.json", json.dumps(doc, indent=1))
    return doc


def _change(a: Tensor, b: Tensor, outside: Tensor) -> float:  # latents [1, C, X, Y, ...], mask [X, Y]
    m = outside.reshape(1, 1, *outside.shape, *([1] * (a.ndim - 4)))
    return float(((a - b).abs() * m).max())


def _outline(img, region):  # [H, W, 3] float -> a copy with the region's rectangle drawn in red
    import numpy as np

    out = np.array(img, copy=True)
    H, W = out.shape[:2]
    x0, y0, x1, y1 = region
    c0, c1 = int(x0 * (W - 1)), int(math.ceil(x1 * (W - 1)))
    r0, r1 = int((1 - y1) * (H - 1)), int(math.ceil((1 - y0) * (H - 1)))
    red = np.array([1.0, 0.0, 0.0], dtype=out.dtype)
    out[r0:r1 + 1, [c0, c1]] = red
    out[[r0, r1], c0:c1 + 1] = red
    return out


def _fit(images: list, size: tuple[int, int]) -> list:  # nearest-resize frames to the bird's-eye view's size
    import numpy as np

    out = []
    for im in images:
        rows = (np.arange(size[0]) * im.shape[0] // size[0]).clip(0, im.shape[0] - 1)
        cols = (np.arange(size[1]) * im.shape[1] // size[1]).clip(0, im.shape[1] - 1)
        out.append(im[rows][:, cols])
    return out
