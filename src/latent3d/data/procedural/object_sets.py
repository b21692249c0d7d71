"""Procedural multi-view object sets, the training data of 3DVADER (AutoDecoding Latent 3D Diffusion Models, arXiv
2307.05445, Sec. 3 / supplement B: posed views and masks per object): latent3d's named objects rendered from orbit
cameras and written in the SRN / pixelNeRF or transforms.json layout of :mod:`latent3d.data.formats.multiview`
(``latent3d data objects``); the checks of its settings, one line each, before anything is rendered.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from latent3d.data.formats.multiview import Format, ObjectViews, write_srn_object, write_transforms_object
from latent3d.data.procedural.object_sets_config import MultiviewConfig
from latent3d.errors import UserError


def render_object_views(
    name: str,
    color: str | tuple[float, float, float] | None,
    variation: float,
    seed: int,
    n_views: int,
    size: int,
    radius: float | tuple[float, float] = MultiviewConfig.radius,
    elevation_range_deg: tuple[float, float] = MultiviewConfig.elevation_range_deg,
    fov_y: float = MultiviewConfig.fov_y,
    ss: int = 2,
    object_id: str | None = None,
) -> ObjectViews:
    """Views of ``make_object(name, color, seed=seed, variation=variation)`` by latent3d's ray caster: cameras on a
    sphere around the origin looking at it (azimuth stratified, elevation and radius uniform, all drawn from
    ``seed``), white background, exact masks (the rays that hit the object), ``ss``-fold supersampled colours.
    ``color="random"`` picks a palette colour by ``seed``. The caption is "a red chair"."""
    from latent3d.data.procedural.captions import object_phrase
    from latent3d.data.procedural.generate import object_views
    from latent3d.data.procedural.objects import make_object

    obj = make_object(name, color, seed=seed, variation=variation)
    r, _ = object_views(obj, n_views, size, size, seed=seed, radius=radius, elevation_range_deg=elevation_range_deg,
                        fov_y=fov_y, ss=ss)
    return ObjectViews(object_id or name, r.rgb.float().clamp(0, 1), r.mask.clone(), r.viewmats.float(),
                       r.Ks.float(), [f"{i:06d}.png" for i in range(n_views)], object_phrase(name, obj.color_name))


def _derived_seed(seed: int, object_id: str) -> int:
    """A per-object seed (0..2**63-1) from the run's seed and the object's id: an object is the same in every run
    with this seed, whatever the other objects are."""
    digest = hashlib.sha256(f"latent3d-objects/{seed}/{object_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_object_settings(categories: Sequence[str], n_objects: int, views: int, size: int, fmt: str,
                          radius: float | tuple[float, float], elevation_range_deg: tuple[float, float],
                          fov_y: float, variation: float, colors: Sequence[str] = ()) -> None:
    """One :class:`UserError` line (named after the CLI option) for the first bad setting."""
    from latent3d.data.procedural.objects import OBJECT_NAMES
    from latent3d.data.procedural.shading import COLORS

    if not categories:
        raise UserError(f"--categories is empty; give comma-separated names from: {', '.join(OBJECT_NAMES)}")
    for c in categories:
        if c not in OBJECT_NAMES:
            raise UserError(f"--categories: unknown object {c!r}; choose from: {', '.join(OBJECT_NAMES)}")
    for c in colors:
        if c not in COLORS:
            raise UserError(f"--colors: unknown colour {c!r}; choose from: {', '.join(COLORS)}")
    if fmt not in get_args(Format):
        raise UserError(f"--format {fmt!r}: choose srn or transforms")
    # the numbers: their declared ranges and relations (latent3d.ranges), then the cameras they make
    MultiviewConfig(n_objects=n_objects, views=views, size=size, radius=radius, elevation_range_deg=elevation_range_deg,
                    fov_y=fov_y, variation=variation)  # fmt: skip
    lo, hi = (radius, radius) if isinstance(radius, (int, float)) else radius
    _check_extreme_cameras(lo, hi, elevation_range_deg[1], fov_y, size)


def _check_extreme_cameras(r_lo: float, r_hi: float, elevation_deg: float, fov_y: float, size: int) -> None:
    """The cameras the writer would write at the nearest and farthest radius (computed as the renderer does, in
    float32) pass the readers' checks (:mod:`latent3d.render.camera_checks`): a radius of 1e308 or a field of view
    of 1e-300 is refused before anything is rendered or written."""
    from latent3d.render.camera import orbit_cameras, rigid_inverse
    from latent3d.render.camera_checks import check_K, check_pose

    for r in (r_lo, r_hi):
        viewmats, Ks = orbit_cameras(r, elevation_deg, 0.0, fov_y, size, size)
        check_pose(rigid_inverse(viewmats[0].double()).numpy(), f"--radius {r:g}: the camera pose at that distance")
    check_K(Ks[0].double().numpy(), size, size, f"--fov {fov_y:g}: the intrinsics of a {size}x{size} view")


def write_multiview_dataset(
    out: str | os.PathLike,
    categories: Sequence[str],
    n_objects: int,
    views: int,
    size: int,
    fmt: Format,
    seed: int,
    radius: float | tuple[float, float] = MultiviewConfig.radius,
    elevation_range_deg: tuple[float, float] = MultiviewConfig.elevation_range_deg,
    fov_y: float = MultiviewConfig.fov_y,
    variation: float = MultiviewConfig.variation,
    colors: Sequence[str] = MultiviewConfig.colors,
    ss: int = 2,
    progress: bool = True,
) -> Path:
    """Render ``n_objects`` procedural objects (round-robin over ``categories``, ids ``chair_0003``, each with a
    random colour of ``colors`` (default: the whole palette) and shape variation from its own seed, see
    :func:`_derived_seed`) and write them to
    ``out/<id>/`` in ``fmt``, then the index ``out/objects.json`` (written last). ``out`` must be new or empty."""
    from tqdm.auto import tqdm

    from latent3d.io.atomic import write_text
    from latent3d.runtime import num_threads

    import random

    from latent3d.data.procedural.shading import COLORS

    check_object_settings(categories, n_objects, views, size, fmt, radius, elevation_range_deg, fov_y, variation,
                          colors)
    palette = sorted(colors or COLORS)
    root = Path(out)
    if root.is_dir() and any(not p.name.startswith(".") for p in root.iterdir()):
        raise UserError(f"{root} is not empty: write a new object dataset into a new or empty folder")
    write = write_srn_object if fmt == "srn" else write_transforms_object
    entries = []
    with num_threads(1):  # the ray caster is many small element-wise ops: one thread is fastest
        for i in tqdm(range(n_objects), desc="objects", unit="obj", disable=not progress):
            cat = categories[i % len(categories)]
            oid = f"{cat}_{i // len(categories):04d}"
            s = _derived_seed(seed, oid)
            color = random.Random(f"color-{s}").choice(palette)  # = make_object's "random" for the whole palette
            ov = render_object_views(cat, color, variation, s, views, size, radius, elevation_range_deg, fov_y,
                                     ss=ss, object_id=oid)
            write(root, ov)
            entries.append({"id": oid, "category": cat, "seed": s, "caption": ov.caption, "views": views})
    settings = {"categories": list(categories), "n_objects": n_objects, "views": views, "size": size,
                "radius": radius, "elevation_range_deg": list(elevation_range_deg), "fov_y": fov_y,
                "variation": variation, "colors": palette, "ss": ss, "seed": seed}
    doc = {"latent3d": {"format": 1, "kind": "multi-view objects", "layout": fmt, "settings": settings},
           "objects": entries}
    write_text(root / "objects.json", json.dumps(doc, indent=1))
    return root
