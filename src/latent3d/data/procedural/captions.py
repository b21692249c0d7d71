"""Captions for procedural renders: object + colour + view bin, and scene descriptions."""

from __future__ import annotations

from typing import Literal, Sequence

View = Literal["front view", "side view", "back view", "overhead view"]


def view_bin(azimuth_deg: float, elevation_deg: float = 0.0) -> View:
    """View name for an orbit camera (azimuth 0 = in front of the object on +x).

    ``overhead`` when elevation > 60 deg; otherwise, with the azimuth wrapped to (-180, 180]: ``front`` for
    |az| <= 45, ``back`` for |az| >= 135, ``side`` in between.
    """
    if elevation_deg > 60.0:
        return "overhead view"
    az = -((-azimuth_deg + 180.0) % 360.0 - 180.0)  # wrap to (-180, 180]
    if abs(az) <= 45.0:
        return "front view"
    if abs(az) >= 135.0:
        return "back view"
    return "side view"


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for the phrase that follows."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def object_phrase(obj_name: str, color: str | None = None) -> str:
    """``"a red snowman"``, ``"an orange chair"``, ``"a tree"`` (no colour)."""
    words = f"{color} {obj_name}" if color else obj_name
    return f"{article(words)} {words}"


def caption(obj_name: str, color: str | None, azimuth_deg: float, elevation_deg: float = 0.0) -> str:
    """Caption of one object view, e.g. ``caption("snowman", "red", 90, 10) == "a red snowman, side view"``."""
    return f"{object_phrase(obj_name, color)}, {view_bin(azimuth_deg, elevation_deg)}"


def join_phrases(phrases: Sequence[str]) -> str:
    """``["a", "b", "c"] -> "a, b and c"``."""
    phrases = list(phrases)
    if not phrases:
        return ""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def scene_caption(objects: Sequence[tuple[str, str | None]], setting: str) -> str:
    """``scene_caption([("sphere", "blue")], "on a wooden floor") == "a blue sphere on a wooden floor"``.

    ``setting`` is the place phrase (``"on a wooden floor"``, ``"in a room with white walls"``, ...); with no
    objects the caption is the setting's own noun phrase (pass e.g. ``"a sandy beach"``).
    """
    if not objects:
        return setting
    return f"{join_phrases([object_phrase(n, c) for n, c in objects])} {setting}"
