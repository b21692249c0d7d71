"""Reading dataset manifests (``transforms.json``, ``rgbd.json``, ``cameras.json``, ...) without trusting them.

Every reader of a manifest goes through these helpers, so that every bad byte or value becomes one
:class:`~latent3d.errors.UserError` naming the file, and every path it names stays inside the dataset folder: a
manifest that says ``../../etc/passwd`` (or an absolute path) is refused, never opened.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from latent3d.errors import UserError


def read_json(path: Path, fix: str) -> Any:
    """Parse a JSON file (a regular file, :func:`~latent3d.io.files.open_regular`); an unreadable file, bad UTF-8 or
    bad JSON is one error ending in ``fix``."""
    from latent3d.io.files import read_regular_bytes

    data = read_regular_bytes(path, "JSON file", fix)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        msg = f"{path}: not a readable JSON file ({type(e).__name__}: {e}); {fix}"
        raise UserError(msg.replace("\n", " ")) from None


def resolve_inside(root: Path, rel: Any, what: str, manifest: Path) -> Path:
    """``root / rel`` as a path inside ``root``: ``rel`` must be a relative path string whose normalised form does not
    climb out of ``root`` (symbolic links that the user placed inside the folder are followed, as any file)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise UserError(f"{manifest}: the {what} path must be a non-empty string, got {rel!r}")
    if os.path.isabs(rel) or os.path.splitdrive(rel)[0]:
        raise UserError(f"{manifest}: {what} path {rel!r} is absolute; paths in a dataset manifest are relative to "
                        f"its folder {root}")
    root_n = os.path.normpath(os.path.abspath(root))
    p = os.path.normpath(os.path.join(root_n, rel))
    if os.path.commonpath([root_n, p]) != root_n:
        raise UserError(f"{manifest}: {what} path {rel!r} leaves the dataset folder {root}; refused")
    return Path(p)


def number(value: Any, name: str, manifest: Path, lo: float = -math.inf, hi: float = math.inf,
           lo_open: bool = False) -> float:
    """A finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), else one error naming the field."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not ok or not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise UserError(f"{manifest}: {name} must be a finite number in {rng}, got {value!r}")
    return v
