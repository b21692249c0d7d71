"""``latent3d rgbd``: one prompt -> RGB image, 16-bit depth, depth preview, coloured point cloud, run.json (LDM3D)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from latent3d.errors import UserError

FILES = ("rgb.png", "depth.png", "depth_preview.png", "points.ply", "run.json")


def rgbd_command(prompt: str, out: Path, model: str | None = None, steps: int | None = None,
                 guidance: float | None = None, size: str | None = None, negative: str = "", seed: int = 0,
                 device: str = "auto", near: float = 1.0, far: float = 10.0, fov: float = 60.0) -> dict:
    """Sample one RGBD image with DDIM + CFG and write :data:`FILES` under ``out`` (each file atomically).

    ``depth.png`` is the 16-bit normalised inverse depth exactly as the pipeline returned it (bright = near);
    ``points.ply`` lifts it with ``z = 1 / (d (1/near - 1/far) + 1/far)`` and a pinhole camera of vertical field of
    view ``fov`` degrees, or along equirectangular rays for a panorama model (:func:`latent3d.systems.ldm3d.pipeline.lift_points`).
    """
    import torch

    from latent3d.io.atomic import write_text
    from latent3d.io.depth import depth_preview, write_depth_png16
    from latent3d.io.image import save_image
    from latent3d.io.ply import write_point_ply
    from latent3d.runtime import resolve_device, seed_everything
    from latent3d.systems.ldm3d.pipeline import DEFAULT_RGBD_MODEL, RGBDPipeline, default_intrinsics, lift_points, parse_size

    if not prompt.strip():
        raise UserError("the prompt is empty: describe the image, e.g. 'a red snowman on a blue floor'")
    if not 0 < near < far:
        raise UserError(f"--near and --far must satisfy 0 < near < far (got {near}, {far})")
    if not 0 < fov < 180:
        raise UserError(f"--fov must be in (0, 180) degrees, got {fov}")
    hw = parse_size(size)
    if hw is not None:
        from latent3d.priors.memory import check_size_fits

        check_size_fits(model or DEFAULT_RGBD_MODEL, *hw)
    t0 = time.time()
    dev = resolve_device(device)
    gen = seed_everything(seed)
    pipe = RGBDPipeline.from_pretrained(model, dev)
    steps, guidance, height, width = pipe.settings(steps, guidance, *(hw or (None, None)))
    t_load = time.time() - t0
    t1 = time.time()
    res = pipe(prompt, steps, guidance, negative, height, width, generator=gen)
    t_sample = time.time() - t1
    rgb, depth = res.rgb[0], res.depth[0]  # [H, W, 3] float, [H, W] uint16
    depth_np = depth.numpy()
    K = None if pipe.is_pano else default_intrinsics(height, width, fov)  # panoramas: equirect rays
    points, colors = lift_points(rgb, depth, K, near, far)

    out = Path(out)
    save_image(out / "rgb.png", rgb.numpy())  # NumPy: always read as [H, W, 3]
    write_depth_png16(out / "depth.png", depth_np)
    save_image(out / "depth_preview.png", depth_preview(depth_np.astype("float64"), kind="disparity"))
    write_point_ply(out / "points.ply", points, colors)
    run = {
        "command": "rgbd", "prompt": prompt, "negative": negative, "model": str(model or DEFAULT_RGBD_MODEL),
        "channels": pipe.channels, "steps": steps, "guidance": guidance, "size": [height, width], "seed": seed,
        "device": str(dev), "dtype": str(pipe.prior.dtype).replace("torch.", ""),
        "depth": {"meaning": "normalised inverse depth (disparity), bright = near, as LDM3D", "dtype": "uint16",
                  "min": int(depth_np.min()), "max": int(depth_np.max())},
        "points": {"n": int(points.shape[0]), "near": near, "far": far,
                   "depth_from_disparity": "z = 1 / (d * (1/near - 1/far) + 1/far), d = depth / 65535",
                   **({"projection": "equirect", "axes": "world: +z up, centre column along +x, z = ray distance"}
                      if K is None else
                      {"projection": "pinhole", "fov_y_deg": fov, "K": K.tolist(),
                       "axes": "camera space, OpenCV: +x right, +y down, +z forward"})},
        "files": list(FILES), "load_s": round(t_load, 3), "sample_s": round(t_sample, 3),
        "total_s": round(time.time() - t0, 3), "torch": torch.__version__,
    }  # fmt: skip
    write_text(out / "run.json", json.dumps(run, indent=1))
    print(f"wrote {out}: {', '.join(FILES)} ({height}x{width}, {steps} steps, guidance {guidance})")
    return run
