"""``latent3d immersive``: an RGBD panorama (read with ``--from``, or generated from a prompt) -> a DepthFusion world.
Options take their defaults and help from :class:`~latent3d.systems.depthfusion.config.WorldConfig`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer

from latent3d.options import DeviceOpt, LDM3DGuidanceOpt, LDM3DStepsOpt, OutOpt, SeedOpt, defaults, field_option
from latent3d.ranges import OneOf
from latent3d.render.depth_modes import DisplacementMode
from latent3d.systems.depthfusion.config import WorldConfig

_W = defaults(WorldConfig)


def immersive(
    prompt: Annotated[Optional[str], typer.Argument(help='What panorama to generate, e.g. "a sunny beach with palm trees".')] = None,
    out: OutOpt = Path("out/immersive"),
    from_: Annotated[Optional[tuple[Path, Path]], typer.Option("--from", help="Skip generation: RGB and depth equirect panorama images (depth: 16- or 8-bit greyscale, bright = near).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Panorama model: bundled name, Intel/ldm3d-pano folder or hub id (default: bundled ldm3d-pano-tiny).")] = None,
    steps: LDM3DStepsOpt = None,
    guidance: LDM3DGuidanceOpt = None,
    ipd: Annotated[float, field_option(WorldConfig, "ipd")] = _W.ipd,
    strength: Annotated[float, field_option(WorldConfig, "strength")] = _W.strength,
    resolution: Annotated[int, field_option(WorldConfig, "sphere_lon", "--resolution", help="Sphere segments around (half as many pole to pole).")] = _W.sphere_lon,
    radius: Annotated[float, field_option(WorldConfig, "radius")] = _W.radius,
    depth_mode: Annotated[str, typer.Option(callback=OneOf(get_args(DisplacementMode)), help="disparity (1/r linear in depth, as LDM3D/DPT) or linear (DepthFusion's displacement).")] = _W.depth_mode,
    stereo_width: Annotated[int, field_option(WorldConfig, "stereo_width")] = _W.stereo_width,
    tour_seconds: Annotated[float, field_option(WorldConfig, "tour_seconds")] = _W.tour_seconds,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> dict:
    """RGBD panorama to an immersive 360° world (DepthFusion): world.glb, stereo_tb.png, anaglyph.png, tour.mp4."""
    from latent3d.runtime import resolve_device, seed_everything
    from latent3d.systems.depthfusion.sources import panorama_source
    from latent3d.systems.depthfusion.world import build_world

    from_rgb, from_depth = from_ if from_ is not None else (None, None)
    t0 = time.time()
    cfg = WorldConfig(depth_mode=depth_mode,  # type: ignore[arg-type]
                      strength=strength, radius=radius, sphere_lon=resolution, sphere_lat=resolution // 2, ipd=ipd,
                      stereo_width=stereo_width, tour_seconds=tour_seconds)
    from latent3d.memory import immersive_bytes, refuse_unless_fits

    refuse_unless_fits(immersive_bytes(cfg), "this world", "lower --resolution, --stereo-width or --tour-seconds")
    dev = resolve_device(device)
    seed_everything(seed)
    rgb, depth, source = panorama_source(prompt, from_rgb, from_depth, seed=seed, device=dev, model=model, steps=steps,
                                          guidance=guidance)
    t_load = time.time() - t0
    run = build_world(rgb, depth, Path(out), cfg, extra={"source": source, "seed": seed, "device": str(dev),
                                                         "render_device": "cpu", "load_s": round(t_load, 3)},
                      started_at=t0)
    print(f"wrote {out}: {', '.join(run['files'])} ({run['timings']['total_s']:.1f} s)")
    return run
