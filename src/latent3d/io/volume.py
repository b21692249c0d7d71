"""Radiance grids (density + RGB voxels in a world box) as ``.npz`` files, written atomically, read defensively.

Layout (``numpy.savez_compressed``, read with ``allow_pickle=False``):

* ``density`` float32 ``[X, Y, Z]``, >= 0, per world unit (the convention of
  :func:`latent3d.render.volume.render_volume`: one voxel step of density ``sigma`` has alpha ``1 - exp(-sigma h)``);
* ``rgb`` float32 ``[3, X, Y, Z]`` in [0, 1]: float32 as the decoder outputs it, so a file round-trips exactly
  (uint8 would cost 1/510 of colour, float16 3 digits of density);
* ``bbox_min``, ``bbox_max`` float64 ``[3]``: the world box the grid fills exactly, voxel centres at
  ``bbox_min + (i + 0.5) * (bbox_max - bbox_min) / N`` (:mod:`latent3d.render.grid_checks`, which checks the arrays);
* ``axes`` = ``"xyz"`` (index order i, j, k <-> world x, y, z) and ``up`` = ``"+z"`` (latent3d's world), 0-d strings;
* ``meta_<name>``: optional 0-d scalars (bool, int, float or str), e.g. the seed or the sample index.

The reader opens regular files only (a FIFO named ``volume.npz`` is refused, not waited on) and reads every member's
``.npy`` header before decompressing anything: an archive declaring more than :data:`MAX_VOLUME_BYTES` (a 2 MB file
of zeros can declare a 512^3 grid, 2 GB once loaded) is refused unread.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from latent3d.errors import UserError
from latent3d.io.atomic import atomic_path
from latent3d.render.grid_checks import grid_problem

AXES, UP = "xyz", "+z"
_REQUIRED = ("density", "rgb", "bbox_min", "bbox_max", "axes", "up")
# all arrays of a volume together: a 256^3 grid of density + RGB (4 channels) in float32, 256 MiB (the papers' grids
# are 32^3-128^3; the decoder's largest output is 128^3)
MAX_VOLUME_BYTES = 4 * 256**3 * 4


def _f(x: Any, dtype=np.float32) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=dtype)


def write_volume_npz(
    path: str | os.PathLike,
    density: Any,  # [X, Y, Z] or [1, X, Y, Z], >= 0 (tensor or ndarray)
    rgb: Any,  # [3, X, Y, Z] in [0, 1]
    bbox_min: Any,  # [3]
    bbox_max: Any,  # [3]
    **meta_scalars: bool | int | float | str,
) -> Path:
    """Write a radiance grid atomically in the layout of the module docstring. ``ValueError`` on bad shapes,
    NaN/inf, negative density, an empty box or a meta value that is not a bool/int/float/str scalar."""
    d, c = _f(density), _f(rgb)
    if d.ndim == 4 and d.shape[0] == 1:
        d = d[0]
    lo, hi = _f(bbox_min, np.float64).reshape(-1), _f(bbox_max, np.float64).reshape(-1)
    problem = grid_problem(d, c, lo, hi)
    if problem:
        raise ValueError(f"write_volume_npz: {problem}")
    arrays = dict(density=d, rgb=c, bbox_min=lo, bbox_max=hi, axes=np.array(AXES), up=np.array(UP))
    for key, value in meta_scalars.items():
        if not isinstance(value, (bool, int, float, str, np.bool_, np.integer, np.floating)):
            raise ValueError(f"write_volume_npz: meta {key}={value!r} must be a bool, int, float or str scalar")
        arrays[f"meta_{key}"] = np.array(value)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: numpy appends no ".npz"
        np.savez_compressed(fh, **arrays)
    return Path(path)


def _string(z: Any, key: str) -> str:
    a = z[key]
    if a.shape != () or a.dtype.kind != "U":
        raise ValueError(f"'{key}' must be a 0-d string, got {a.dtype} {list(a.shape)}")
    return str(a)


def _why(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_declared_sizes(fh: Any, path: str | os.PathLike) -> None:
    """Read each member's ``.npy`` header (never its data) and refuse an archive whose arrays add up to more than
    :data:`MAX_VOLUME_BYTES`; a member that is not a ``.npy`` array raises ``ValueError``."""
    import zipfile

    from numpy.lib import format as npf

    total = 0
    with zipfile.ZipFile(fh) as zf:
        for info in zf.infolist():
            with zf.open(info) as member:
                version = npf.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"member '{info.filename}' is .npy format {version}, not 1.0 or 2.0")
                read_header = npf.read_array_header_1_0 if version == (1, 0) else npf.read_array_header_2_0
                shape, _, dtype = read_header(member)
            n = math.prod(shape) * dtype.itemsize
            total += n
            if total > MAX_VOLUME_BYTES:
                raise UserError(f"{path}: '{info.filename}' declares a {dtype} array of shape {list(shape)} "
                                f"({n / 2**20:.0f} MiB); a volume holds at most {MAX_VOLUME_BYTES >> 20} MiB (a 256^3 "
                                "grid of density + RGB in float32): refused before decompressing")


def read_volume_npz(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`write_volume_npz`: ``{"density": [X, Y, Z] float32, "rgb": [3, X, Y, Z]
    float32, "bbox_min": [3] float64, "bbox_max": [3] float64, "axes": "xyz", "up": "+z", "meta": {name: scalar}}``.

    Every bad file (missing, not an npz, corrupt bytes, pickled/object arrays, missing keys, wrong shapes or
    dtypes, NaN/inf, negative density, another axis order, a FIFO, more than :data:`MAX_VOLUME_BYTES` declared)
    raises one :class:`UserError` line naming the file."""
    from latent3d.io.files import open_regular

    fix = "write it with latent3d.io.volume.write_volume_npz"
    with open_regular(path, "volume .npz", "pass the path of a volume .npz") as fh:
        try:
            magic = fh.read(6)
            if magic.startswith(b"\x93NUMPY"):
                raise UserError(f"{path}: a single .npy array, not a volume .npz archive; {fix}")
            if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                raise UserError(f"{path}: not a zip archive, so not a volume .npz (bad or truncated file); {fix}")
            fh.seek(0)
            _check_declared_sizes(fh, path)
            fh.seek(0)
            z = np.load(fh, allow_pickle=False)
        except UserError:
            raise
        except Exception as e:  # not a zip / npy: ValueError, OSError, EOFError, BadZipFile, ...
            raise UserError(f"{path}: not a readable volume .npz ({_why(e)}); {fix}") from None
        return _read_members(z, path, fix)


def _read_members(z: Any, path: str | os.PathLike, fix: str) -> dict:
    """The arrays of an open archive, checked (see :func:`read_volume_npz`)."""
    try:
        with z:
            keys = set(z.files)
            missing = [k for k in _REQUIRED if k not in keys]
            if missing:
                raise UserError(f"{path}: not a latent3d volume, missing array(s) {', '.join(missing)}; {fix}")
            arrays = {k: z[k] for k in ("density", "rgb", "bbox_min", "bbox_max")}
            axes, up = _string(z, "axes"), _string(z, "up")
            meta = {}
            for k in sorted(keys - set(_REQUIRED)):
                a = z[k]
                if not k.startswith("meta_") or a.shape != () or a.dtype.kind not in "biufU":
                    raise ValueError(f"unexpected array '{k}' ({a.dtype} {list(a.shape)})")
                meta[k[len("meta_"):]] = a.item()
    except UserError:
        raise
    except Exception as e:  # corrupt members (BadZipFile CRC, zlib.error), pickled/object arrays (ValueError), ...
        raise UserError(f"{path}: not a readable volume .npz ({_why(e)}); {fix}") from None
    bad = [k for k, a in arrays.items() if a.dtype.kind != "f"]
    if bad:
        raise UserError(f"{path}: '{bad[0]}' must hold floats, got {arrays[bad[0]].dtype}; {fix}")
    d, c = arrays["density"].astype(np.float32), arrays["rgb"].astype(np.float32)
    lo, hi = arrays["bbox_min"].astype(np.float64), arrays["bbox_max"].astype(np.float64)
    problem = grid_problem(d, c, lo, hi)
    if problem:
        raise UserError(f"{path}: {problem}; the file is corrupt or not a latent3d volume")
    if (axes, up) != (AXES, UP):
        raise UserError(f"{path}: axes '{axes}' with up '{up}', latent3d reads only axes '{AXES}' with up '{UP}'")
    return dict(density=d, rgb=c, bbox_min=lo, bbox_max=hi, axes=axes, up=up, meta=meta)
