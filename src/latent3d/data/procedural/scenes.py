"""Procedural scenes: objects on floors, rooms, and outdoor places, with lights, sky and captions.

World frame: z up, the ground/floor is the plane z=0, metres. Objects stand on the floor at non-overlapping
positions (their xy bounding circles do not intersect) and keep a clear disc around the origin free, so that a
panorama taken at :attr:`Scene.eye` sees the place from inside. In renders, ``mask`` marks the placed objects
(foreground); the floor, walls, ceiling, ground and sky are background.

Kinds: ``"floor"`` (objects on a floor under a studio backdrop), ``"room"`` (a closed box room lit by a ceiling
point light), ``"outdoor"`` (a meadow) and the places ``beach``, ``forest``, ``desert``, ``snow``, ``street``.
Everything is deterministic from ``seed`` (Python's ``random.Random``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from latent3d.data.procedural.captions import join_phrases, object_phrase
from latent3d.data.procedural.objects import make_object
from latent3d.data.procedural.primitives import Primitive, bounds, cone, cylinder, ellipsoid, quad, rotation, sphere
from latent3d.data.procedural.shading import COLORS, Light, Material, Sky
from latent3d.render.camera import intrinsics_from_fov, look_at

PLACES = ("beach", "forest", "desert", "snow", "street")
SCENE_KINDS = ("floor", "room", "outdoor") + PLACES

_FLOORS = {  # name -> material
    "wooden": Material((0.62, 0.42, 0.22), "wood", (0.42, 0.27, 0.13), scale=2.0),
    "tiled": Material((0.85, 0.85, 0.82), "checker", (0.35, 0.35, 0.38), scale=1.5),
    "marble": Material((0.88, 0.87, 0.85), "noise", (0.6, 0.6, 0.62), scale=3.0, shininess=0.3),
    "carpeted": Material((0.55, 0.2, 0.2), "noise", (0.4, 0.12, 0.12), scale=8.0),
}
_WALLS = ("white", "yellow", "pink", "blue", "green", "grey")
_GROUNDS = {
    "outdoor": Material((0.3, 0.55, 0.2), "noise", (0.2, 0.4, 0.12), scale=0.8),
    "forest": Material((0.22, 0.4, 0.14), "noise", (0.3, 0.25, 0.12), scale=0.7),
    "beach": Material((0.9, 0.82, 0.6), "noise", (0.8, 0.7, 0.5), scale=1.2),
    "desert": Material((0.88, 0.65, 0.38), "noise", (0.75, 0.52, 0.3), scale=0.5),
    "snow": Material((0.95, 0.96, 0.98), "noise", (0.82, 0.86, 0.92), scale=0.6),
    "street": Material((0.3, 0.3, 0.32), "noise", (0.22, 0.22, 0.24), scale=4.0),
}
_SETTINGS = {
    "outdoor": "in a green meadow", "forest": "in a forest", "beach": "on a sandy beach",
    "desert": "in a sandy desert", "snow": "in a snowy landscape", "street": "on a street",
}
_PLACE_NOUNS = {
    "outdoor": "a green meadow under a blue sky", "forest": "a forest of trees", "beach": "a sandy beach by the sea",
    "desert": "a sandy desert", "snow": "a snowy landscape", "street": "a street with houses",
}


@dataclass
class Scene:
    """A renderable scene (pass it to :func:`latent3d.data.procedural.raycast.render_views` / ``render_equirect``)."""

    kind: str
    primitives: list[Primitive]
    light: Light
    background: Sky | tuple[float, float, float]
    caption: str
    objects: list[dict[str, Any]] = field(default_factory=list)  # name, color, position [3], scale, yaw, radius,
    # caption (named in the caption), parts (first, end) of its primitives in ``primitives``
    eye: tuple[float, float, float] = (0.0, 0.0, 1.6)  # panorama centre / first-person camera position
    extent: float = 5.0  # half-size of the region where objects are placed
    seed: int = 0


def _place(rng: random.Random, radii: list[float], extent: float, clear: float, taken: list[tuple[float, float, float]],
           ring: tuple[float, float] | None = None) -> list[tuple[float, float] | None]:
    """Rejection-sample non-overlapping xy positions (None when an item does not fit after 200 tries)."""
    out: list[tuple[float, float] | None] = []
    for r in radii:
        pos = None
        for _ in range(200):
            if ring is not None:
                a, d = rng.uniform(-math.pi, math.pi), rng.uniform(*ring)
                x, y = d * math.cos(a), d * math.sin(a)
            else:
                x, y = rng.uniform(-extent + r, extent - r), rng.uniform(-extent + r, extent - r)
            if math.hypot(x, y) < clear + r:
                continue
            if all(math.hypot(x - tx, y - ty) >= r + tr + 0.05 for tx, ty, tr in taken):
                pos = (x, y)
                taken.append((x, y, r))
                break
        out.append(pos)
    return out


def _props(name: str, rng: random.Random) -> list[Primitive]:
    """Small scene-only props in natural units (standing on z=0)."""
    if name == "rock":
        r = rng.uniform(0.3, 0.7)
        return [ellipsoid((r, r * rng.uniform(0.6, 1.0), r * 0.6), (0, 0, r * 0.3), material=Material((0.5, 0.48, 0.45),
                          "noise", scale=4.0), label="rock")]
    if name == "cactus":
        g = Material((0.25, 0.55, 0.25), "stripes", (0.2, 0.45, 0.2), scale=12.0)
        h = rng.uniform(1.2, 2.2)
        return [cylinder(0.18, h / 2, (0, 0, h / 2), material=g), sphere(0.18, (0, 0, h), material=g),
                cylinder(0.1, 0.3, (0.3, 0, h * 0.55), material=g), cylinder(0.1, 0.1, (0.2, 0, h * 0.35), rot=rotation(
                    pitch_deg=90), material=g)]
    if name == "umbrella":
        c = COLORS[rng.choice(["red", "blue", "yellow", "orange"])]
        return [cylinder(0.03, 1.0, (0, 0, 1.0), material=_m("white")),
                cone(1.0, 0.05, 0.25, (0, 0, 2.0), material=Material(c, "stripes", (0.95, 0.95, 0.95), scale=3.0))]
    raise ValueError(name)


def _m(color: str) -> Material:
    return Material(COLORS[color])


@dataclass
class _Builder:
    """The parts of a scene as :func:`make_scene` places them, with the one RNG every draw comes from (in order)."""

    rng: random.Random
    prims: list[Primitive] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    taken: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, radius of every placed thing

    def add_object(self, name: str, size: float, extent: float, clear: float, color: str | None = None,
                   variation: float = 0.0, ring=None, caption: bool = True, lane=None) -> None:
        """A procedural object ``size`` metres tall at a free position (or in a road ``lane``: (y, direction))."""
        rng = self.rng
        obj = make_object(name, color, seed=rng.randrange(2**31), variation=variation)
        lo, hi = bounds(obj.primitives)
        scale = size / float(hi[2] - lo[2])  # ``size`` = height in metres
        r_xy = scale * float(torch.maximum(lo[:2].abs(), hi[:2].abs()).norm())
        if lane is not None:  # fixed y and heading, x along the road
            pos, yaw = (rng.uniform(-2.0, 2.0) + 5.0 * lane[1], lane[0]), 0.0 if lane[1] > 0 else 180.0
            self.taken.append((pos[0], pos[1], r_xy))
        else:
            (pos,) = _place(rng, [r_xy], extent, clear, self.taken, ring)
            if pos is None:
                return
            yaw = rng.uniform(-180, 180) if name not in ("house",) else rng.choice([0.0, 90.0, 180.0, -90.0])
        offset = (pos[0], pos[1], -scale * float(lo[2]))
        parts = (len(self.prims), len(self.prims) + len(obj.primitives))
        self.prims.extend(obj.placed(scale, offset, yaw))
        self.objects.append(dict(name=name, color=obj.color_name, position=offset, scale=scale, yaw=yaw,
                                 radius=r_xy, caption=caption, parts=parts))

    def add_prop(self, name: str, extent: float, clear: float, ring=None) -> None:
        """A scene-only prop (:func:`_props`) at a free position, never captioned."""
        parts = _props(name, self.rng)
        lo, hi = bounds(parts)
        r_xy = float(torch.maximum(lo[:2].abs(), hi[:2].abs()).norm())
        (pos,) = _place(self.rng, [r_xy], extent, clear, self.taken, ring)
        if pos is not None:
            span = (len(self.prims), len(self.prims) + len(parts))
            self.prims.extend(p.transformed(1.0, (pos[0], pos[1], 0.0), self.rng.uniform(-180, 180)) for p in parts)
            self.objects.append(dict(name=name, color=None, position=(pos[0], pos[1], 0.0), scale=1.0, yaw=0.0,
                                     radius=r_xy, caption=False, parts=span))

    def add_house(self, x: float, side: int) -> None:
        """A street-side house at ``x``, 10 m to the ``side`` (-1 or 1) of the road, facing it."""
        rng = self.rng
        obj = make_object("house", rng.choice(_WALLS[:4] + ("orange",)), seed=rng.randrange(2**31), variation=0.5)
        lo, hi = bounds(obj.primitives)
        scale = rng.uniform(5.0, 7.0) / float(hi[2] - lo[2])
        off = (x, side * 10.0, -scale * float(lo[2]))
        parts = (len(self.prims), len(self.prims) + len(obj.primitives))
        self.prims.extend(obj.placed(scale, off, 90.0 * -side))
        r_xy = scale * float(torch.maximum(lo[:2].abs(), hi[:2].abs()).norm())
        self.taken.append((off[0], off[1], r_xy))
        self.objects.append(dict(name="house", color=obj.color_name, position=off, scale=scale, yaw=90.0 * -side,
                                 radius=r_xy, caption=False, parts=parts))


_SUN = (0.55, 0.35, 0.76)  # direction towards the sun of the floor and outdoor scenes
# light, background, setting (caption words), eye, extent
_Setup = tuple[Light, Sky | tuple[float, float, float], str, tuple[float, float, float], float]


def _floor_scene(b: _Builder, n_objects: int | None) -> _Setup:
    """Objects on a wooden / tiled / marble / carpeted floor under a studio backdrop."""
    rng = b.rng
    floor = rng.choice(sorted(_FLOORS))
    b.prims.append(quad(30.0, 30.0, material=_FLOORS[floor], foreground=False, label="floor"))
    names = ["sphere", "cube", "cylinder", "cone", "snowman", "chair", "mushroom", "lamp", "rocket", "table"]
    for _ in range(n_objects if n_objects is not None else rng.randint(1, 3)):
        b.add_object(rng.choice(names), rng.uniform(0.5, 1.0), 1.6, 0.0, rng.choice(sorted(COLORS)))
    light, bg = Light(direction=_SUN), Sky((0.93, 0.93, 0.95), (0.8, 0.8, 0.82), (0.7, 0.7, 0.7))
    return light, bg, f"on a {floor} floor", (0.0, 0.0, 1.0), 2.0


def _room_scene(b: _Builder, n_objects: int | None) -> _Setup:
    """A closed box room (floor, ceiling, four walls) lit by a ceiling point light, with furniture."""
    rng = b.rng
    floor, wall = rng.choice(sorted(_FLOORS)), rng.choice(_WALLS)
    hx, hy, H = rng.uniform(2.5, 3.5), rng.uniform(2.0, 3.0), rng.uniform(2.6, 3.0)
    wm = Material(COLORS[wall]) if wall != "white" else Material((0.88, 0.87, 0.84))
    b.prims += [quad(hx, hy, material=_FLOORS[floor], foreground=False, label="floor"),
                quad(hx, hy, (0, 0, H), material=Material((0.95, 0.95, 0.95)), foreground=False, label="ceiling")]
    for c, yaw, half in (((hx, 0, H / 2), 0, hy), ((-hx, 0, H / 2), 0, hy), ((0, hy, H / 2), 90, hx),
                         ((0, -hy, H / 2), 90, hx)):  # a wall is a quad rotated to stand upright
        b.prims.append(Primitive("quad", (H / 2, half), c, rotation(yaw, pitch_deg=90), wm, False, "wall"))
    names = ["chair", "table", "lamp", "sphere", "cube", "mushroom", "snowman"]
    heights = {"chair": 1.0, "table": 0.75, "lamp": 1.6, "snowman": 1.2}
    for _ in range(n_objects if n_objects is not None else rng.randint(2, 4)):
        name = rng.choice(names)
        b.add_object(name, heights.get(name, rng.uniform(0.4, 0.8)), min(hx, hy), 1.0, rng.choice(sorted(COLORS)))
    light, bg = Light("point", position=(0.3, 0.2, H - 0.25), ambient=0.45), (0.0, 0.0, 0.0)
    return light, bg, f"in a room with {wall} walls and a {floor} floor", (0.0, 0.0, 1.5), min(hx, hy)


def _beach(b: _Builder, extent: float, clear: float, n_objects: int | None) -> None:
    """The sea beyond x = 4, umbrellas and rocks on the sand, a ball."""
    rng = b.rng
    b.prims.append(quad(200.0, 200.0, (204.0, 0, 0.01), material=Material((0.15, 0.4, 0.65), shininess=0.6,
                                                                           exponent=64.0), foreground=False,
                        label="sea"))
    for _ in range(rng.randint(2, 4)):
        b.add_prop(rng.choice(["umbrella", "rock"]), 3.5, clear)
    b.add_object("sphere", 0.4, 3.5, clear, rng.choice(["red", "yellow", "blue"]))


def _forest(b: _Builder, extent: float, clear: float, n_objects: int | None) -> None:
    """Tall trees of varied shape and a rock."""
    for _ in range(n_objects if n_objects is not None else b.rng.randint(10, 16)):
        b.add_object("tree", b.rng.uniform(3.0, 6.0), extent, clear, None, variation=1.0, caption=False)
    b.add_prop("rock", extent, clear)


def _desert(b: _Builder, extent: float, clear: float, n_objects: int | None) -> None:
    """Cacti and rocks on the sand."""
    for _ in range(b.rng.randint(4, 7)):
        b.add_prop(b.rng.choice(["cactus", "rock", "rock"]), 7.0, clear)


def _snow(b: _Builder, extent: float, clear: float, n_objects: int | None) -> None:
    """White trees and a snowman."""
    for _ in range(b.rng.randint(5, 9)):
        b.add_object("tree", b.rng.uniform(3.0, 5.0), extent, clear, "white", variation=0.5, caption=False)
    b.add_object("snowman", 1.7, 6.0, clear, "white")


def _street(b: _Builder, extent: float, clear: float, n_objects: int | None) -> None:
    """A road along x with a centre line, five houses on each side and one car per lane."""
    b.prims.append(quad(200.0, 0.08, (0, 0, 0.005), material=Material((0.95, 0.95, 0.9), "stripes",
                                                                      (0.3, 0.3, 0.32), scale=0.25),
                        foreground=False, label="road marking"))
    for side in (-1, 1):
        for k in range(-2, 3):
            b.add_house(k * 10.0, side)
    for side in (-1, 1):  # one car per lane, driving along x
        b.add_object("car", 1.4, 0, 0, b.rng.choice(["red", "blue", "white", "black"]), lane=(side * 1.6, side))


def _meadow(b: _Builder, extent: float, clear: float, n_objects: int | None) -> None:
    """The generic outdoor scene: trees, houses and a few objects on a green meadow."""
    rng = b.rng
    for _ in range(n_objects if n_objects is not None else rng.randint(2, 4)):
        name = rng.choice(["tree", "house", "sphere", "rocket", "mushroom"])
        size = {"tree": 4.0, "house": 5.0, "rocket": 3.0}.get(name, 1.0)
        b.add_object(name, size, 8.0, clear, None if name in ("tree", "house") else rng.choice(sorted(COLORS)),
                     variation=0.5 if name in ("tree", "house") else 0.0)


_PLACE_CONTENT = {"beach": _beach, "forest": _forest, "desert": _desert, "snow": _snow, "street": _street,
                  "outdoor": _meadow}


def _outdoor_scene(b: _Builder, kind: str, n_objects: int | None) -> _Setup:
    """An outdoor place: its ground, its content (:data:`_PLACE_CONTENT`), sunlight and a sky."""
    b.prims.append(quad(200.0, 200.0, material=_GROUNDS[kind], foreground=False, label="ground"))
    extent, clear = 12.0, 2.0
    _PLACE_CONTENT[kind](b, extent, clear, n_objects)
    light = Light(direction=_SUN, ambient=0.4)
    bg = Sky(sun=_SUN) if kind != "snow" else Sky((0.55, 0.65, 0.8), (0.88, 0.9, 0.93), sun=_SUN)
    return light, bg, _SETTINGS[kind], (0.0, 0.0, 1.6), extent


def _scene_caption(kind: str, objects: list[dict[str, Any]], setting: str) -> str:
    """The caption: the captioned objects and the setting ("a red chair on a wooden floor"), else the place."""
    named = [(o["name"], o["color"]) for o in objects if o["caption"]]
    if named:
        return f"{join_phrases([object_phrase(n, c) for n, c in named])} {setting}"
    return _PLACE_NOUNS.get(kind, setting)


def make_scene(kind: str = "floor", seed: int = 0, n_objects: int | None = None) -> Scene:
    """Build a scene of ``kind`` (one of :data:`SCENE_KINDS`) deterministically from ``seed``."""
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; choose one of {', '.join(SCENE_KINDS)}")
    b = _Builder(random.Random(f"{kind}-{seed}"))
    if kind == "floor":
        light, bg, setting, eye, extent = _floor_scene(b, n_objects)
    elif kind == "room":
        light, bg, setting, eye, extent = _room_scene(b, n_objects)
    else:
        light, bg, setting, eye, extent = _outdoor_scene(b, kind, n_objects)
    return Scene(kind, b.prims, light, bg, _scene_caption(kind, b.objects, setting), b.objects, eye, extent, seed)


def scene_cameras(
    scene: Scene,
    n: int,
    width: int,
    height: int,
    seed: int = 0,
    fov_y: float = 0.9,
) -> tuple[Tensor, Tensor]:  # viewmats [n, 4, 4], Ks [n, 3, 3]
    """Posed views of a scene: orbit views around the objects for ``"floor"``, first-person views from around
    :attr:`Scene.eye` (random heading, slightly downward) for rooms and outdoor places."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 3, generator=g)
    if scene.kind == "floor":
        az = 2 * math.pi * (u[:, 0] + torch.arange(n)) / n
        el = torch.deg2rad(15 + 35 * u[:, 1])
        r = 3.0 + 1.5 * u[:, 2]
        eye = torch.stack([r * el.cos() * az.cos(), r * el.cos() * az.sin(), r * el.sin()], -1)
        target = torch.tensor([0.0, 0.0, 0.3]).expand_as(eye)
    else:
        az = 2 * math.pi * (u[:, 0] + torch.arange(n)) / n
        eye = torch.tensor(scene.eye).expand(n, 3).clone()
        eye[:, :2] += (u[:, 1:] - 0.5) * 0.5
        pitch = -torch.deg2rad(5 + 15 * u[:, 1])
        target = eye + torch.stack([az.cos() * pitch.cos(), az.sin() * pitch.cos(), pitch.sin()], -1)
    return look_at(eye, target), intrinsics_from_fov(torch.full((n,), fov_y), width, height)
