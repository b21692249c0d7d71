"""Bundled checkpoints: tiny models latent3d trains on its own procedural data and ships in the package.

Each checkpoint is a folder under this package directory holding ``config.json`` (or a diffusers
``model_index.json``), ``*.safetensors`` weights and a ``MODEL_CARD.md`` (training command, data, wall time,
metrics). :func:`bundled_checkpoints` finds them; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
OBJECT_MODEL = "object3d-tiny"  # the bundled 3DVADER generator: `latent3d object` and `dream --init object` default
_MARKERS = ("config.json", "model_index.json")


@dataclass(frozen=True)
class BundledCheckpoint:
    name: str
    path: Path
    size_bytes: int
    has_card: bool


def bundled_checkpoints(root: Path = WEIGHTS_DIR) -> list[BundledCheckpoint]:
    """Every checkpoint folder directly under ``root`` (sorted by name)."""
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        if any((d / m).is_file() for m in _MARKERS):
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            found.append(BundledCheckpoint(d.name, d, size, (d / "MODEL_CARD.md").is_file()))
    return found


def bundled_path(name: str) -> Path:
    """Folder of the bundled checkpoint ``name``; a clear error when it is not shipped."""
    from latent3d.errors import UserError

    names = [c.name for c in bundled_checkpoints()]
    if name not in names:
        raise UserError(f"no bundled checkpoint named {name!r}; bundled: {', '.join(names) or 'none'}")
    return WEIGHTS_DIR / name
