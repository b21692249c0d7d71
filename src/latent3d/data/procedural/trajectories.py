"""Walking-agent trajectories through latent3d's procedural places, rendered as posed RGB-D episodes: NF-LDM's
training data (Kim et al. 2023, Sec. 4), made the way GSN's VizDoom / Replica episodes are (an agent at eye height
walking forward and turning a few degrees per frame, so that consecutive frames overlap strongly).

The agent (:func:`walk`) keeps a clear margin from every placed object (their xy bounding circles) and from the edge
of the place (a room's walls; the region where an outdoor place's objects stand), wanders with a smoothly varying
turn rate, and steers towards the clearer side when the way ahead is blocked; the camera looks along the heading
with pitch 0. Everything is deterministic from the seed.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from latent3d.data.procedural.scenes import Scene, make_scene
from latent3d.data.procedural.trajectory_config import SceneEpisodesConfig

MARGIN = 0.5  # metres kept free between the eye and any object or wall


@dataclass
class Walk:
    """An agent's path: ``eyes [F, 3]`` camera centres (z = eye height), ``yaws [F]`` headings in radians (0 = +x,
    counter-clockwise seen from above)."""

    eyes: Tensor  # [F, 3]
    yaws: Tensor  # [F]

    def viewmats(self) -> Tensor:  # [F, 4, 4] world-to-camera (OpenCV), pitch 0
        from latent3d.render.camera import look_at

        ahead = torch.stack([self.yaws.cos(), self.yaws.sin(), torch.zeros_like(self.yaws)], -1)
        return look_at(self.eyes, self.eyes + ahead)


def _clearance(scene: Scene, x: float, y: float) -> float:
    """Free distance from (x, y) to the nearest object circle or the edge of the walkable square, minus MARGIN."""
    edge = scene.extent - max(abs(x), abs(y))
    objs = (math.hypot(x - o["position"][0], y - o["position"][1]) - o["radius"] for o in scene.objects)
    return min(edge, *objs) - MARGIN if scene.objects else edge - MARGIN


def _start(scene: Scene, rng: random.Random) -> tuple[float, float]:
    """The scene's eye point when it is free, else the freest of 64 random points of the walkable square."""
    x, y = scene.eye[0], scene.eye[1]
    if _clearance(scene, x, y) > 0.5:
        return x, y
    pts = [(rng.uniform(-scene.extent, scene.extent), rng.uniform(-scene.extent, scene.extent)) for _ in range(64)]
    return max(pts, key=lambda p: _clearance(scene, *p))


def _ray_clearance(scene: Scene, x: float, y: float, heading: float, look: float) -> float:
    return min(_clearance(scene, x + f * look * math.cos(heading), y + f * look * math.sin(heading))
               for f in (0.25, 0.5, 1.0))


def _free_heading(scene: Scene, x: float, y: float, yaw: float, look: float) -> float | None:
    """None when the way ahead is free for ``look`` metres; else the free heading nearest to ``yaw`` (of 32 around),
    or the clearest one when none is free."""
    if _ray_clearance(scene, x, y, yaw, look) > 0:
        return None
    cands = [yaw + math.pi * k / 16 for k in range(-16, 16)]
    clear = [(_ray_clearance(scene, x, y, h, look), h) for h in cands]
    free = [h for c, h in clear if c > 0]
    return min(free, key=lambda h: abs(math.remainder(h - yaw, 2 * math.pi))) if free else max(clear)[1]


def walk(scene: Scene, frames: int, speed: float, max_turn_deg: float, seed: int) -> Walk:
    """A walking trajectory of ``frames`` poses through ``scene`` (module docstring): forward ``speed`` metres per
    frame where the way is free (slower while turning away from a block, so that small rooms leave room to turn),
    the turn rate changing by at most a quarter of ``max_turn_deg`` per frame."""
    rng = random.Random(f"walk-{scene.kind}-{scene.seed}-{seed}")
    x, y = _start(scene, rng)
    yaw, turn = rng.uniform(-math.pi, math.pi), 0.0
    max_turn = math.radians(max_turn_deg)
    look = max(1.0, 1.5 * speed / max_turn)  # how far ahead the agent looks: 1.5 turning radii
    eyes, yaws = [], []
    for _ in range(frames):
        eyes.append((x, y, scene.eye[2]))
        yaws.append(yaw)
        wander = 0.9 * turn + rng.gauss(0.0, 0.35 * max_turn)
        heading = _free_heading(scene, x, y, yaw, look)
        target = wander if heading is None else max(-max_turn, min(max_turn, math.remainder(heading - yaw, 2 * math.pi)))
        turn += max(-max_turn / 4, min(max_turn / 4, target - turn))
        turn = max(-max_turn, min(max_turn, turn))
        yaw = math.remainder(yaw + turn, 2 * math.pi)
        slow = 1.0 if heading is None else 0.35  # turning away from a block: slowly, a tight turn
        for step in (slow * speed, 0.5 * slow * speed, 0.25 * slow * speed):  # slower still where it is narrow
            nx, ny = x + step * math.cos(yaw), y + step * math.sin(yaw)
            if _clearance(scene, nx, ny) > 0:
                x, y = nx, ny
                break
    return Walk(torch.tensor(eyes, dtype=torch.float32), torch.tensor(yaws, dtype=torch.float32))


def episode_scene(cfg: SceneEpisodesConfig, episode: int, seed: int) -> Scene:
    """The scene of episode ``episode``: the kinds take turns, each episode its own seed."""
    return make_scene(cfg.kinds[episode % len(cfg.kinds)], seed=seed * 100003 + episode)


def render_episode(cfg: SceneEpisodesConfig, episode: int, seed: int):
    """The rendered frames of one episode: (:class:`~latent3d.data.procedural.raycast.Render` with rgb, z-depth, mask,
    viewmats and Ks, the scene)."""
    from latent3d.data.procedural.raycast import render_views
    from latent3d.render.camera import intrinsics_from_fov
    from latent3d.runtime import num_threads

    scene = episode_scene(cfg, episode, seed)
    path = walk(scene, cfg.frames, cfg.speed, cfg.max_turn, seed * 100003 + episode)
    Ks = intrinsics_from_fov(torch.full((cfg.frames,), math.radians(cfg.fov)), cfg.size, cfg.size)
    with num_threads(1):  # the ray caster is many small element-wise ops: one thread is fastest
        return render_views(scene, path.viewmats(), Ks, cfg.size, cfg.size, ss=cfg.supersample), scene


def write_scene_episodes(out: str | os.PathLike, cfg: SceneEpisodesConfig, seed: int, progress: bool = True) -> Path:
    """Render every episode and write it as ``OUT/episode_NNN/`` (a transforms.json folder with depth and masks, the
    scene caption on every frame and the scene's BEV map around the trajectory, :func:`.scene_bev.scene_bev`;
    :func:`latent3d.data.formats.transforms_json.write_episode`, atomically)."""
    from tqdm.auto import tqdm

    from latent3d.data.formats.transforms_json import write_episode
    from latent3d.data.procedural.scene_bev import scene_bev
    from latent3d.render.camera import camera_centers

    out = Path(out)
    for e in tqdm(range(cfg.episodes), desc="data scenes", unit="episode", disable=not progress):
        r, scene = render_episode(cfg, e, seed)
        meta = {"source": "latent3d procedural walk", "scene": scene.kind, "scene_seed": scene.seed, "seed": seed,
                "episode": e, "speed_m_per_frame": cfg.speed, "max_turn_deg": cfg.max_turn}  # fmt: skip
        write_episode(out, e, r.rgb, r.viewmats, r.Ks, r.depth, r.mask, [scene.caption] * cfg.frames, meta=meta,
                      bev=scene_bev(scene, tuple(camera_centers(r.viewmats.double()).mean(0)[:2].tolist())))
    return out
