"""NF-LDM's BEV-conditioned synthesis (Kim et al. 2023, Sec. 4.3) measured: do generated scenes follow their map?

For each episode of ``--data`` (best: episodes the model never saw, e.g. ``latent3d data scenes --seed 1``), its
map in its scene box (:func:`latent3d.systems.nfldm.bev.read_bev`) and how well a scene's column opacity around eye
height tells the map's solid cells from its free ones (:func:`~latent3d.systems.nfldm.bev.bev_agreement`: ROC AUC,
0.5 = no relation), for:

- the episode's own grid (encoded by the model's auto-encoders, decoded from its latents): the ceiling;
- ``--per-map`` scenes generated with the episode's map (``latent3d scene --bev``);
- as many generated with another episode's map (the next one): what a model that ignores where things are scores;
- as many generated without a map.

Also the share of trajectory poses on the map's free cells (g picked among 8 draws per scene with a map) and the
seconds per map-conditioned scene.

    python benchmarks/scene_bev_eval.py --model scene-tiny --data /tmp/nf/sc/heldout
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="scene model trained with --bev: bundled name or folder")
    p.add_argument("--data", type=Path, required=True, help="episodes with maps (bev.png)")
    p.add_argument("--maps", type=int, default=16, help="episodes (maps) used at most")
    p.add_argument("--per-map", type=int, default=4, help="scenes generated per map and row")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's)")
    p.add_argument("--bev-scale", type=float, default=1.0, help="guidance scale on the map")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


def agreements(model, lat: dict, bev: torch.Tensor) -> list[float]:
    """The agreement of each scene of ``lat`` (latent auto-encoder units) with the map ``bev [K, X, Y]``."""
    from latent3d.systems.nfldm.bev import bev_agreement, solid_columns
    from latent3d.systems.nfldm.generate import decode_grid

    d, C = model.diffusion, model.scene_ae.cfg.features
    z0, z1 = float(model.box[0][2]), float(model.box[1][2])
    out = []
    for k in range(len(lat["g"])):
        density = decode_grid(model, lat["g"][k:k + 1], lat["c"][k:k + 1], lat["f"][k:k + 1])[C]
        out.append(bev_agreement(solid_columns(density, z0, z1, d.eye_z), bev, d.bev))
    return out


def _mean(v: list[float]) -> float:
    v = [x for x in v if x == x]
    return sum(v) / len(v) if v else float("nan")


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    from latent3d.systems.nfldm.bev import read_bev, trajectory_fit
    from latent3d.systems.nfldm.episodes import episode_folders, read_episodes
    from latent3d.systems.nfldm.scene_diffusion import sample_scene_latents
    from latent3d.systems.nfldm.scene_model import load_scene_model
    from latent3d.systems.nfldm.train_latent_ae import scene_grids

    a = parse_args(argv)
    t0 = time.time()
    model = load_scene_model(a.model)
    d = model.diffusion
    if d.bev is None:
        sys.exit(f"{a.model}: trained without maps")
    folders = episode_folders(a.data)[: a.maps]
    X, Y = d.f.shape[1:]
    maps = [read_bev(f, d.bev, model.scene_ae.cfg, X, Y) for f in folders]
    eps = [e for e in read_episodes(a.data, model.scene_ae.cfg) if e.name in {f.name for f in folders}]
    lae = d.latent_ae
    z = lae.encode(lae.normalise(scene_grids(model.scene_ae, eps, torch.device("cpu"))))
    own = {"g": z.g_mean, "c": z.c, "f": z.f}
    rows: dict[str, list[float]] = {"dataset grid": [agreements(model, {k: v[i:i + 1] for k, v in own.items()},
                                                                maps[i])[0] for i in range(len(maps))]}  # fmt: skip
    gen = torch.Generator().manual_seed(a.seed)
    rows |= {"own map": [], "another episode's map": [], "no map": []}
    fit, t_map = [], 0.0
    for i, bev in enumerate(maps):
        other = maps[(i + 1) % len(maps)]
        for name, cond in (("own map", bev), ("another episode's map", other), ("no map", None)):
            t1 = time.time()
            g, traj, c, f = sample_scene_latents(d, a.per_map, a.steps, gen, None if cond is None else cond[None],
                                                 a.bev_scale)
            if name == "own map":
                t_map += time.time() - t1
                fit += trajectory_fit(traj, bev[None].expand(len(traj), -1, -1, -1), d.bev.solid_mask()).tolist()
            rows[name] += agreements(model, {"g": g, "c": c, "f": f}, bev)
        print(f"map {i + 1}/{len(maps)} ({folders[i].name}): " + ", ".join(
            f"{k} {_mean(v):.3f}" for k, v in rows.items()) + f" ({time.time() - t0:.0f} s)", flush=True)
    rows = {k: [x for x in v if x == x] for k, v in rows.items()}  # maps with no solid or no free cell: no figure
    res = {k: {"mean_auc": sum(v) / len(v), "n": len(v)} for k, v in rows.items()}
    res["trajectory_on_free_cells"] = sum(fit) / len(fit)
    res["seconds_per_scene_with_map"] = t_map / (len(maps) * a.per_map)
    print(f"\n### BEV-conditioned synthesis: {a.model}, {len(maps)} maps of {a.data}\n")
    print("| scenes | ROC AUC of column opacity for the map's solid cells | n |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {res[k]['mean_auc']:.3f} | {res[k]['n']} |")
    print(f"\ntrajectory poses on the map's free cells {res['trajectory_on_free_cells']:.3f}; "
          f"{res['seconds_per_scene_with_map']:.2f} s per scene sampled with a map; total {time.time() - t0:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
