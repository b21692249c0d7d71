"""Procedural RGBD training sets with captions (LDM3D, Stan et al. 2023, arXiv 2305.10853, Sec. 3.1 / 4.1).

LDM3D trains on (RGB, depth, caption) triples whose depth is DPT-Large's output: a relative **inverse depth**
map normalised to [0, 1] per image, bright = near. Here the renderer gives exact geometry, so the disparity is
computed from the exact depth the same way (per-image min-max of ``1/z``; sky = 0 = farthest), and the metric
range (``near``, ``far``) is kept so that metric depth can be recovered.

- Perspective sets (``pano=False``): views of objects on floors, in rooms and outdoors, each camera aimed at one
  placed object; the caption names the objects whose centres are visible plus the setting
  ("a blue sphere on a wooden floor").
- Panorama sets (``pano=True``): 2:1 equirectangular views from inside rooms and landscapes (LDM3D-pano, Sec. 5);
  captions describe the place ("a sunny beach with palm trees").

On disk (:func:`write_rgbd_set` / :func:`read_rgbd_set`, the same layout :mod:`latent3d.data.rgbd_builder` writes
for real images)::

    DIR/rgb/00000.png     8-bit RGB
    DIR/depth/00000.png   16-bit greyscale: value / 65535 = normalised inverse depth in [0, 1], 1 = nearest
    DIR/rgbd.json         format, projection, per item: files, caption, near/far (metres; null = relative only), K
    DIR/metadata.jsonl    {"file_name": "rgb/00000.png", "text": caption} (Hugging Face imagefolder convention)
    DIR/DATA_CARD.md      what the folder holds and how it was made

``rgbd.json`` is written last: a folder that has it is complete.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from latent3d.data.captions import join_phrases, object_phrase
from latent3d.data.primitives import Primitive, cylinder, ellipsoid, rotation
from latent3d.data.raycast import render_equirect, render_views
from latent3d.data.scenes import Scene, make_scene
from latent3d.data.shading import Material
from latent3d.errors import UserError
from latent3d.render.camera import intrinsics_from_fov, look_at, project_points

PERSPECTIVE_KINDS = ("floor", "room", "outdoor")
PANO_KINDS = ("beach", "forest", "desert", "snow", "street", "room")
FORMAT = "latent3d-rgbd"
DEPTH_LINE = ("depth/*.png hold normalised inverse depth (disparity) in [0, 1] as 16-bit PNG (value / 65535), "
              "1 = nearest, 0 = farthest or sky, min-max normalised per image as DPT / LDM3D")


@dataclass
class RGBDSet:
    """RGB images, their normalised inverse depth, metric depth, intrinsics and captions."""

    rgb: Tensor  # [N, 3, H, W] in [0, 1]
    disparity: Tensor  # [N, 1, H, W] in [0, 1], normalised inverse depth, bright = near (per-image min-max of 1/z)
    depth: Tensor  # [N, 1, H, W] metric z (perspective) or ray distance (pano); inf = sky; nan = unknown (relative)
    K: Tensor | None  # [N, 3, 3] pinhole intrinsics in pixels; None for equirect panoramas
    captions: list[str]

    def __len__(self) -> int:
        return self.rgb.shape[0]


def disparity_from_depth(depth: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # [N, 1, H, W] -> disp, near [N], far [N]
    """Per-image min-max normalised inverse depth (DPT / LDM3D convention): ``(1/z - 1/far) / (1/near - 1/far)``.

    Non-finite or non-positive depth (sky) maps to 0. An image with a single depth value maps to 1 where valid.
    """
    valid = torch.isfinite(depth) & (depth > 0)
    big, inf = torch.finfo(depth.dtype).max, float("inf")
    flat_v = valid.flatten(1)
    near = torch.where(flat_v, depth.flatten(1), inf).amin(1)  # [N]
    far = torch.where(flat_v, depth.flatten(1), -inf).amax(1)  # [N]
    near, far = torch.where(torch.isfinite(near), near, 1.0), torch.where(torch.isfinite(far), far, 1.0)
    inv = 1.0 / depth.clamp(min=1e-12, max=big)
    lo, hi = (1.0 / far).view(-1, 1, 1, 1), (1.0 / near).view(-1, 1, 1, 1)
    span = hi - lo
    disp = torch.where(span > 0, (inv - lo) / span.clamp(min=1e-30), torch.ones_like(inv))
    return torch.where(valid, disp, 0.0).clamp(0, 1), near, far


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


# --------------------------------------------------------------------------------------------------- disk
def write_rgbd_item(
    root: Path,
    i: int,
    rgb: Tensor,  # [3, H, W] in [0, 1]
    disparity: Tensor,  # [H, W] in [0, 1]
    caption: str,
    near: float | None = None,
    far: float | None = None,
    K: Tensor | None = None,  # [3, 3]
) -> dict[str, Any]:
    """Write one image pair (RGB PNG + 16-bit disparity PNG, atomically); returns its ``rgbd.json`` item."""
    from latent3d.io.depth import quantize_depth, write_depth_png16
    from latent3d.io.image import save_image

    name = f"{i:05d}.png"
    save_image(root / "rgb" / name, rgb.permute(1, 2, 0).detach().cpu().float().numpy())
    write_depth_png16(root / "depth" / name, quantize_depth(disparity.detach().cpu().float().numpy()))
    item = {"rgb": f"rgb/{name}", "depth": f"depth/{name}", "caption": caption, "near": near, "far": far}
    if K is not None:
        item["K"] = K.tolist()
    return item


def write_rgbd_index(
    root: Path, items: list[dict[str, Any]], projection: str, source: str, extra: dict[str, Any] | None = None
) -> Path:
    """Write metadata.jsonl, DATA_CARD.md and, last, rgbd.json (the folder's completeness marker)."""
    from PIL import Image

    from latent3d.io.atomic import write_text

    metric = bool(items) and all(it["near"] is not None for it in items)
    with Image.open(root / items[0]["rgb"]) as im:
        W, H = im.size
    write_text(root / "metadata.jsonl", "".join(json.dumps({"file_name": it["rgb"], "text": it["caption"]}) + "\n"
                                                 for it in items))  # fmt: skip
    kind = "camera z" if projection == "pinhole" else "ray distance from the panorama centre"
    how = ("z = 1 / (1/far + d * (1/near - 1/far)) with each item's near/far in rgbd.json (metres)" if metric
           else "not available (relative inverse depth only; near/far are null)")  # fmt: skip
    write_text(root / "DATA_CARD.md", f"""# RGBD set ({len(items)} images, first {W}x{H}, {projection})

- Source: {source}.
- {DEPTH_LINE}.
- Metric depth ({kind}): {how}.
- rgb/*.png: 8-bit RGB; captions in rgbd.json and metadata.jsonl.
""")
    index = {"format": FORMAT, "version": 1, "projection": projection, "height": H, "width": W, "depth": DEPTH_LINE,
             "source": source, "items": items, **(extra or {})}  # fmt: skip
    write_text(root / "rgbd.json", json.dumps(index, indent=1))
    return root


def write_rgbd_set(
    folder: str | os.PathLike,
    data: RGBDSet,
    source: str = "latent3d procedural renders",
    metric: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``data`` in the latent3d RGBD layout (module docstring); every file atomically, ``rgbd.json`` last.

    ``metric``: store each image's metric ``near``/``far`` (from ``data.depth``) so :func:`read_rgbd_set` can
    recover metric depth; False for relative depth (DPT), where ``near``/``far`` are null.
    """
    root = Path(folder)
    near, far = disparity_from_depth(data.depth)[1:] if metric else (None, None)
    items = [
        write_rgbd_item(root, i, data.rgb[i], data.disparity[i, 0], data.captions[i],
                        float(near[i]) if metric else None, float(far[i]) if metric else None,
                        None if data.K is None else data.K[i])  # fmt: skip
        for i in range(len(data))
    ]
    return write_rgbd_index(root, items, "pinhole" if data.K is not None else "equirect", source, extra)


def _read_K(k: Any, i: int, jpath: Path) -> torch.Tensor:  # [3, 3]
    try:
        K = torch.tensor(k, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        K = torch.zeros(0)
    if K.shape != (3, 3) or not (K.abs() < 1e30).all() or K[0, 0] <= 0 or K[1, 1] <= 0:  # finite in float32 too
        raise UserError(f"{jpath}: item {i}'s K must be a 3x3 matrix of finite numbers with positive focal lengths")
    return K.float()


def read_rgbd_set(folder: str | os.PathLike) -> RGBDSet:
    """Read a folder written by :func:`write_rgbd_set` or :mod:`latent3d.data.rgbd_builder`.

    ``disparity`` is the stored 16-bit value / 65535 (exact); ``depth`` is metric where ``near``/``far`` are known
    (disparity 0 maps to ``far``) and nan where the set is relative only.
    """
    from latent3d.io.depth import dequantize_depth, read_depth_png16
    from latent3d.io.image import load_image
    from latent3d.io.manifest import number, read_json, resolve_inside

    root = Path(folder)
    jpath = root / "rgbd.json"
    if not jpath.is_file():
        raise UserError(f"{root} has no rgbd.json: pass a folder written by latent3d's RGBD writer or builder")
    fix = "pass a folder written by latent3d's RGBD writer or builder"
    index = read_json(jpath, fix)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        fmt = index.get("format") if isinstance(index, dict) else None
        raise UserError(f"{jpath} is not a {FORMAT} index (format={fmt!r}); {fix}")
    items = index.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(it, dict) for it in items):
        raise UserError(f"{jpath}: 'items' must be a non-empty list of objects; {fix}")
    rgbs, disps, depths, Ks, caps = [], [], [], [], []
    for i, it in enumerate(items):
        if not isinstance(it.get("caption"), str):
            raise UserError(f"{jpath}: item {i} needs a 'caption' string, got {it.get('caption')!r}")
        rgb = torch.from_numpy(load_image(resolve_inside(root, it.get("rgb"), f"item {i} rgb", jpath)))
        dpath = resolve_inside(root, it.get("depth"), f"item {i} depth", jpath)
        d = torch.from_numpy(np.asarray(dequantize_depth(read_depth_png16(dpath))))[None]
        if tuple(d.shape[1:]) != tuple(rgb.shape[:2]):
            raise UserError(f"{dpath}: depth is {d.shape[2]}x{d.shape[1]}, its RGB {rgb.shape[1]}x{rgb.shape[0]}")
        rgbs.append(rgb.permute(2, 0, 1))
        disps.append(d)
        if it.get("near") is not None or it.get("far") is not None:
            near = number(it.get("near"), f"item {i} near", jpath, 0, 1e9, lo_open=True)
            far = number(it.get("far"), f"item {i} far", jpath, near, 1e9, lo_open=True)
            depths.append(1.0 / (1.0 / far + d.double() * (1.0 / near - 1.0 / far)).float())
        else:
            depths.append(torch.full_like(d, float("nan")))
        if "K" in it:
            Ks.append(_read_K(it["K"], i, jpath))
        caps.append(it["caption"])
    K = torch.stack(Ks) if Ks and len(Ks) == len(caps) else None
    if len({tuple(x.shape) for x in rgbs}) > 1:
        raise UserError(f"{root} holds images of different sizes: rebuild it with one --size to train on it")
    return RGBDSet(torch.stack(rgbs), torch.stack(disps), torch.stack(depths), K, caps)
