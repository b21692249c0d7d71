"""``latent3d data ...``: building training data from a user's own files.

``latent3d data rgbd-pairs``: captioned images -> LDM3D's RGBD training pairs, depth by a monocular depth model
(LDM3D, arXiv 2305.10853, Sec. 3.1: DPT-Large); see :mod:`latent3d.data.formats.rgbd_builder`.

``latent3d data scenes``: a walking agent's posed RGB-D episodes through the procedural places, NeuralField-LDM's
training data (arXiv 2304.09787, Sec. 4); see :mod:`latent3d.data.procedural.trajectories`.

``latent3d data objects``: procedural multi-view object datasets (posed views + masks per object, in the SRN/pixelNeRF
or transforms.json layout), 3DVADER's training data (arXiv 2307.05445); see
:mod:`latent3d.data.procedural.object_sets`.

``latent3d data articulated``: monocular videos of procedural articulated objects (hinged parts, a slowly turning
camera; part ids and poses kept aside for evaluation), 3DVADER's non-rigid data; see
:mod:`latent3d.data.procedural.articulated_videos`.

``latent3d data vizdoom``: posed RGB-D trajectories recorded from real VizDoom (an exploring agent, no monsters), one
transforms.json folder per episode, NeuralField-LDM's VizDoom data (arXiv 2304.09787); see
:mod:`latent3d.data.recorders.vizdoom` (needs the optional ``vizdoom`` package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.data.procedural.object_sets_config import ArticulatedVideosConfig as _AV
from latent3d.data.procedural.object_sets_config import MultiviewConfig as _MV
from latent3d.data.procedural.trajectory_config import SceneEpisodesConfig as _SE
from latent3d.data.recorders.vizdoom_config import VizDoomConfig as _VD
from latent3d.data.recorders.vizdoom_config import check_map
from latent3d.errors import UserError
from latent3d.options import DeviceOpt, OutOpt, SeedOpt, defaults, field_option
from latent3d.ranges import Range

_M = defaults(_MV)
_A = defaults(_AV)
_S = defaults(_SE)
_D = defaults(_VD)


def parse_hw(size: str) -> tuple[int, int] | None:
    """``"512"`` -> (512, 512), ``"384x512"`` -> (384, 512), ``"0"`` -> None (keep each image's size)."""
    parts = size.lower().split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) not in (1, 2) or min(hw) < 0 or (0 in hw and hw != (0,)):
        raise UserError(f"--size {size!r}: give H, HxW (pixels) or 0 to keep each image's size")
    return None if hw == (0,) else (hw[0], hw[-1])


def rgbd_pairs(
    src: Annotated[Path, typer.Argument(help="Folder of images with metadata.jsonl / metadata.csv (columns file_name, text).")],
    out: OutOpt = Path("data/rgbd"),
    depth_model: Annotated[str, typer.Option(help="Depth estimator: a transformers hub id (in the local cache) or folder.")] = "Intel/dpt-large",
    captions: Annotated[Optional[Path], typer.Option(help="CSV/JSONL with file_name,text (default: metadata.jsonl/csv in SRC).")] = None,
    size: Annotated[str, typer.Option(help="H or HxW: centre-crop + resize every image (0: keep each image's size).")] = "512",
    batch_size: Annotated[int, typer.Option(callback=Range(1, 4096), help="Images per depth-model batch.")] = 8,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Captioned images -> LDM3D training pairs (RGB + normalised inverse depth), for `latent3d train rgbd --data`."""
    from latent3d.data.formats.rgbd_builder import build_rgbd_pairs
    from latent3d.runtime import seed_everything

    hw = parse_hw(size)
    seed_everything(seed)  # a depth model that samples (dropout, diffusion-based estimators) is reproducible
    folder = build_rgbd_pairs(src, out, depth_model, captions, size=hw, batch_size=batch_size, device=device)
    typer.echo(f"wrote {folder}")


def objects(
    out: OutOpt = Path("data/objects"),
    categories: Annotated[str, field_option(_MV, "categories", help="Comma-separated names of latent3d's procedural objects (chair, table, car, ...; an unknown name lists them all).")] = ",".join(_M.categories),
    n_objects: Annotated[int, field_option(_MV, "n_objects", "--n-objects")] = _M.n_objects,
    views: Annotated[int, field_option(_MV, "views")] = _M.views,
    size: Annotated[int, field_option(_MV, "size")] = _M.size,
    fmt: Annotated[str, typer.Option("--format", help="srn (rgb/ pose/ intrinsics.txt, as ShapeNet-SRN / pixelNeRF; plus mask/ and caption.txt) or transforms (transforms.json).")] = "srn",
    radius: Annotated[str, field_option(_MV, "radius")] = str(_M.radius),
    elevation: Annotated[str, field_option(_MV, "elevation_range_deg", "--elevation")] = ",".join(f"{v:g}" for v in _M.elevation_range_deg),
    fov: Annotated[float, field_option(_MV, "fov_y", "--fov")] = _M.fov_y,
    variation: Annotated[float, field_option(_MV, "variation")] = _M.variation,
    colors: Annotated[str, field_option(_MV, "colors")] = ",".join(_M.colors),
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Render a multi-view object dataset (posed views + exact masks + captions) for 3DVADER-style training."""
    cats = [c.strip() for c in categories.split(",") if c.strip()]
    rad = radius[0] if len(radius) == 1 else (radius[0], radius[1])  # the option parsed and checked the numbers
    el = elevation
    cols = [c.strip() for c in colors.split(",") if c.strip()]

    from latent3d.data.procedural.object_sets import check_object_settings, write_multiview_dataset
    from latent3d.memory import data_objects_bytes, refuse_unless_fits
    from latent3d.runtime import resolve_device

    check_object_settings(cats, n_objects, views, size, fmt, rad, (el[0], el[1]), fov, variation, cols)
    resolve_device(device)  # checked for a clear error; the procedural ray caster itself runs on the CPU
    refuse_unless_fits(data_objects_bytes(views, size), f"rendering --views {views} of --size {size}",
                       "render fewer or smaller views per object")  # fmt: skip
    folder = write_multiview_dataset(out, cats, n_objects, views, size, fmt, seed, radius=rad,  # type: ignore[arg-type]
                                  elevation_range_deg=(el[0], el[1]), fov_y=fov, variation=variation, colors=cols)
    typer.echo(f"wrote {folder} ({n_objects} objects x {views} views, {fmt})")


def articulated(
    out: OutOpt = Path("data/articulated"),
    n_videos: Annotated[int, field_option(_AV, "n_videos", "--n-videos")] = _A.n_videos,
    frames: Annotated[int, field_option(_AV, "frames")] = _A.frames,
    size: Annotated[int, field_option(_AV, "size")] = _A.size,
    kinds: Annotated[str, field_option(_AV, "kinds")] = ",".join(_A.kinds),
    camera_drift: Annotated[float, field_option(_AV, "camera_drift_deg", "--camera-drift")] = _A.camera_drift_deg,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Render monocular videos of articulated objects (frames, masks, captions; part ids and poses under eval/)."""
    from latent3d.data.procedural.articulated_videos import write_articulated_videos
    from latent3d.runtime import resolve_device

    cfg = _AV(n_videos=n_videos, frames=frames, size=size, kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
              camera_drift_deg=camera_drift)  # fmt: skip
    resolve_device(device)  # checked for a clear error; the procedural ray caster runs on the CPU
    folder = write_articulated_videos(out, cfg, seed)
    typer.echo(f"wrote {folder} ({n_videos} videos x {frames} frames of {size}x{size})")


def scenes(
    out: OutOpt = Path("data/scenes"),
    episodes: Annotated[int, field_option(_SE, "episodes")] = _S.episodes,
    frames: Annotated[int, field_option(_SE, "frames")] = _S.frames,
    size: Annotated[int, field_option(_SE, "size")] = _S.size,
    kinds: Annotated[str, field_option(_SE, "kinds")] = ",".join(_S.kinds),
    fov: Annotated[float, field_option(_SE, "fov")] = _S.fov,
    speed: Annotated[float, field_option(_SE, "speed")] = _S.speed,
    max_turn: Annotated[float, field_option(_SE, "max_turn")] = _S.max_turn,
    supersample: Annotated[int, field_option(_SE, "supersample")] = _S.supersample,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Walk an agent through procedural places and write each episode's frames (RGB, z-depth, pose, caption) as a
    transforms.json folder OUT/episode_NNN, for NeuralField-LDM (`latent3d train scene-ae --data OUT`)."""
    names = tuple(k.strip() for k in kinds.split(",") if k.strip())
    cfg = _SE(episodes=episodes, frames=frames, size=size, kinds=names, fov=fov, speed=speed, max_turn=max_turn,
              supersample=supersample)  # fmt: skip

    from latent3d.data.procedural.trajectories import write_scene_episodes
    from latent3d.runtime import resolve_device

    resolve_device(device)  # checked for a clear error; the procedural ray caster itself runs on the CPU
    folder = write_scene_episodes(out, cfg, seed)
    typer.echo(f"wrote {folder} ({episodes} episodes x {frames} frames, {size}x{size})")


def vizdoom(
    out: OutOpt = Path("data/vizdoom"),
    episodes: Annotated[int, field_option(_VD, "episodes")] = _D.episodes,
    frames: Annotated[int, field_option(_VD, "frames")] = _D.frames,
    size: Annotated[int, field_option(_VD, "size")] = _D.size,
    doom_map: Annotated[str, field_option(_VD, "map", "--map", callback=check_map)] = _D.map,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Record posed RGB-D trajectories in real VizDoom (an exploring agent, freedoom2.wad, no monsters): one
    transforms.json folder per episode (RGB, depth in metres, OpenCV poses), for NeuralField-LDM (needs the
    optional vizdoom package)."""
    from latent3d.data.recorders.vizdoom_config import episode_bytes, require_vizdoom

    require_vizdoom()  # one line saying how to install it, before anything heavy loads
    from latent3d.data.recorders.vizdoom import write_vizdoom_dataset
    from latent3d.memory import refuse_unless_fits
    from latent3d.runtime import resolve_device

    resolve_device(device)  # checked for a clear error; the engine and the recorder run on the CPU
    refuse_unless_fits(episode_bytes(frames, size), f"recording --frames {frames} of --size {size}",
                       "record fewer or smaller frames per episode")  # fmt: skip
    folders = write_vizdoom_dataset(out, episodes, frames, size, doom_map, seed)
    typer.echo(f"wrote {len(folders)} episodes of {frames} frames to {out}")
