"""``latent3d view DIR``: a local web viewer (viser) for what latent3d writes.

It shows, from ``DIR``: ``world.glb`` (a DepthFusion world from ``latent3d immersive``; the camera starts at its
centre, where the view is the original panorama, and turning looks around), ``mesh.glb`` and ``gaussians.ply``
(INRIA 3DGS layout, from ``latent3d dream``). The server binds to 127.0.0.1 only, so nothing leaves the machine;
open the printed address in a browser.

Axes: viser's world is z up, as latent3d's. ``world.glb`` follows glTF (y up), so it is turned +90 deg about x;
``mesh.glb`` from :func:`latent3d.io.mesh.export_mesh` is y up as well and is turned the same way.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from latent3d.errors import UserError
from latent3d.ranges import Range

if TYPE_CHECKING:
    import numpy as np

HOST = "127.0.0.1"
Y_UP_TO_Z_UP = (math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0)  # wxyz: +90 deg about x, (x,y,z)->(x,-z,y)


@dataclass
class Assets:
    """What :func:`find_assets` found in a folder."""

    folder: Path
    world: Path | None = None
    mesh: Path | None = None
    gaussians: Path | None = None
    names: list[str] = field(default_factory=list)


def find_assets(folder: str | Path) -> Assets:
    """The viewable files in ``folder``; a one-line :class:`UserError` if there is nothing to show."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; pass the output folder of latent3d immersive or dream")
    found = Assets(folder)
    for attr, name in (("world", "world.glb"), ("mesh", "mesh.glb"), ("gaussians", "gaussians.ply")):
        if (folder / name).is_file():
            setattr(found, attr, folder / name)
            found.names.append(name)
    if not found.names:
        raise UserError(f"{folder}: nothing to view (no world.glb, mesh.glb or gaussians.ply); run latent3d "
                        "immersive or latent3d dream with --out pointing here first")
    return found


def gaussian_splat_arrays(path: Path) -> dict[str, np.ndarray]:
    """A 3DGS PLY as viser's splat arrays: centres [N, 3], covariances [N, 3, 3], rgbs [N, 3], opacities [N, 1]."""
    import numpy as np
    import torch

    from latent3d.io.ply import read_gaussian_ply
    from latent3d.render.project import quat_scale_to_covar
    from latent3d.render.sh import sh_to_rgb

    g = read_gaussian_ply(path, plausible=True)  # exp(log_scales) must not overflow
    cov = quat_scale_to_covar(torch.from_numpy(g.quats), torch.from_numpy(np.exp(g.log_scales))).numpy()
    rgb = np.clip(sh_to_rgb(torch.from_numpy(g.sh[:, 0])).numpy(), 0.0, 1.0)  # SH degree-0 band
    alpha = 1.0 / (1.0 + np.exp(-g.opacity_logits))
    return {"centers": g.means, "covariances": cov.astype(np.float32), "rgbs": rgb.astype(np.float32),
            "opacities": alpha[:, None].astype(np.float32)}


def start_viewer(folder: str | Path, port: int = 8080, verbose: bool = False) -> Any:
    """Start a viser server on 127.0.0.1 showing ``folder``'s assets; returns the running ``viser.ViserServer``
    (call ``.stop()`` to end it; ``.get_port()`` is the port really used: viser moves on if ``port`` is taken)."""
    assets = find_assets(folder)
    if not 0 < port < 65536:
        raise UserError(f"--port must be in 1..65535, got {port}")
    import viser

    with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):  # viser's banner: we print our own
        server = viser.ViserServer(host=HOST, port=port, label=f"latent3d: {assets.folder.name}", verbose=verbose)
    server.scene.set_up_direction("+z")
    if assets.world is not None:
        server.scene.add_glb("/world", assets.world.read_bytes(), wxyz=Y_UP_TO_Z_UP)
        # Stand at the centre of the world looking along +x, the centre column of the panorama; orbiting about a
        # point 5 cm ahead turns the head instead of moving it.
        server.initial_camera.position = (0.0, 0.0, 0.0)
        server.initial_camera.look_at = (0.05, 0.0, 0.0)
        server.initial_camera.up = (0.0, 0.0, 1.0)
        server.initial_camera.fov = math.radians(75.0)
    if assets.mesh is not None:
        server.scene.add_glb("/mesh", assets.mesh.read_bytes(), wxyz=Y_UP_TO_Z_UP)
    if assets.gaussians is not None:
        server.scene.add_gaussian_splats("/gaussians", **gaussian_splat_arrays(assets.gaussians))
    if assets.world is None:
        server.initial_camera.position = (3.0, 0.0, 1.5)
        server.initial_camera.look_at = (0.0, 0.0, 0.0)
    return server


def view(
    folder: Annotated[Path, typer.Argument(help="Output folder with world.glb, mesh.glb and/or gaussians.ply.")],
    port: Annotated[int, typer.Option(callback=Range(1024, 65535), help="Port on 127.0.0.1 (the next free one if taken).")] = 8080,
) -> None:
    """Show a world, mesh or splats in a local web viewer (viser on 127.0.0.1); a world starts at its centre."""
    server = start_viewer(folder, port)  # serves files: nothing random, nothing computed on a device
    try:
        used = server.get_port()
        note = f" (port {port} was taken)" if used != port else ""
        print(f"latent3d view: {', '.join(find_assets(folder).names)} at http://{HOST}:{used}{note}; Ctrl-C stops",
              flush=True)
        while True:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
