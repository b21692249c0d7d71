"""Named procedural objects built from analytic primitives.

Every object is returned in a canonical frame: **world z up, front facing +x** (orbit azimuth 0 = "front view"),
the centre of its axis-aligned bounding box at the **origin**, and scaled so that the bounding box (hence the
object) fits inside the **unit sphere** (box half-diagonal = ``FIT_RADIUS``). Text-to-3D cameras orbiting the
origin at radius 2-5 therefore always see the whole object.

``variation=0`` gives the one fixed shape per name (the same for every seed); ``variation>0`` randomises proportions
(and a few discrete choices: chair arms, round/square table, conifer/broad-leaf tree, ...) within the category,
deterministically from ``seed``. ``color`` recolours the main part (a palette name from
:data:`latent3d.data.procedural.shading.COLORS`, an RGB tuple, ``"random"`` = palette colour picked by the seed, or
``None`` = the object's default colour); secondary parts (a snowman's carrot, a tree's trunk) keep their natural
colours.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch

from latent3d.data.procedural.primitives import Primitive, bounds, box, cone, cylinder, ellipsoid, rotation, sphere
from latent3d.data.procedural.shading import COLORS, Material

FIT_RADIUS = 0.95
MaterialName = Literal["matte", "plastic", "metal", "wood"]


@dataclass
class Object3D:
    """A named object: its primitives in the canonical frame plus what it was made from."""

    name: str
    color: str | tuple[float, float, float]  # palette name, or an RGB tuple
    primitives: list[Primitive]
    seed: int | None = None
    variation: float = 0.0
    material: MaterialName = "matte"

    @property
    def color_name(self) -> str:
        """The colour word for captions (nearest palette colour for RGB tuples)."""
        if isinstance(self.color, str):
            return self.color
        return min(COLORS, key=lambda k: sum((a - b) ** 2 for a, b in zip(COLORS[k], self.color)))

    def radius(self) -> float:
        """Radius of the bounding sphere (centred at the origin) of the object's bounding box."""
        lo, hi = bounds(self.primitives)
        return float(torch.maximum(lo.abs(), hi.abs()).norm())

    def placed(self, scale: float = 1.0, offset: Sequence[float] = (0, 0, 0), yaw_deg: float = 0.0) -> list[Primitive]:
        """Primitives after uniform scaling, a rotation about z and a translation (for scene building)."""
        return [p.transformed(scale, offset, yaw_deg) for p in self.primitives]


class _Vary:
    """Deterministic randomiser: identity when ``variation == 0``."""

    def __init__(self, variation: float, seed: int | None):
        self.v = float(variation)
        self.rng = random.Random(0 if seed is None else int(seed))

    def __call__(self, x: float, rel: float = 0.3) -> float:
        return x if self.v <= 0 else x * (1.0 + self.v * rel * self.rng.uniform(-1.0, 1.0))

    def flip(self, default: bool, p: float = 0.5) -> bool:
        return default if self.v <= 0 else self.rng.random() < p * min(1.0, self.v) + (1 - min(1.0, self.v)) * default


def _mat(rgb, material: MaterialName = "matte") -> Material:
    if material == "plastic":
        return Material(tuple(rgb), shininess=0.45, exponent=48.0)
    if material == "metal":
        return Material(tuple(rgb), shininess=0.8, exponent=96.0)
    if material == "wood":
        return Material(tuple(rgb), texture="wood", albedo2=tuple(0.6 * c for c in rgb), scale=6.0)
    return Material(tuple(rgb))


def _c(name: str) -> Material:
    return Material(COLORS[name])


# ------------------------------------------------------------------------------------------------ builders
# Each builder gets (vary, main material) and returns primitives in natural units, z up, front +x.
def _snowman(v: _Vary, m: Material) -> list[Primitive]:
    r0, r1, r2 = v(0.5, 0.2), v(0.36, 0.2), v(0.26, 0.2)
    z0, z1 = r0, 2 * r0 + 0.8 * r1
    z2 = z1 + 0.8 * r1 + 0.85 * r2
    out = [sphere(r0, (0, 0, z0), material=m, label="body"), sphere(r1, (0, 0, z1), material=m, label="torso"),
           sphere(r2, (0, 0, z2), material=m, label="head"),
           cone(0.05, 0.0, v(0.11), (r2 + 0.08, 0, z2), rot=rotation(pitch_deg=90), material=_c("orange"), label="nose")]
    for s in (-1, 1):
        out.append(sphere(0.035, (0.88 * r2, s * 0.35 * r2, z2 + 0.3 * r2), material=_c("black"), label="eye"))
    for k in (-0.4, 0.0, 0.4):
        out.append(sphere(0.04, (r1 * math.cos(k), 0, z1 + r1 * math.sin(k)), material=_c("black"), label="button"))
    if v.flip(True, 0.6):
        top = z2 + 0.85 * r2
        out.append(cylinder(0.9 * r2, 0.02, (0, 0, top), material=_c("black"), label="brim"))
        out.append(cylinder(0.6 * r2, v(0.15), (0, 0, top + v(0.15)), material=_c("black"), label="hat"))
    return out


def _chair(v: _Vary, m: Material) -> list[Primitive]:
    w, dpt, h = v(0.5, 0.2), v(0.5, 0.2), v(0.48, 0.25)  # seat width (y), depth (x), height
    back_h, leg = v(0.55, 0.35), v(0.035, 0.3)
    th = 0.04
    out = [box((dpt / 2, w / 2, th), (0, 0, h), material=m, label="seat")]
    round_legs = v.flip(False)
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = (sx * (dpt / 2 - leg), sy * (w / 2 - leg), (h - th) / 2)
            out.append(cylinder(leg, (h - th) / 2, c, material=m, label="leg") if round_legs
                       else box((leg, leg, (h - th) / 2), c, material=m, label="leg"))
    out.append(box((th, w / 2, back_h / 2), (-dpt / 2 + th, 0, h + back_h / 2), material=m, label="back"))
    if v.flip(False, 0.4):
        for sy in (-1, 1):
            out.append(box((dpt / 2, 0.03, 0.02), (0, sy * (w / 2 - 0.03), h + 0.22), material=m, label="arm"))
            out.append(box((0.02, 0.02, 0.11), (dpt / 2 - 0.04, sy * (w / 2 - 0.03), h + 0.11), material=m, label="arm"))
    return out


def _table(v: _Vary, m: Material) -> list[Primitive]:
    L, W, h = v(1.2, 0.3), v(0.75, 0.25), v(0.72, 0.2)
    th = 0.04
    if v.flip(False, 0.35):  # round top on a pedestal
        r = 0.5 * W * 1.3
        return [cylinder(r, th / 2, (0, 0, h - th / 2), material=m, label="top"),
                cylinder(v(0.06), (h - th) / 2, (0, 0, (h - th) / 2), material=m, label="pedestal"),
                cylinder(r * 0.55, 0.02, (0, 0, 0.02), material=m, label="foot")]
    out = [box((W / 2, L / 2, th / 2), (0, 0, h - th / 2), material=m, label="top")]
    leg = v(0.04, 0.3)
    for sx in (-1, 1):
        for sy in (-1, 1):
            out.append(box((leg, leg, (h - th) / 2), (sx * (W / 2 - 2 * leg), sy * (L / 2 - 2 * leg), (h - th) / 2),
                           material=m, label="leg"))
    return out


def _mushroom(v: _Vary, m: Material) -> list[Primitive]:
    sr, sh = v(0.14, 0.3), v(0.5, 0.3)
    cr, ch = v(0.45, 0.25), v(0.25, 0.3)
    out = [cone(sr * 1.2, sr, sh / 2, (0, 0, sh / 2), material=Material((0.93, 0.9, 0.8)), label="stem"),
           ellipsoid((cr, cr, ch), (0, 0, sh), material=m, label="cap")]
    dots = Material((0.97, 0.97, 0.95))
    for az, el in ((0, 50), (60, 35), (-60, 35), (120, 45), (-120, 45), (180, 35), (0, 88)):
        a, e = math.radians(az), math.radians(el)
        p = (cr * math.cos(e) * math.cos(a), cr * math.cos(e) * math.sin(a), sh + ch * math.sin(e))
        out.append(sphere(0.05 + 0.01 * (el > 80), p, material=dots, label="dot"))
    return out


def _lamp(v: _Vary, m: Material) -> list[Primitive]:
    ph, br = v(1.1, 0.3), v(0.22, 0.25)
    sb, st, sh = v(0.32, 0.25), v(0.2, 0.3), v(0.18, 0.3)
    metal = Material((0.25, 0.25, 0.27), shininess=0.6, exponent=64.0)
    return [cylinder(br, 0.025, (0, 0, 0.025), material=metal, label="base"),
            cylinder(0.025, ph / 2, (0, 0, ph / 2), material=metal, label="pole"),
            cone(sb, st, sh, (0, 0, ph + sh * 0.6), material=m, label="shade"),
            sphere(0.07, (0, 0, ph), material=Material((1.0, 0.97, 0.8), emissive=True), label="bulb")]


def _rocket(v: _Vary, m: Material) -> list[Primitive]:
    r, h, nh = v(0.2, 0.25), v(0.9, 0.3), v(0.4, 0.3)
    red = Material(COLORS["red"], shininess=0.3)
    out = [cylinder(r, h / 2, (0, 0, 0.15 + h / 2), material=m, label="body"),
           cone(r, 0.0, nh / 2, (0, 0, 0.15 + h + nh / 2), material=red, label="nose"),
           cone(r * 0.5, r * 0.75, 0.075, (0, 0, 0.075), material=_c("grey"), label="nozzle"),
           sphere(r * 0.35, (r * 0.8, 0, 0.15 + 0.7 * h), material=Material((0.5, 0.75, 0.95), shininess=0.7),
                  label="window")]
    n_fins = 4 if v.flip(False) else 3
    for k in range(n_fins):
        yaw = 180.0 + 360.0 * k / n_fins
        a = math.radians(yaw)
        fl = v(0.18)
        out.append(box((fl / 2, 0.015, 0.16), (math.cos(a) * (r + fl / 2 - 0.02), math.sin(a) * (r + fl / 2 - 0.02),
                                                 0.16), rot=rotation(yaw), material=red, label="fin"))
    return out


def _tree(v: _Vary, m: Material) -> list[Primitive]:
    tr, th = v(0.09, 0.3), v(0.6, 0.3)
    out = [cylinder(tr, th / 2, (0, 0, th / 2), material=Material((0.4, 0.26, 0.13)), label="trunk")]
    if v.flip(False):  # conifer: stacked cones
        n, r, z = 3, v(0.55, 0.25), th * 0.8
        for k in range(n):
            rk, hk = r * (1 - 0.22 * k), v(0.4, 0.2)
            out.append(cone(rk, 0.0, hk, (0, 0, z + hk), material=m, label="foliage"))
            z += hk * 0.9
        return out
    r = v(0.5, 0.25)
    out.append(sphere(r, (0, 0, th + r * 0.8), material=m, label="crown"))
    for k in range(3):
        a = math.radians(120 * k + 30)
        out.append(sphere(r * 0.6, (0.55 * r * math.cos(a), 0.55 * r * math.sin(a), th + r * 0.55), material=m,
                          label="crown"))
    return out


def _house(v: _Vary, m: Material) -> list[Primitive]:
    L, W, H = v(1.2, 0.25), v(1.0, 0.25), v(0.7, 0.25)  # along y, along x, wall height
    a = W / 2 * 1.1 / math.sqrt(2)  # roof: a square prism rotated 45 deg about y -> a 45-degree gable
    out = [box((W / 2, L / 2, H / 2), (0, 0, H / 2), material=m, label="walls"),
           Primitive("box", (a, L / 2 * 1.08, a), (0, 0, H), rot=rotation(pitch_deg=45),
                     material=Material((0.65, 0.18, 0.12)), label="roof"),
           box((0.02, 0.12, 0.2), (W / 2 + 0.01, 0, 0.2), material=Material((0.4, 0.22, 0.1)), label="door")]
    glass = Material((0.55, 0.75, 0.9), shininess=0.6)
    for sy in (-1, 1):
        out.append(box((0.02, 0.1, 0.09), (W / 2 + 0.01, sy * L * 0.3, H * 0.6), material=glass, label="window"))
    if v.flip(True, 0.5):
        out.append(box((0.07, 0.07, 0.2), (-W * 0.2, L * 0.25, H + W * 0.3), material=_c("grey"), label="chimney"))
    return out


def _basic(kind: str) -> Callable[[_Vary, Material], list[Primitive]]:
    def build(v: _Vary, m: Material) -> list[Primitive]:
        if kind == "sphere":
            return [sphere(v(0.5), (0, 0, 0), material=m, label="sphere")]
        if kind == "cube":
            return [box((v(0.4), v(0.4), v(0.4)), material=m, label="cube")]
        if kind == "cylinder":
            return [cylinder(v(0.35), v(0.5), material=m, label="cylinder")]
        return [cone(v(0.45), 0.0, v(0.5), material=m, label="cone")]

    return build


def _car(v: _Vary, m: Material) -> list[Primitive]:
    L, W, h = v(1.6, 0.2), v(0.75, 0.15), v(0.3, 0.25)  # along x (front = +x), y, body height
    wr = v(0.16, 0.2)
    out = [box((L / 2, W / 2, h / 2), (0, 0, wr + h / 2 - 0.05), material=m, label="body"),
           box((L * 0.28, W / 2 * 0.9, v(0.17)), (-L * 0.08, 0, wr + h - 0.05 + 0.15), material=m, label="cabin")]
    tyre = Material((0.08, 0.08, 0.08))
    for sx in (-1, 1):
        for sy in (-1, 1):
            out.append(cylinder(wr, 0.06, (sx * L * 0.32, sy * W / 2, wr), rot=rotation(roll_deg=90), material=tyre,
                                label="wheel"))
    out.append(box((0.01, W / 2 * 0.8, 0.12), (-L * 0.08 + L * 0.28, 0, wr + h + 0.1), material=Material(
        (0.55, 0.75, 0.9), shininess=0.6), label="windshield"))
    return out


_BUILDERS: dict[str, tuple[Callable[[_Vary, Material], list[Primitive]], str]] = {
    "snowman": (_snowman, "white"),
    "chair": (_chair, "brown"),
    "table": (_table, "brown"),
    "mushroom": (_mushroom, "red"),
    "lamp": (_lamp, "yellow"),
    "rocket": (_rocket, "white"),
    "tree": (_tree, "green"),
    "house": (_house, "yellow"),
    "car": (_car, "red"),
    "sphere": (_basic("sphere"), "blue"),
    "cube": (_basic("cube"), "red"),
    "cylinder": (_basic("cylinder"), "green"),
    "cone": (_basic("cone"), "yellow"),
}

#: Names accepted by :func:`make_object`.
OBJECT_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def default_color(name: str) -> str:
    """The palette colour an object gets when ``color=None``."""
    return _BUILDERS[name][1]


def normalize_primitives(prims: list[Primitive], fit_radius: float = FIT_RADIUS) -> list[Primitive]:
    """Centre the primitives' bounding box at the origin and scale its half-diagonal to ``fit_radius``."""
    lo, hi = bounds(prims)
    centre = 0.5 * (lo + hi)
    scale = fit_radius / float(0.5 * (hi - lo).norm())
    return [p.transformed(scale, (-scale * centre).tolist()) for p in prims]


def make_object(
    name: str,
    color: str | tuple[float, float, float] | None = None,
    seed: int | None = None,
    variation: float = 0.0,
    material: MaterialName = "matte",
) -> Object3D:
    """Build the named object (see the module docstring for frame, size, colour and variation semantics)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown object {name!r}; choose one of {', '.join(OBJECT_NAMES)}")
    if variation < 0:
        raise ValueError(f"variation must be >= 0, got {variation}")
    builder, default = _BUILDERS[name]
    if color is None:
        color = default
    elif color == "random":
        color = random.Random(f"color-{seed}").choice(sorted(COLORS))
    if isinstance(color, str):
        if color not in COLORS:
            raise ValueError(f"unknown colour {color!r}; choose one of {', '.join(COLORS)} or give an RGB tuple")
        rgb = COLORS[color]
    else:
        rgb = tuple(float(c) for c in color)
    prims = normalize_primitives(builder(_Vary(variation, seed), _mat(rgb, material)))
    return Object3D(name, color, prims, seed, variation, material)
