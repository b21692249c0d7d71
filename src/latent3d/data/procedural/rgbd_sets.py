"""Procedural RGBD training sets with captions (LDM3D, Stan et al. 2023, arXiv 2305.10853, Sec. 3.1 / 4.1).

Here the renderer gives exact geometry, so the disparity LDM3D trains on (DPT-Large's relative inverse depth) is
computed from the exact depth the same way (:func:`latent3d.data.formats.rgbd.disparity_from_depth`: per-image
min-max of ``1/z``; sky = 0 = farthest), and the metric range (``near``, ``far``) is kept.

- Perspective sets (``pano=False``): views of objects on floors, in rooms and outdoors, each camera aimed at one
  placed object; the caption names the objects whose centres are visible plus the setting
  ("a blue sphere on a wooden floor").
- Panorama sets (``pano=True``): 2:1 equirectangular views from inside rooms and landscapes (LDM3D-pano, Sec. 5);
  captions describe the place ("a sunny beach with palm trees").

:func:`render_rgbd_set` returns an :class:`~latent3d.data.formats.rgbd.RGBDSet`; write it with
:func:`latent3d.data.formats.rgbd.write_rgbd_set`.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import torch
from torch import Tensor

from latent3d.data.formats.rgbd import RGBDSet, disparity_from_depth
from latent3d.data.procedural.captions import join_phrases, object_phrase
from latent3d.data.procedural.primitives import Primitive, cylinder, ellipsoid, rotation
from latent3d.data.procedural.raycast import render_equirect, render_views
from latent3d.data.procedural.scenes import Scene, make_scene
from latent3d.data.procedural.shading import Material
from latent3d.render.camera import intrinsics_from_fov, look_at, project_points

PERSPECTIVE_KINDS = ("floor", "room", "outdoor")
PANO_KINDS = ("beach", "forest", "desert", "snow", "street", "room")


# ------------------------------------------------------------------------------------------------- scenes
def _palm(rng: random.Random, xy: tuple[float, float]) -> list[Primitive]:
    """A palm tree (tilted trunk + six drooping fronds) standing at ``xy`` (used to dress the beach)."""
    h, lean, yaw = rng.uniform(3.5, 5.0), rng.uniform(0.0, 10.0), rng.uniform(-180, 180)
    trunk = Material((0.5, 0.36, 0.22), "stripes", (0.4, 0.28, 0.16), scale=6.0)
    leaf = Material((0.2, 0.55, 0.18), "stripes", (0.15, 0.45, 0.12), scale=8.0)
    R = rotation(yaw, lean)
    top = (xy[0] + h * R[0][2], xy[1] + h * R[1][2], h * R[2][2])
    axis = (R[0][2], R[1][2], R[2][2])  # the trunk's local z axis in the world
    mid = (xy[0] + 0.5 * h * axis[0], xy[1] + 0.5 * h * axis[1], 0.5 * h * axis[2])
    parts = [cylinder(0.13, h / 2, mid, rot=R, material=trunk, label="palm/trunk")]
    for k in range(6):
        a = yaw + 60.0 * k + rng.uniform(-10, 10)
        d = (math.cos(math.radians(a)), math.sin(math.radians(a)))
        c = (top[0] + 0.9 * d[0], top[1] + 0.9 * d[1], top[2] - 0.25)
        parts.append(ellipsoid((1.1, 0.28, 0.05), c, rot=rotation(a, 20.0), material=leaf, label="palm/frond"))
    return parts


def _dress(scene: Scene, rng: random.Random) -> Scene:
    """Scene additions that make the place captions true (palm trees on the beach)."""
    if scene.kind != "beach":
        return scene
    taken = [(o["position"][0], o["position"][1], o["radius"]) for o in scene.objects]
    for _ in range(rng.randint(3, 5)):
        for _try in range(100):
            a, r = rng.uniform(-math.pi, math.pi), rng.uniform(3.5, 9.0)
            x, y = r * math.cos(a), r * math.sin(a)
            if all(math.hypot(x - tx, y - ty) > tr + 1.4 for tx, ty, tr in taken):
                taken.append((x, y, 1.2))
                scene.primitives.extend(_palm(rng, (x, y)))
                break
    return scene


def place_caption(scene: Scene) -> str:
    """Caption of a whole place (what a panorama of it shows), e.g. ``"a sunny beach with palm trees"``."""
    names = {o["name"] for o in scene.objects}
    if scene.kind == "beach":
        return "a sunny beach with palm trees"
    if scene.kind == "forest":
        return "a forest of trees"
    if scene.kind == "desert":
        return "a sunny desert with cacti and rocks" if "cactus" in names else "a sunny desert with rocks"
    if scene.kind == "snow":
        return "a snowy landscape with trees and a snowman"
    if scene.kind == "street":
        return "a street with houses and cars"
    return scene.caption  # room / floor / outdoor: objects + setting


def _setting(scene: Scene) -> str | None:
    """The place phrase of a scene caption ("on a wooden floor"), or None when the caption has no objects."""
    named = [object_phrase(o["name"], o["color"]) for o in scene.objects if o["caption"]]
    prefix = join_phrases(named)
    if named and scene.caption.startswith(prefix + " "):
        return scene.caption[len(prefix) + 1 :]
    return None


def _aimed_cameras(scene: Scene, rng: random.Random, n: int, width: int, height: int, fov_y: float):
    """``n`` cameras, each looking at one captioned object from a distance that makes it fill part of the view."""
    objs = [o for o in scene.objects if o["caption"]] or scene.objects
    if not objs:  # nothing was placed: look at the middle of the place
        objs = [{"position": (0.0, 0.0, 0.0), "radius": 0.8}]
    eyes, targets = [], []
    for _ in range(n):
        o = rng.choice(objs)
        px, py, _ = o["position"]
        size = max(o.get("radius", 0.5), 0.3)
        tz = 0.45 * (2 * o["position"][2]) if scene.kind != "floor" else 0.3 * size
        dist = rng.uniform(2.6, 4.2) * size / math.tan(fov_y / 2) * 0.45
        el = math.radians(rng.uniform(12.0, 40.0))
        if scene.kind == "room":  # look from the room's inner side so the camera stays inside the walls
            base = math.atan2(-py, -px) if math.hypot(px, py) > 1e-3 else rng.uniform(-math.pi, math.pi)
            az = base + math.radians(rng.uniform(-50, 50))
            dist = min(dist, scene.extent * 1.4)
        else:
            az = rng.uniform(-math.pi, math.pi)
        e = [px + dist * math.cos(el) * math.cos(az), py + dist * math.cos(el) * math.sin(az), tz + dist * math.sin(el)]
        if scene.kind == "room":
            lim = scene.extent - 0.15
            e[0], e[1], e[2] = max(-lim, min(lim, e[0])), max(-lim, min(lim, e[1])), min(e[2], 2.4)
        eyes.append(e)
        targets.append([px, py, tz])
    V = look_at(torch.tensor(eyes), torch.tensor(targets))
    return V, intrinsics_from_fov(torch.full((n,), fov_y), width, height)


def _view_caption(scene: Scene, V: Tensor, K: Tensor, depth: Tensor, width: int, height: int) -> str:
    """Objects whose centre is in view and not hidden (depth test), followed by the scene's setting."""
    setting = _setting(scene)
    if scene.kind not in PERSPECTIVE_KINDS or setting is None:
        return place_caption(scene)
    seen = []
    for o in scene.objects:
        if not o["caption"]:
            continue
        c = torch.tensor([[o["position"][0], o["position"][1], o["position"][2]]], dtype=torch.float32)
        uv, z = project_points(c, V[None], K[None])
        u, v, z = float(uv[0, 0, 0]), float(uv[0, 0, 1]), float(z[0, 0])
        if z <= 0 or not (0 <= u < width and 0 <= v < height):
            continue
        if float(depth[int(v), int(u)]) + 1.5 * o["radius"] + 0.1 < z:  # something nearer covers the centre
            continue
        seen.append(object_phrase(o["name"], o["color"]))
    return f"{join_phrases(seen)} {setting}" if seen else place_caption(scene)


def _render_scene(job: tuple) -> tuple[Tensor, Tensor, Tensor | None, list[str]]:
    """Render scene number ``s`` of a set: its own RNG, so scenes are independent (and parallel)."""
    s, m, kind, seed, height, width, pano, supersample, fov_y = job
    from latent3d.runtime import num_threads

    rng = random.Random(f"rgbd-{seed}-{int(pano)}-{s}")
    with num_threads(1):  # the ray caster is many small element-wise ops: one thread is fastest
        single = kind == "floor" and rng.random() < 0.5  # "a blue sphere on a wooden floor" is common
        scene = _dress(make_scene(kind, seed=rng.randrange(2**31), n_objects=1 if single else None), rng)
        if pano:
            r = render_equirect(scene, scene.eye, width, height, ss=supersample)
            shift = rng.randrange(width)
            return r.rgb.roll(shift, dims=2), r.depth.roll(shift, dims=2), None, [place_caption(scene)]
        V, K = _aimed_cameras(scene, rng, m, width, height, fov_y)
        r = render_views(scene, V, K, width, height, ss=supersample)
        return r.rgb, r.depth, K, [_view_caption(scene, V[i], K[i], r.depth[i], width, height) for i in range(m)]


def render_rgbd_set(
    n: int,
    height: int,
    width: int,
    seed: int = 0,
    kinds: Sequence[str] | None = None,
    pano: bool = False,
    *,
    views_per_scene: int = 4,
    supersample: int = 2,
    fov_y: float = 0.9,
    workers: int = 1,
) -> RGBDSet:
    """``n`` captioned RGBD images rendered exactly by latent3d's ray caster, deterministic from ``seed``.

    ``kinds`` default to :data:`PERSPECTIVE_KINDS` (``pano=False``) or :data:`PANO_KINDS` (``pano=True``) and are
    cycled. Perspective: ``views_per_scene`` views per scene, each aimed at one placed object. Pano: one
    equirectangular image (``width == 2 * height``) per scene from its eye point, rolled to a random heading.
    ``workers`` > 1 renders scenes in that many processes (the result does not depend on it).
    """
    kinds = tuple(kinds) if kinds is not None else (PANO_KINDS if pano else PERSPECTIVE_KINDS)
    if n < 1 or height < 1 or width < 1:
        raise ValueError(f"render_rgbd_set needs n, height, width >= 1, got {n}, {height}, {width}")
    if pano and width != 2 * height:
        raise ValueError(f"equirect panoramas are 2:1: width must be 2 * height, got {width}x{height}")
    per = 1 if pano else views_per_scene
    jobs = [(s, min(per, n - s * per), kinds[s % len(kinds)], seed, height, width, pano, supersample, fov_y)
            for s in range(-(-n // per))]  # fmt: skip
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as ex:
            parts = list(ex.map(_render_scene, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    else:
        parts = [_render_scene(j) for j in jobs]
    rgb = torch.cat([p[0] for p in parts]).permute(0, 3, 1, 2).clamp(0, 1).contiguous()
    depth = torch.cat([p[1] for p in parts])[:, None].contiguous()
    disp, _, _ = disparity_from_depth(depth)
    K = None if pano else torch.cat([p[2] for p in parts])
    return RGBDSet(rgb, disp, depth, K, [c for p in parts for c in p[3]])
