"""Cameras checked in one place: every reader and writer of a camera file goes through these checks.

A camera that would put inf/nan into ray generation or training (a focal length of 1e-300, a pose row of 1e29, a
singular or scaled "rotation") is one :class:`~latent3d.errors.UserError` line naming the file and the frame, raised
where the file is read (or before a writer writes anything), never a crash in ``linalg.solve`` many steps later.

Callers: the SRN/pixelNeRF and transforms.json object readers and writers (:mod:`latent3d.data.formats.multiview`), the
transforms.json dataset reader and writer (:mod:`latent3d.data.formats.transforms_json`), the RGBD set reader
(:mod:`latent3d.data.formats.rgbd`, each item's K) and the object-dataset settings check
(:mod:`latent3d.data.procedural.object_sets`: the cameras of the extreme radius and field of view). A reader of a new
format (e.g. GSN's) calls :func:`check_pose` on each 4x4 matrix and :func:`check_intrinsics` on each pinhole camera, and
nothing else.

The bounds, each one constant:

- :data:`FOCAL_RATIO` = 1e4: a focal length (px) lies in ``[max(w, h) / 1e4, max(w, h) * 1e4]`` -- a field of view
  between 0.006 and 179.99 degrees (the upper bound is the transforms.json reader's old one, now shared);
  the principal point lies within ``max(w, h) * 1e4`` px of the origin.
- :data:`ORTHO_TOL` = 1e-3: the 3x3 block is a rotation, ``max |R^T R - I| <= 1e-3`` and ``det R > 0``. Float32
  round-off is ~1e-7 and pose files printed with 6 decimals are off by ~1e-6, so real data passes by three orders of
  magnitude; a scaled, sheared, singular or mirrored matrix does not (these are not pinhole camera poses).
- :data:`MAX_TRANSLATION` = 1e4 world units: ``|t| <= 1e4`` (SRN cars/chairs put cameras 1.3-4 units from the
  object, NeRF-synthetic at 4, unscaled COLMAP scenes at tens to hundreds); ``|t|`` is the camera's distance from
  the world origin for a camera-to-world and a world-to-camera matrix alike.
- :data:`AFFINE_TOL` = 1e-6: the bottom row is ``0 0 0 1``.
- :data:`MAX_IMAGE_SIDE` = 10^6 px: image width and height are whole numbers in ``1..10^6``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from latent3d.errors import UserError

FOCAL_RATIO = 1e4  # focal length and principal point within this factor of the image size (px)
ORTHO_TOL = 1e-3  # max |R^T R - I| of a pose's 3x3 block
MAX_TRANSLATION = 1e4  # world units, |t| of a pose
AFFINE_TOL = 1e-6  # max |bottom row - (0 0 0 1)|
MAX_IMAGE_SIDE = 10**6  # px, width and height of the image a camera is for

_POSE_FIX = "a camera pose is a rigid 4x4 transform [R t; 0 0 0 1] with R a rotation"


def pose_problem(m: Any) -> str | None:  # m: [4, 4] camera-to-world or world-to-camera
    """The first thing that keeps ``m`` from being a camera pose within the module's bounds, or None."""
    a = np.asarray(m, dtype=np.float64)
    if a.shape != (4, 4):
        return f"a pose is a 4x4 matrix, got shape {list(a.shape)}"
    if not np.isfinite(a).all():
        return f"{int((~np.isfinite(a)).sum())} non-finite (NaN or infinite) entries"
    with np.errstate(all="ignore"):  # entries up to 1e308: R^T R may overflow to inf, which is refused below
        off = float(np.abs(a[3] - (0.0, 0.0, 0.0, 1.0)).max())
        if not off <= AFFINE_TOL:
            return f"bottom row is {' '.join(f'{v:.3g}' for v in a[3])}, not 0 0 0 1 (within {AFFINE_TOL:g})"
        R, t = a[:3, :3], a[:3, 3]
        err = float(np.abs(R.T @ R - np.eye(3)).max())
        if not err <= ORTHO_TOL:
            return f"rotation is not orthonormal (max |R^T R - I| = {err:.3g} > {ORTHO_TOL:g})"
        det = float(np.linalg.det(R))
        if not det > 0:
            return f"rotation is a reflection (det = {det:.3g}, must be +1)"
        dist = float(np.linalg.norm(t))
        if not dist <= MAX_TRANSLATION:
            return f"translation |t| = {dist:.3g} exceeds {MAX_TRANSLATION:g} world units"
    return None


def check_pose(m: Any, what: str) -> np.ndarray:  # m: [4, 4] -> [4, 4] float64
    """``m`` as a float64 array, or one :class:`UserError` ``"<what>: <problem>; <fix>"``. ``what`` names the file
    and the frame (``".../pose/000003.txt"``, ``".../transforms.json frame 3"``)."""
    problem = pose_problem(m)
    if problem:
        raise UserError(f"{what}: {problem}; {_POSE_FIX}")
    return np.asarray(m, dtype=np.float64)


def check_image_size(w: Any, h: Any, what: str) -> tuple[int, int]:
    """Width and height as ints: whole numbers of pixels in ``1..MAX_IMAGE_SIDE``, else one :class:`UserError`."""
    for name, v in (("width", w), ("height", h)):
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        if not (ok and math.isfinite(v) and v == int(v) and 1 <= v <= MAX_IMAGE_SIDE):
            raise UserError(f"{what}: image {name} must be a whole number of pixels in 1..{MAX_IMAGE_SIDE}, got {v!r}")
    return int(w), int(h)


def check_intrinsics(fx: float, fy: float, cx: float, cy: float, w: Any, h: Any, what: str) -> None:
    """A pinhole camera for a ``w`` x ``h`` image (pixels): finite, focal lengths in
    ``[max(w, h) / FOCAL_RATIO, max(w, h) * FOCAL_RATIO]``, principal point within ``max(w, h) * FOCAL_RATIO``;
    else one :class:`UserError` naming ``what``."""
    w, h = check_image_size(w, h, what)
    side = max(w, h)
    lo, hi = side / FOCAL_RATIO, side * FOCAL_RATIO
    for name, v in (("fx", fx), ("fy", fy)):
        v = float(v)
        if not lo <= v <= hi:  # also refuses NaN
            raise UserError(f"{what}: focal length {name} = {v:.3g} px is outside [{lo:.3g}, {hi:.3g}] for a {w}x{h} "
                            f"image (a field of view between 0.006 and 179.99 degrees)")
    for name, v in (("cx", cx), ("cy", cy)):
        v = float(v)
        if not abs(v) <= hi:
            raise UserError(f"{what}: principal point {name} = {v:.3g} px is not finite or beyond {hi:.3g} px for a "
                            f"{w}x{h} image")


def check_K(K: Any, w: Any, h: Any, what: str) -> None:  # K: [3, 3] pixels
    """An intrinsics matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (no skew) passing :func:`check_intrinsics`."""
    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3) or k[0, 1] != 0 or k[1, 0] != 0 or list(k[2]) != [0.0, 0.0, 1.0]:
        raise UserError(f"{what}: intrinsics must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {k.tolist()}")
    check_intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], w, h, what)
