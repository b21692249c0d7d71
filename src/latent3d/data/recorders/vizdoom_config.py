"""Settings of a VizDoom recording (``latent3d data vizdoom``); importing this module loads neither torch nor vizdoom,
so the command line reads its defaults, help and valid ranges from here (:mod:`latent3d.ranges`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

from latent3d.ranges import check_config, within

INSTALL = "pip install 'latent3d[vizdoom]' (or pip install vizdoom)"
BYTES_PER_PIXEL = 40  # a recorded episode in memory: uint8 RGB + float depth, then float copies while it is written
ENGINE_BYTES = 300 * 10**6  # the engine process and its 640x480 buffers

MAP_PATTERN = re.compile(r"MAP(0[1-9]|[12][0-9]|3[0-2])")  # freedoom2.wad's 32 maps
MAX_SIZE = 400  # the square crop of the engine's 640x480 frame is 400 x 480 pixels: never upsampled


def require_vizdoom() -> Any:
    """The ``vizdoom`` module, or one :class:`~latent3d.errors.UserError` line saying how to install it (checked
    before anything heavy loads)."""
    from latent3d.errors import UserError

    try:
        import vizdoom
    except ImportError:  # also a broken install (a missing shared library)
        raise UserError(f"latent3d data vizdoom records from the VizDoom engine, which is not installed; "
                        f"{INSTALL}") from None
    return vizdoom


def episode_bytes(frames: int, size: int) -> int:
    """Memory to record and write one episode (:data:`BYTES_PER_PIXEL`, :data:`ENGINE_BYTES`)."""
    return frames * size * size * BYTES_PER_PIXEL + ENGINE_BYTES


def map_problem(name: str) -> str | None:
    """None for a map of freedoom2.wad (MAP01 .. MAP32), else what is wrong (one line)."""
    if MAP_PATTERN.fullmatch(name):
        return None
    return f"--map {name!r} is not a map of freedoom2.wad; give MAP01 .. MAP32"


def check_map(value: str) -> str:
    """Click callback of ``--map``: upper-cases the name and refuses anything but MAP01 .. MAP32."""
    import typer

    value = value.strip().upper()
    problem = map_problem(value)
    if problem:
        raise typer.BadParameter(problem.split(": ", 1)[-1])
    return value


@dataclass
class VizDoomConfig:
    """What is recorded: how many episodes of how many frames, at which size, on which map."""

    episodes: int = within(1, 10**5, 4)
    """Episodes (one folder episode_000, episode_001, ... each); episode k starts from its own seed."""
    frames: int = within(2, 10**5, 48)
    """Frames per episode, one per game tic (1/35 s); the agent walks about 0.125 m per frame."""
    size: int = within(8, MAX_SIZE, 64)
    """Image height = width in pixels (a square crop with a 90 degree field of view, resampled to this size)."""
    map: str = "MAP01"
    """Map of freedoom2.wad (MAP01 .. MAP32), played without monsters."""

    def __post_init__(self) -> None:
        check_config(self)

    def relations(self) -> Iterator[str]:
        problem = map_problem(self.map)
        if problem:
            yield problem
