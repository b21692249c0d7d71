"""Procedural articulated objects: rigid parts of analytic primitives on a kinematic tree of hinges.

3DVADER (arXiv 2307.05445, Sec. 3) learns non-rigid objects from monocular video as "a set of smaller, rigid
components whose poses are estimated and refined during training"; these objects are the ground truth for that
stage: every part is rigid, every joint a hinge (a pivot and an axis, given in the rest pose's world frame, with
angle limits), so a frame is fully described by one angle per joint.

Forward kinematics (:meth:`ArticulatedObject.transforms`): the root part does not move; a part whose joint has pivot
``p``, axis ``a`` and angle ``theta`` moves by ``T_child = T_parent @ H(p, a, theta)``, ``H`` the rotation by
``theta`` about the line through ``p`` along ``a`` (Rodrigues), so a point on the hinge line stays on the parent's
hinge line, and chains compose. Frames are world z up, front +x, inside the unit sphere in the rest pose, as
:mod:`latent3d.data.procedural.objects`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from latent3d.data.procedural.primitives import Primitive, box, cone, cylinder, ellipsoid, sphere
from latent3d.data.procedural.shading import COLORS, Material


@dataclass(frozen=True)
class Joint:
    """A hinge: ``parent`` part index, ``pivot`` and unit ``axis`` in the rest pose's world frame, limits in
    degrees (the rest pose is angle 0)."""

    parent: int
    pivot: tuple[float, float, float]
    axis: tuple[float, float, float]
    limits: tuple[float, float]


@dataclass(frozen=True)
class ArticulatedObject:
    """Parts (each a list of primitives in the rest pose) and, for every part but the root (part 0), its joint."""

    name: str
    caption: str
    part_names: tuple[str, ...]
    parts: tuple[tuple[Primitive, ...], ...]
    joints: tuple[Joint | None, ...]  # joints[0] is None (the root)

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    def transforms(self, angles_deg: Tensor) -> Tensor:  # [..., P - 1] -> [..., P, 4, 4] rest world -> posed world
        """Each part's rigid transform for joint angles ``angles_deg`` (one per non-root part, in part order)."""
        angles = torch.as_tensor(angles_deg, dtype=torch.float64)
        batch = angles.shape[:-1]
        out = [torch.eye(4, dtype=torch.float64).expand(*batch, 4, 4)]
        for k in range(1, self.n_parts):
            j = self.joints[k]
            assert j is not None and j.parent < k, "parents come before their children"
            out.append(out[j.parent] @ hinge(j.pivot, j.axis, angles[..., k - 1]))
        return torch.stack(out, dim=-3)

    def posed(self, angles_deg: Tensor) -> tuple[list[Primitive], list[int]]:
        """The primitives moved to ``angles_deg`` [P - 1] and the part index of each."""
        T = self.transforms(angles_deg)
        prims, part_of = [], []
        for k, part in enumerate(self.parts):
            R, t = T[k, :3, :3], T[k, :3, 3]
            for p in part:
                c = R @ torch.tensor(p.center, dtype=torch.float64) + t
                rot = R @ torch.tensor(p.rot, dtype=torch.float64)
                prims.append(replace(p, center=tuple(c.tolist()), rot=tuple(tuple(r) for r in rot.tolist())))
                part_of.append(k)
        return prims, part_of


def hinge(pivot, axis, angle_deg: Tensor) -> Tensor:  # angle [...] -> [..., 4, 4]
    """Rotation by ``angle_deg`` about the line through ``pivot`` along ``axis`` (Rodrigues), homogeneous."""
    a = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float64), dim=0)
    p = torch.tensor(pivot, dtype=torch.float64)
    th = torch.deg2rad(torch.as_tensor(angle_deg, dtype=torch.float64))
    K = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    s, c = torch.sin(th)[..., None, None], torch.cos(th)[..., None, None]
    R = torch.eye(3, dtype=torch.float64) + s * K + (1 - c) * (K @ K)
    T = torch.zeros(*th.shape, 4, 4, dtype=torch.float64)
    T[..., :3, :3] = R
    T[..., :3, 3] = p - R @ p
    T[..., 3, 3] = 1.0
    return T


def _mat(color: str, kind: str = "plastic") -> Material:
    shine = {"plastic": 0.35, "metal": 0.6, "matte": 0.0}[kind]
    return Material(albedo=COLORS[color], shininess=shine)


def hinge_box(color: str = "red") -> ArticulatedObject:
    """Two parts: a box and its lid, hinged along the box's back top edge (axis -y: positive angles open it)."""
    m, lid = _mat(color), _mat("yellow")
    base = (box((0.45, 0.35, 0.25), (0.0, 0.0, -0.15), material=m, label="box/base"),)
    top = (box((0.45, 0.35, 0.04), (0.0, 0.0, 0.14), material=lid, label="box/lid"),
           sphere(0.06, (0.42, 0.0, 0.2), material=_mat("blue"), label="box/knob"))  # fmt: skip
    return ArticulatedObject("hinge_box", f"a {color} box with a lid", ("base", "lid"), (base, top),
                             (None, Joint(0, (-0.45, 0.0, 0.10), (0.0, -1.0, 0.0), (0.0, 110.0))))  # fmt: skip


def desk_lamp(color: str = "blue") -> ArticulatedObject:
    """A desk lamp: base, lower arm, upper arm, shade; three hinges about y."""
    m = _mat(color, "metal")
    base = (cylinder(0.3, 0.04, (0.0, 0.0, -0.7), material=_mat("grey", "matte"), label="lamp/base"),)
    lower = (cylinder(0.035, 0.3, (0.0, 0.0, -0.36), material=m, label="lamp/lower"),)
    upper = (box((0.28, 0.03, 0.03), (0.25, 0.0, -0.06), material=m, label="lamp/upper"),)
    shade = (cone(0.16, 0.05, 0.12, (0.55, 0.0, -0.18), material=_mat("yellow"), label="lamp/shade"),)
    return ArticulatedObject("desk_lamp", f"a {color} desk lamp", ("base", "lower_arm", "upper_arm", "shade"),
                             (base, lower, upper, shade),
                             (None, Joint(0, (0.0, 0.0, -0.66), (0.0, 1.0, 0.0), (-35.0, 35.0)),
                              Joint(1, (0.0, 0.0, -0.06), (0.0, 1.0, 0.0), (-40.0, 40.0)),
                              Joint(2, (0.52, 0.0, -0.06), (0.0, 1.0, 0.0), (-30.0, 30.0))))  # fmt: skip


def robot_arm(color: str = "orange") -> ArticulatedObject:
    """A robot arm: base, turntable (about z), shoulder and elbow (about y), gripper."""
    m = _mat(color, "metal")
    base = (cylinder(0.32, 0.06, (0.0, 0.0, -0.74), material=_mat("grey", "matte"), label="arm/base"),)
    turn = (cylinder(0.16, 0.1, (0.0, 0.0, -0.58), material=m, label="arm/turntable"),)
    upper = (box((0.06, 0.06, 0.3), (0.0, 0.0, -0.18), material=m, label="arm/upper"),)
    fore = (box((0.28, 0.05, 0.05), (0.26, 0.0, 0.12), material=_mat("white"), label="arm/fore"),)
    grip = (box((0.06, 0.1, 0.06), (0.58, 0.0, 0.12), material=_mat("black", "matte"), label="arm/gripper"),)
    return ArticulatedObject("robot_arm", f"an {color} robot arm", ("base", "turntable", "upper", "fore", "gripper"),
                             (base, turn, upper, fore, grip),
                             (None, Joint(0, (0.0, 0.0, -0.6), (0.0, 0.0, 1.0), (-60.0, 60.0)),
                              Joint(1, (0.0, 0.0, -0.48), (0.0, 1.0, 0.0), (-30.0, 30.0)),
                              Joint(2, (0.0, 0.0, 0.12), (0.0, 1.0, 0.0), (-45.0, 20.0)),
                              Joint(3, (0.54, 0.0, 0.12), (1.0, 0.0, 0.0), (-90.0, 90.0))))  # fmt: skip


def walker(color: str = "green") -> ArticulatedObject:
    """A walking figure: torso, head, two legs and two arms swinging about y."""
    m, skin = _mat(color), _mat("white", "matte")
    torso = (box((0.14, 0.22, 0.28), (0.0, 0.0, 0.05), material=m, label="walker/torso"),)
    head = (sphere(0.14, (0.0, 0.0, 0.5), material=skin, label="walker/head"),)
    legs = [(ellipsoid((0.07, 0.07, 0.3), (0.0, y, -0.52), material=_mat("blue", "matte"), label="walker/leg"),)
            for y in (0.12, -0.12)]
    arms = [(ellipsoid((0.05, 0.05, 0.25), (0.0, y, 0.08), material=m, label="walker/arm"),) for y in (0.3, -0.3)]
    hip = [Joint(0, (0.0, y, -0.23), (0.0, 1.0, 0.0), (-35.0, 35.0)) for y in (0.12, -0.12)]
    shoulder = [Joint(0, (0.0, y, 0.3), (0.0, 1.0, 0.0), (-45.0, 45.0)) for y in (0.3, -0.3)]
    return ArticulatedObject("walker", f"a {color} walking figure",
                             ("torso", "head", "left_leg", "right_leg", "left_arm", "right_arm"),
                             (torso, head, *legs, *arms),
                             (None, Joint(0, (0.0, 0.0, 0.33), (0.0, 0.0, 1.0), (-30.0, 30.0)), *hip, *shoulder))


ARTICULATED: dict[str, Callable[..., ArticulatedObject]] = {
    "hinge_box": hinge_box, "desk_lamp": desk_lamp, "robot_arm": robot_arm, "walker": walker}  # fmt: skip


def joint_motion(obj: ArticulatedObject, frames: int, generator: torch.Generator) -> Tensor:  # -> [F, P - 1]
    """Smooth joint angles over a video: per joint ``mid + amp sin(2 pi f t + phi)`` inside its limits, 0.5-1.5
    cycles per video, amplitude 50-100 % of the half range (degrees)."""
    t = torch.linspace(0.0, 1.0, frames, dtype=torch.float64)[:, None]
    lo = torch.tensor([j.limits[0] for j in obj.joints[1:]], dtype=torch.float64)
    hi = torch.tensor([j.limits[1] for j in obj.joints[1:]], dtype=torch.float64)
    n = len(lo)
    u = torch.rand(3, n, generator=generator, dtype=torch.float64)
    freq, phase, amp = 0.5 + u[0], 2 * math.pi * u[1], (0.5 + 0.5 * u[2]) * (hi - lo) / 2
    return (lo + hi) / 2 + amp * torch.sin(2 * math.pi * freq * t + phase)
