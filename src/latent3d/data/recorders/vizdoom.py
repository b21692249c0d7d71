"""Posed RGB-D trajectories recorded from real VizDoom (freedoom2.wad, no monsters): the VizDoom data of
NeuralField-LDM (Kim et al., CVPR 2023, arXiv 2304.09787, Sec. 4, after GSN, DeVries et al., ICCV 2021).

An exploring agent (:class:`ExplorerAgent`) walks from a random spot of the map, already moving at the first
recorded frame: smooth forward motion, at most a few degrees of turn per frame (consecutive frames overlap
strongly), turning away from what the depth buffer shows it cannot walk through. Every frame stores the RGB image,
the z-depth in metres and the camera pose read from the game variables (never integrated from the actions: movement
has momentum). An episode the game disturbs (a teleporter, an exit, a pit the agent cannot leave) is recorded
afresh from a new spot. Each episode is one ``transforms.json`` folder
(:func:`latent3d.data.formats.transforms_json.write_episode`, the writer of ``latent3d data scenes`` too).

Geometry of ZDoom's software renderer inside ViZDoom 1.3 (from its source, checked against an analytic ray cast of
the map's sectors and by depth reprojection between frames, where each constant below is the error's minimum):

- **Frame.** 640x480, ``fov`` cvar 116 degrees across the 640 columns. Doom draws 320x200-shaped pixels:
  ``fy = 1.2 fx`` (ZDoom's ``yaspectmul``). The central 400 x 480 crop, resampled to S x S, therefore has square
  pixels and a 90 degree field of view both ways (``fx = 200.068``, ``fy = 240.081`` engine pixels from ZDoom's
  fixed-point tables, :func:`engine_focal`; principal point at the centre).
- **Depth buffer** (8 bits, ``viz_depth.cpp``), one law per surface, told apart by the labels buffer: floors and
  ceilings ``level = floor((65536 z - 716000) / 469184)`` (7.16 map units per level, to 1831 units); walls
  ``level = floor(z FocalTangent / 7.138 - 1.523)`` (4.46 units per level at this FOV, to 1138); sprites (things,
  flat billboards at the thing's depth) ``level = floor(z FocalTangent / 7.341 - 0.399)`` (4.59 units per level).
  A level is read back at its middle; 255 (sky, too far) and 0 (too near) are ``inf``, no depth. GSN's single law
  ``level / 14 * 100`` (units) is the flats' law without its offset; at this FOV it doubles the reprojection error.
- **Units and axes** (:func:`doom_to_viewmat`, the one conversion): Doom's map is x east, y north, z up, ANGLE
  counter-clockwise from +x in degrees, the eye at POSITION_Z + VIEW_HEIGHT (view bob included). latent3d's world is
  the same right-handed z-up frame scaled by :data:`METRES_PER_UNIT` = 1/32 (the 56-unit player is 1.75 m tall, its
  eye 41 units = 1.28 m); cameras are OpenCV (x right, y down, z forward), see :mod:`latent3d.render.camera`. Depths
  use the same scale, so poses and depths agree (``tests/test_vizdoom.py``).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from latent3d.data.recorders.vizdoom_config import require_vizdoom
from latent3d.errors import UserError

METRES_PER_UNIT = 1.0 / 32.0  # latent3d metres per Doom map unit (player height 56 units = 1.75 m)
RENDER_W, RENDER_H = 640, 480  # the engine frame (the depth buffer's own scale is defined at 480 rows)
FOV_CVAR = 116  # degrees across the 640 columns: 90 degrees across the central 400 (Doom's tangent tables)
CROP_X0, CROP_W = 120, 400  # the central columns kept: 400 x 480 engine pixels = a square of the scene
FLAT_LABEL = 1  # labels buffer value of floors and ceilings (ViZDoom r_draw.cpp R_DrawSpan)
# The depth buffer's three laws (viz_depth.cpp, r_plane.cpp, r_segs.cpp, r_draw.cpp; module docstring): z = step *
# (level + mid), map units, the middle of a level. Flats (floors, ceilings) and sprites by ViZDoom's constants; the
# walls' step by a fit to an analytic ray cast of the map (7.132 .. 7.140 at two FOVs; 65536 * 4/3 per unit in iscale).
FLAT_STEP, FLAT_MID = 469184 / 65536, 0.5 + 716000 / 469184  # (distance - 2 * 358000) // 469184, distance in 16.16
WALL_STEP_TAN, WALL_MID = 7.138, 0.5 + 9500 * 255 / 1590500  # step x FocalTangent; (iscale / 100 - 9500) * 255 / ...
SPRITE_STEP_TAN, SPRITE_MID = 319500 / 255 * 384 / 65536, 0.5 + 500 * 255 / 319500  # (iscale - 500) * 255 / 319500
WARMUP_TICS = (24, 160)  # random warm-up walk (tics, LO..HI) before frame 0: FOV eased in, agent moving
START_TRIES = 8  # random start spots tried before the map's own start
EPISODE_TRIES = 5  # attempts at an episode the game ends early (an exit line, a teleporter)
STUCK_TICS = 16  # tics below 0.5 map units of motion on average: stuck, the episode starts afresh
JUMP = 48.0  # map units in one tic: more is a teleporter, not a walk (full speed is about 8)


# ----------------------------------------------------------------------------------------------- geometry
def engine_focal(fov_cvar: int = FOV_CVAR, width: int = RENDER_W, height: int = RENDER_H) -> tuple[float, float, float]:
    """(fx, fy, FocalTangent) of the engine frame, as ZDoom computes them: ``FieldOfView = int(fov * 8192 / 360)``
    fine angles, ``FocalTangent = finetangent[2048 + FieldOfView / 2]`` (tan((i + 0.5) 2 pi / 8192) in 16.16),
    ``FocalLengthX = centerx / FocalTangent`` and ``FocalLengthY = centerx * yaspectmul / FocalTangent`` with
    ``yaspectmul = 320 * H / (200 * W)`` in 16.16 (r_utility.cpp R_SetViewSize, r_main.cpp R_InitTextureMapping)."""
    fine = int(fov_cvar * 8192 / 360) // 2
    tangent = round(math.tan((fine + 0.5) * 2.0 * math.pi / 8192) * 65536)  # 16.16 fixed point
    yaspect = (320 << 16) * height // (200 * width)
    fx = (width // 2) * 65536 / tangent
    return fx, fx * yaspect / 65536, tangent / 65536


def output_K(size: int) -> Tensor:  # [3, 3] float64
    """Intrinsics of a recorded ``size`` x ``size`` frame: the engine's focal lengths scaled from the 400 x 480 crop
    (pixel centres at +0.5, :mod:`latent3d.render.camera`; principal point at the crop's centre)."""
    fx, fy, _ = engine_focal()
    sx, sy = size / CROP_W, size / RENDER_H
    return torch.tensor([[fx * sx, 0.0, 0.5 * size], [0.0, fy * sy, 0.5 * size], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


def doom_to_viewmat(x: float, y: float, z_eye: float, angle_deg: float) -> Tensor:  # [4, 4] float64
    """World-to-camera matrix (OpenCV camera, z-up world in metres) of a Doom eye at map position (x, y, z_eye)
    looking along ANGLE (degrees counter-clockwise from +x) with pitch 0: the one place where Doom's axes and map
    units become latent3d's (module docstring). Camera axes in the world: forward ``(cos a, sin a, 0)``, right
    ``(sin a, -cos a, 0)``, down ``(0, 0, -1)``."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    R = torch.tensor([[s, -c, 0.0], [0.0, 0.0, -1.0], [c, s, 0.0]], dtype=torch.float64)  # rows: right, down, fwd
    centre = torch.tensor([x, y, z_eye], dtype=torch.float64) * METRES_PER_UNIT
    V = torch.eye(4, dtype=torch.float64)
    V[:3, :3] = R
    V[:3, 3] = -R @ centre
    return V


def depth_levels_to_metres(
    levels: np.ndarray,  # [H, W] uint8 depth buffer
    labels: np.ndarray,  # [H, W] uint8 labels buffer (FLAT_LABEL = floor / ceiling)
    thing_labels: set[int],  # labels buffer values of sprites (things)
) -> np.ndarray:  # [H, W] float32 camera z-depth in metres, inf = none
    """The depth buffer in metres: the law of each pixel's surface (flat, sprite or wall, told by the labels
    buffer), read at the middle of its level; levels 0 (nearer than the buffer's range) and 255 (sky, farther than
    its range) have no depth."""
    _, _, tangent = engine_focal()
    flat = labels == FLAT_LABEL
    sprite = np.isin(labels, np.fromiter(thing_labels, dtype=np.uint8, count=len(thing_labels))) & ~flat
    step = np.where(flat, FLAT_STEP, np.where(sprite, SPRITE_STEP_TAN, WALL_STEP_TAN) / tangent)
    mid = np.where(flat, FLAT_MID, np.where(sprite, SPRITE_MID, WALL_MID))
    z = step * (levels.astype(np.float64) + mid) * METRES_PER_UNIT
    return np.where((levels == 0) | (levels == 255), np.inf, z).astype(np.float32)


def crop_and_resample(
    rgb: np.ndarray,  # [480, 640, 3] uint8 engine frame
    depth: np.ndarray,  # [480, 640] float32 metres (inf = none)
    size: int,
) -> tuple[np.ndarray, np.ndarray]:  # [size, size, 3] uint8, [size, size] float32
    """The central 400 x 480 crop resampled to ``size`` x ``size``: colours by area averaging (PIL's box filter),
    depth by the engine pixel under each output pixel centre (a real depth, never a blend across an edge)."""
    from PIL import Image

    rgb = np.ascontiguousarray(rgb[:, CROP_X0:CROP_X0 + CROP_W])
    depth = depth[:, CROP_X0:CROP_X0 + CROP_W]
    img = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BOX))
    cols = np.floor((np.arange(size) + 0.5) * (CROP_W / size)).astype(np.int64)
    rows = np.floor((np.arange(size) + 0.5) * (RENDER_H / size)).astype(np.int64)
    return img, depth[rows[:, None], cols[None, :]]


# -------------------------------------------------------------------------------------------------- agent
@dataclass
class ExplorerAgent:
    """Walks forward and steers by the depth ahead, toward open space. Per image column the distance to the nearest
    obstacle (:func:`obstacle_distance`) is smoothed; the agent heads for the most open direction (favouring
    straight ahead, plus a slowly wandering bias) at a turn rate proportional to its angle. When the centre of view
    is nearer than ``near`` it turns at full rate toward the side with more depth, keeping that side until clear,
    and pushes less (never stopping: the pose changes every frame). Blocked by what the depth does not show (a
    sprite, an invisible line: its speed, read from the game, stays low), it turns away for ``escape_tics``. The
    turn rate changes by at most ``turn_accel`` degrees per frame: smooth motion, strongly overlapping frames."""

    rng: np.random.Generator
    forward: float = 12.0  # MOVE_FORWARD_BACKWARD_DELTA push: about 4 map units (0.125 m) per tic at full speed
    min_push: float = 0.4  # share of ``forward`` kept right in front of a wall
    max_turn: float = 3.0  # degrees per tic
    turn_accel: float = 0.75  # degrees per tic, per tic
    gain: float = 0.12  # degrees per tic of turn per degree of angle to the most open direction
    near: float = 3.0  # metres: a centre of view nearer than this is a wall ahead
    wander: float = 0.08  # std of the steps of the wandering bias (a share of the half field of view)
    escape_tics: int = 40  # tics of full turn once blocked (about 120 degrees)
    turn: float = 0.0
    bias: float = 0.0
    avoiding: int = 0  # +1 / -1 while turning left / right away from a wall or an obstacle, 0 when clear
    slow: int = 0  # consecutive tics below 1 map unit of motion
    escape: int = 0  # tics left of an escape turn

    def act(
        self,
        depth: np.ndarray,  # [H, W] float metres of the square crop (90 degree field of view), inf = none
        eye: float,  # metres from the feet to the eye (VIEW_HEIGHT)
        speed: float,  # map units moved during the last tic (from the game's position)
    ) -> tuple[float, float]:  # (forward push, turn in degrees counter-clockwise)
        """The next action from the current depth and speed (see the class docstring)."""
        w = depth.shape[1]
        free = np.minimum(obstacle_distance(depth, eye), 50.0)
        k = max(1, w // 8)
        free = np.convolve(np.pad(free, k // 2, mode="edge"), np.ones(k) / k, mode="valid")[:w]
        x = (np.arange(w) + 0.5) / w * 2.0 - 1.0  # -1 left edge .. 1 right edge (tan of the angle)
        self.bias = float(np.clip(0.98 * self.bias + self.rng.normal(0.0, self.wander), -0.6, 0.6))
        centre = float(free[w // 4:3 * w // 4].min())
        self.slow = self.slow + 1 if speed < 1.0 else 0
        if self.slow >= 4 and self.escape == 0:
            self.escape = self.escape_tics
            self.avoiding = self.avoiding or (1 if free[: w // 2].mean() >= free[w // 2:].mean() else -1)
        if self.escape > 0 or centre < self.near:
            self.escape = max(self.escape - 1, 0)
            if self.avoiding == 0:
                self.avoiding = 1 if free[: w // 2].mean() >= free[w // 2:].mean() else -1
            target = self.avoiding * self.max_turn
        else:
            self.avoiding = 0
            score = free * (1.0 - 0.35 * np.abs(x - self.bias))
            target = -self.gain * math.degrees(math.atan(x[int(np.argmax(score))]))  # image right = clockwise
        target = float(np.clip(target, -self.max_turn, self.max_turn))
        self.turn += float(np.clip(target - self.turn, -self.turn_accel, self.turn_accel))
        push = 1.0 if self.escape > 0 else float(np.clip((centre - 1.0) / (self.near - 1.0), self.min_push, 1.0))
        return self.forward * push, self.turn


def obstacle_distance(
    depth: np.ndarray,  # [H, W] metres of the square crop (90 degree field of view both ways), inf = none
    eye: float,  # metres from the feet to the eye
) -> np.ndarray:  # [W] metres to the nearest obstacle along each column, inf = none seen
    """What the player cannot walk through, per image column: points between a step (24 map units) and the
    player's height (56) above the feet, and drops deeper than a step (a pit it could not climb out of)."""
    h = depth.shape[0]
    tan_down = (np.arange(h) + 0.5 - 0.5 * h) / (0.5 * h)  # [H] rows below the horizon, 90 degree crop
    height = eye - tan_down[:, None] * np.where(np.isfinite(depth), depth, 0.0)  # [H, W] metres above the feet
    step, tall = 24 * METRES_PER_UNIT, 56 * METRES_PER_UNIT
    blocked = np.isfinite(depth) & (((height > step) & (height < tall)) | (height < -step))
    return np.where(blocked, depth, np.inf).min(axis=0)


# ------------------------------------------------------------------------------------------- start spots
def random_start(
    sectors: Any,  # the state's sectors info (vizdoom Sector objects: floor/ceiling height, lines)
    rng: np.random.Generator,
    clearance: float = 40.0,  # map units from every line (the player's radius is 16)
) -> tuple[int, int] | None:
    """A random spot of the map to start from: a sector drawn by sqrt(area) among those the player fits in (ceiling at
    least 72 units above the floor, at least 128 x 128 units), a point inside it (even-odd rule over its lines)
    at least ``clearance`` from every line of the map. None if 200 draws found none."""
    from latent3d.data.recorders.vizdoom_bev import distance_to_segments, inside, read_sectors

    secs = read_sectors(sectors)
    segs = np.concatenate([s.lines for s in secs] or [np.zeros((0, 4))])
    cands = []
    for sec in secs:
        lines = sec.lines
        area = 0.5 * abs(float(np.sum(lines[:, 0] * lines[:, 3] - lines[:, 2] * lines[:, 1])))
        if sec.ceiling - sec.floor >= 72 and area >= 128 * 128:
            cands.append((lines, area))
    if not cands:
        return None
    weights = np.sqrt([a for _, a in cands])  # large outdoor sectors (mostly sky) would win by plain area
    for _ in range(200):
        lines = cands[int(rng.choice(len(cands), p=weights / weights.sum()))][0]
        lo, hi = lines.reshape(-1, 2).min(0), lines.reshape(-1, 2).max(0)
        x, y = (float(v) for v in np.round(rng.uniform(lo, hi)))
        pt = np.array([x]), np.array([y])
        if inside(*pt, lines)[0] and distance_to_segments(*pt, segs).min() > clearance:
            return int(x), int(y)
    return None


# --------------------------------------------------------------------------------------------- recording
def start_game(vzd: ModuleType, doom_map: str, seed: int, scratch: str | os.PathLike) -> Any:
    """A headless game on ``doom_map`` of freedoom2.wad: no monsters, no HUD / weapon / crosshair / messages,
    RGB24 + depth + labels buffers, delta buttons (smooth forward push and turn), pose game variables. The engine
    keeps its files (``_vizdoom.ini``, ``_vizdoom/``; it also reads a ``_vizdoom.cfg`` override from its working
    folder) in ``scratch``, an empty folder, never in the user's working folder."""
    game = vzd.DoomGame()
    game.load_config(os.path.join(vzd.scenarios_path, "freedoom2.cfg"))
    game.set_doom_map(doom_map)
    game.set_window_visible(False)
    game.set_mode(vzd.Mode.PLAYER)
    game.set_screen_resolution(vzd.ScreenResolution.RES_640X480)
    game.set_screen_format(vzd.ScreenFormat.RGB24)
    game.set_depth_buffer_enabled(True)
    game.set_labels_buffer_enabled(True)
    game.set_sectors_info_enabled(True)  # the map's geometry, for random start spots
    for setter in ("set_render_hud", "set_render_minimal_hud", "set_render_weapon", "set_render_crosshair",
                   "set_render_messages", "set_render_screen_flashes", "set_automap_buffer_enabled",
                   "set_audio_buffer_enabled", "set_sound_enabled"):
        getattr(game, setter)(False)
    B, GV = vzd.Button, vzd.GameVariable
    game.set_available_buttons([B.MOVE_FORWARD_BACKWARD_DELTA, B.TURN_LEFT_RIGHT_DELTA])
    game.set_available_game_variables([GV.POSITION_X, GV.POSITION_Y, GV.POSITION_Z, GV.VIEW_HEIGHT, GV.ANGLE,
                                       GV.CAMERA_FOV])
    game.set_episode_timeout(0)
    game.add_game_args("-nomonsters")
    game.set_seed(seed)
    game.set_doom_config_path(os.path.join(scratch, "_vizdoom.ini"))
    here = os.getcwd()
    os.chdir(scratch)  # the engine process starts in, and writes to, its working folder
    try:
        game.init()
    finally:
        os.chdir(here)
    return game


@dataclass
class Episode:
    """One recorded episode: frames in order (see :func:`record_episode`)."""

    images: list[np.ndarray] = field(default_factory=list)  # each [S, S, 3] uint8
    depths: list[np.ndarray] = field(default_factory=list)  # each [S, S] float32 metres, inf = none
    viewmats: list[Tensor] = field(default_factory=list)  # each [4, 4] float64 world-to-camera (OpenCV)
    doom_poses: list[tuple[float, ...]] = field(default_factory=list)  # (x, y, z_eye, angle, view height): units, deg
    sectors: list = field(default_factory=list)  # the map's sectors (vizdoom_bev.Sector), read at the first frame


def _observe(state: Any, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, ...]]:
    """(image [S,S,3], depth [S,S] metres, the agent's view [480,400] metres, Doom pose (x, y, z_eye, angle,
    view height)) of a state. The agent's view is the full-resolution crop's depth with level 0 (nearer than the
    buffer's range, ``inf`` in the data) at 0 m: a wall right in front is an obstacle, not open space."""
    things = {int(lab.value) for lab in state.labels}
    depth = depth_levels_to_metres(state.depth_buffer, state.labels_buffer, things)
    img, d = crop_and_resample(state.screen_buffer, depth, size)
    x, y, z, view_h, angle, _ = (float(v) for v in state.game_variables)
    crop = (slice(None), slice(CROP_X0, CROP_X0 + CROP_W))
    view = np.where(state.depth_buffer[crop] == 0, np.float32(0.0), depth[crop])
    return img, d, view, (x, y, z + view_h, angle, view_h)


class EpisodeEnded(RuntimeError):
    """The game ended the episode before its last frame (an exit line walked over, a death)."""


def _warm_up(game: Any, rng: np.random.Generator, random_spot: bool) -> tuple[ExplorerAgent, tuple[float, ...], float]:
    """A new episode: god mode (no death on damaging floors), the FOV set, the player put on a random spot
    (:func:`random_start`, else the map's start) facing a random heading, then a random warm-up walk
    (:data:`WARMUP_TICS`). Returns the agent, the last pose and the distance walked in the last 24 tics."""
    game.new_episode()
    game.send_game_command("god")
    game.send_game_command("telezoom 0")  # a teleporter would widen the FOV for a few tics
    game.send_game_command(f"fov {FOV_CVAR}")  # eases in over ~10 tics: the warm-up covers it
    spot = random_start(game.get_state().sectors, rng) if random_spot else None
    if spot is not None:
        game.send_game_command(f"warp {spot[0]} {spot[1]}")
    spin = float(rng.uniform(-180.0, 180.0))
    for _ in range(8):  # face a random heading (unrecorded)
        game.make_action([0.0, -spin / 8])
    agent = ExplorerAgent(rng)
    last = _observe(_state(game), 8)[3]
    steps = []
    for _ in range(int(rng.integers(WARMUP_TICS[0], WARMUP_TICS[1] + 1))):
        _, _, full, pose = _observe(_state(game), 8)
        steps.append(_act(game, agent, full, pose, last))
        last = pose
    return agent, last, float(sum(steps[-24:]))


def _begin(game: Any, rng: np.random.Generator) -> tuple[ExplorerAgent, tuple[float, ...]]:
    """Warm up (:func:`_warm_up`) until the agent walks freely (48 map units in its last 24 tics: not stuck on a
    spot it cannot leave) and sees geometry (half of its view has depth, not sky), trying :data:`START_TRIES` random
    spots and then the map's own start; the FOV must have reached :data:`FOV_CVAR`."""
    for attempt in range(START_TRIES + 1):
        agent, last, walked = _warm_up(game, rng, random_spot=attempt < START_TRIES)
        state = _state(game)
        if walked >= 48.0 and _fov_ok(state) and _geometry_share(state) >= 0.5:
            break
    if not _fov_ok(_state(game)):
        raise RuntimeError(f"the engine's field of view is {_state(game).game_variables[5]} degrees after the "
                           f"warm-up, expected {FOV_CVAR}")
    return agent, last


def _geometry_share(state: Any) -> float:
    """Share of the crop's pixels with a depth (not sky, not out of the buffer's range)."""
    levels = state.depth_buffer[:, CROP_X0:CROP_X0 + CROP_W]
    return float(((levels > 0) & (levels < 255)).mean())


def _fov_ok(state: Any) -> bool:
    """Whether the engine's field of view is :data:`FOV_CVAR` (the intrinsics of :func:`output_K`)."""
    return abs(float(state.game_variables[5]) - FOV_CVAR) < 1e-3


def _state(game: Any) -> Any:
    state = game.get_state()
    if state is None or game.is_episode_finished() or game.is_player_dead():
        raise EpisodeEnded("the VizDoom episode ended early (an exit reached)")
    return state


def _act(game: Any, agent: ExplorerAgent, depth: np.ndarray, pose: tuple[float, ...], last: tuple[float, ...]) -> float:
    """One tic of the agent's action; returns the distance moved since ``last`` (map units, from the game)."""
    moved = math.hypot(pose[0] - last[0], pose[1] - last[1])
    forward, turn = agent.act(depth[::4, ::4], pose[4] * METRES_PER_UNIT, moved)
    game.make_action([forward, -turn])  # TURN_LEFT_RIGHT_DELTA > 0 turns right (clockwise)
    return moved


def record_episode(game: Any, frames: int, size: int, rng: np.random.Generator,
                   on_frame: Callable[[], None] | None = None) -> Episode:
    """Play one episode (:func:`_begin`), then record ``frames`` frames, one per tic, each observed before its
    action. Raises :class:`EpisodeEnded` if the game ends the episode first."""
    from latent3d.data.recorders.vizdoom_bev import read_sectors

    agent, last = _begin(game, rng)
    ep, moved = Episode(), []
    for _ in range(frames):
        state = _state(game)
        if not _fov_ok(state):
            raise EpisodeEnded(f"the field of view changed to {state.game_variables[5]} degrees")
        if _geometry_share(state) < 0.05:
            raise EpisodeEnded("the view shows no geometry (sky only: the player left the map)")
        img, depth, full, pose = _observe(state, size)
        if not ep.sectors:
            ep.sectors = read_sectors(state.sectors)
        ep.images.append(img)
        ep.depths.append(depth)
        ep.doom_poses.append(pose)
        ep.viewmats.append(doom_to_viewmat(*pose[:4]))
        moved.append(_act(game, agent, full, pose, last))
        if moved[-1] > JUMP:
            raise EpisodeEnded("the player was teleported")
        if len(moved) >= STUCK_TICS and sum(moved[-STUCK_TICS:]) < STUCK_TICS * 0.5:
            raise EpisodeEnded("the agent is stuck (a pit, a corner)")
        last = pose
        if on_frame is not None:
            on_frame()
    return ep


def _record_retrying(game: Any, frames: int, size: int, rng: np.random.Generator, bar: Any, doom_map: str) -> Episode:
    """:func:`record_episode`, started afresh (the same random stream, drawing on) when the game ends it early."""
    for _ in range(EPISODE_TRIES):
        done = [0]

        def tick() -> None:
            done[0] += 1
            bar.update(1)

        try:
            return record_episode(game, frames, size, rng, on_frame=tick)
        except EpisodeEnded:
            bar.update(-done[0])
    raise UserError(f"--map {doom_map}: {EPISODE_TRIES} tries at an episode of --frames {frames} all ended early (an "
                    "exit or a teleporter on the way); record shorter episodes or choose another --map")


def episode_seed(seed: int, episode: int) -> np.random.Generator:
    """Episode ``episode``'s random stream (start heading, warm-up length, turn noise), independent per episode."""
    return np.random.default_rng(np.random.SeedSequence([seed & (2**63 - 1), episode]))


def write_vizdoom_dataset(
    out: str | os.PathLike,
    episodes: int,
    frames: int,
    size: int,
    doom_map: str = "MAP01",
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Record ``episodes`` episodes and write each to ``out/episode_NNN/`` (a transforms.json folder, atomically, by
    the writer of every episode source, :func:`latent3d.data.formats.transforms_json.write_episode`, with the map's
    BEV around the trajectory, :func:`latent3d.data.recorders.vizdoom_bev.sectors_bev`); returns the folders."""
    from tqdm.auto import tqdm

    from latent3d.data.formats.transforms_json import write_episode
    from latent3d.data.procedural.scene_bev import BEV_HALF, BEV_MPP
    from latent3d.data.recorders.vizdoom_bev import sectors_bev
    from latent3d.data.recorders.vizdoom_config import VizDoomConfig
    from latent3d.render.camera import camera_centers

    VizDoomConfig(episodes=episodes, frames=frames, size=size, map=doom_map)  # one UserError line if invalid
    vzd = require_vizdoom()
    K = output_K(size).float()
    folders = []
    with tqdm(total=episodes * frames, desc="vizdoom", unit="frame", disable=not progress) as bar:
        for e in range(episodes):
            rng = episode_seed(seed, e)
            with tempfile.TemporaryDirectory(prefix="latent3d-vizdoom-") as scratch:
                game = start_game(vzd, doom_map, int(rng.integers(0, 2**31 - 1)), scratch)
                try:
                    ep = _record_retrying(game, frames, size, rng, bar, doom_map)
                finally:
                    game.close()
            centre = camera_centers(torch.stack(ep.viewmats)).mean(0)
            bev = sectors_bev(ep.sectors, (float(centre[0]), float(centre[1])), BEV_HALF, BEV_MPP, METRES_PER_UNIT)
            folders.append(write_episode(
                out, e, torch.from_numpy(np.stack(ep.images)).float() / 255.0, torch.stack(ep.viewmats).float(),
                K.expand(frames, 3, 3), depths=torch.from_numpy(np.stack(ep.depths)), depth_scale=1e-3, bev=bev,
                meta={"source": "vizdoom", "map": doom_map, "wad": "freedoom2.wad", "seed": seed, "episode": e,
                      "metres_per_map_unit": METRES_PER_UNIT, "fov_cvar": FOV_CVAR}))  # fmt: skip
    return folders
