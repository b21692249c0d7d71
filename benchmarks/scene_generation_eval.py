"""NF-LDM's generation protocol (Kim et al. 2023, arXiv 2304.09787, Sec. 4, Tables 1 and 4) on latent3d's scenes.

Rendered frames of generated scenes against the frames of the episodes the model was trained on:

1. FID and KID x10^3 of frames rendered along each sample's own trajectory vs dataset frames (the paper uses 5k
   images; n is printed), with references: the dataset's two halves against each other (the floor) and the scene
   auto-encoder's renders of the training episodes' own grids (what a perfect latent model could reach).
2. The hierarchy ablation of Table 4, on the trained models: the scene decoded from g + c + f (full ancestral
   sampling), from c + f with g replaced by the training scenes' mean g, and from c alone (g the mean, f the most
   common training code everywhere): what each latent adds to the decoded scene.
3. Fly-through consistency: the mean absolute colour error of consecutive frames warped through the rendered depth
   (:func:`latent3d.systems.nfldm.generate.consecutive_reprojection`), beside the same figure for the dataset's
   frames with their own depth.
5. Post-optimisation (Sec. 3.4): the first ``--post-opt-n`` samples before and after ``--post-opt`` SDS steps with
   the model's prior, with negative guidance and without the negative term.
4. Editing locality: ``latent3d scene edit``'s inpainting of a central box; the largest change of c and f outside it
   (0 by construction) and the mean change of the decoded grid outside and inside it (the latent decoder's receptive
   field reaches a little past the box).

Image features: :class:`latent3d.metrics.scene_features.SceneFeatureNet`, trained here to tell the dataset's episodes
apart; the numbers compare runs with the same feature settings and seed only.

    python benchmarks/scene_generation_eval.py --model src/latent3d/weights/scene-tiny --data /tmp/nf/sc/data
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch import Tensor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="scene model: bundled name, `latent3d scene pack` folder or run")
    p.add_argument("--data", type=Path, required=True, help="the episodes the model was trained on")
    p.add_argument("--n", type=int, default=64, help="scenes sampled per row")
    p.add_argument("--frames", type=int, default=16, help="frames rendered along each sample's trajectory")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's)")
    p.add_argument("--max-ref", type=int, default=5000, help="dataset frames used as the reference set at most")
    p.add_argument("--feature-steps", type=int, default=600, help="training steps of the feature net")
    p.add_argument("--edits", type=int, default=4, help="samples edited for the locality figures")
    p.add_argument("--prior", default=None, help="post-optimisation prior (default: the scene model's own)")
    p.add_argument("--post-opt", type=int, default=100, help="post-optimisation steps per scene (0: no such rows)")
    p.add_argument("--post-opt-n", type=int, default=16, help="scenes post-optimised (the first of the g + c + f row)")
    p.add_argument("--alpha", type=float, default=2.0, help="post-optimisation guidance")
    p.add_argument("--kid-subsets", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


def dataset_frames(data: Path, max_ref: int, g: torch.Generator):
    """Every episode's frames ``[N, 3, H, W]``, their episode index ``[N]`` and, per episode, frames, depth, poses
    and intrinsics for the consistency reference; subsampled to ``max_ref`` frames for the reference set."""
    from latent3d.systems.nfldm.episodes import episode_folders, read_episode

    imgs, labels, eps = [], [], []
    for k, folder in enumerate(episode_folders(data)):
        ep = read_episode(folder, data)
        imgs.append(ep.images.permute(0, 3, 1, 2))
        labels.append(torch.full((len(ep.images),), k))
        eps.append(ep)
    images, labels = torch.cat(imgs), torch.cat(labels)
    pick = torch.randperm(len(images), generator=g)[:max_ref]
    return images[pick], labels[pick], eps


def dataset_consistency(eps, frames: int) -> float:
    """:func:`consecutive_reprojection` of the dataset's own frames and depth (the first ``frames`` of up to 32
    episodes)."""
    from latent3d.systems.nfldm.generate import consecutive_reprojection

    vals = []
    for ep in eps[:32]:
        d = torch.nan_to_num(ep.depths[:frames], posinf=0.0)
        r = consecutive_reprojection(ep.images[:frames].permute(0, 3, 1, 2), d, ep.viewmats[:frames], ep.Ks[0])
        if r["reprojection_l1"] is not None:
            vals.append(r["reprojection_l1"])
    return sum(vals) / max(len(vals), 1)


def render_latents(model, lat: dict[str, Tensor], frames: int, refine=None) -> tuple[Tensor, list[float]]:
    """Frames ``[n * frames, 3, H, W]`` of every scene of ``lat`` along its trajectory (its grid changed by
    ``refine(k, grid, trajectory)`` first, when given), and each scene's consecutive-frame reprojection error."""
    from latent3d.systems.nfldm.generate import consecutive_reprojection, decode_grid, render_flythrough

    out, errs = [], []
    for k in range(len(lat["g"])):
        grid = decode_grid(model, lat["g"][k:k + 1], lat["c"][k:k + 1], lat["f"][k:k + 1])
        if refine is not None:
            grid = refine(k, grid, lat["trajectory"][k])[0]
        rgb, depth, vm = render_flythrough(model, grid, lat["trajectory"][k], frames)
        out.append(rgb)
        r = consecutive_reprojection(rgb, depth, vm, model.K)
        if r["reprojection_l1"] is not None:
            errs.append(r["reprojection_l1"])
    return torch.cat(out), errs


def training_latents(model) -> dict[str, Tensor]:
    """The latents the denoisers were fitted to are not shipped with a packed model; their statistics are: the mean
    g is the g-standardiser's mean, the most common fine code is read off the f-standardiser's nearest code."""
    d = model.diffusion
    g_mean = d.c.norms["g"].mean.reshape(1, -1)
    f_mean = d.f.norms["f"].mean.reshape(1, -1, 1, 1).expand(1, -1, *d.f.shape[1:])
    return {"g": g_mean, "f": d.latent_ae.vq_f.snap(f_mean)[0]}


def ablation_latents(model, n: int, steps: int | None, seed: int) -> dict[str, dict[str, Tensor]]:
    """The three rows of the hierarchy ablation (module docstring) from one set of ancestral samples."""
    from latent3d.systems.nfldm.scene_diffusion import sample_scene_latents

    g, traj, c, f = sample_scene_latents(model.diffusion, n, steps, torch.Generator().manual_seed(seed))
    ref = training_latents(model)
    g_bar, f_bar = ref["g"].expand(n, -1), ref["f"].expand(n, *ref["f"].shape[1:])
    return {"g + c + f": {"g": g, "trajectory": traj, "c": c, "f": f},
            "c + f (mean g)": {"g": g_bar, "trajectory": traj, "c": c, "f": f},
            "c only (mean g, one f code)": {"g": g_bar, "trajectory": traj, "c": c, "f": f_bar}}  # fmt: skip


def edit_locality(model, lat: dict[str, Tensor], k: int, steps: int | None, seed: int) -> dict:
    """Edit a central box (0.3..0.7 of x and y) of ``k`` samples; the change of latents and of the decoded grid."""
    from latent3d.systems.nfldm.edit import edit_latents
    from latent3d.systems.nfldm.generate import decode_grid

    rows = []
    for i in range(k):
        one = {n: v[i:i + 1] for n, v in lat.items()}
        n_steps = steps or model.diffusion.c.cfg.sample_steps
        new, mc, mf = edit_latents(model.diffusion, one, (0.3, 0.3, 0.7, 0.7), n_steps,
                                   torch.Generator().manual_seed(seed + i))  # fmt: skip
        a, b = decode_grid(model, one["g"], one["c"], one["f"]), decode_grid(model, new["g"], new["c"], new["f"])
        diff = (a - b).abs().mean(0)  # [X, Y, Z]
        rows.append({"c_out": float((one["c"] - new["c"]).abs()[..., ~mc, :].max()),
                     "f_out": float((one["f"] - new["f"]).abs()[..., ~mf].max()),
                     "grid_out": float(diff[~mf].mean()), "grid_in": float(diff[mf].mean())})  # fmt: skip
    return {key: max(r[key] for r in rows) if key.endswith("_out") and key[0] in "cf" else
            sum(r[key] for r in rows) / len(rows) for key in rows[0]}  # fmt: skip


def post_opt_rows(a: argparse.Namespace, model, lat: dict[str, Tensor], net, scores, t0: float) -> dict:
    """Paper Sec. 3.4: the first ``--post-opt-n`` scenes before and after post-optimisation, with and without the
    negative term."""
    from latent3d.metrics.scene_features import embed_frames
    from latent3d.systems.nfldm.post_opt import post_optimiser, scene_conditions
    from latent3d.systems.nfldm.scene_prior import load_scene_prior

    where = a.prior or model.prior
    if not a.post_opt or where is None:
        return {}
    prior = load_scene_prior(where)
    m = min(a.post_opt_n, a.n)
    sub = {k: v[:m] for k, v in lat.items()}
    rows = {}
    for name, neg in ((f"g + c + f, {m} scenes", None), ("+ post-opt, negative guidance", True),
                      ("+ post-opt, no negative term", False)):  # fmt: skip
        refine = None if neg is None else post_optimiser(model, prior, a.post_opt, a.alpha,
                                                         *scene_conditions(prior, neg), {}, a.seed)  # fmt: skip
        imgs, errs = render_latents(model, sub, a.frames, refine)
        rows[name] = scores(embed_frames(net, imgs)) | {"reprojection_l1": sum(errs) / max(len(errs), 1)}
        print(f"{name}: {rows[name]} ({time.time() - t0:.0f} s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from latent3d.metrics.generation import frechet_distance, kernel_inception_distance
    from latent3d.metrics.scene_features import embed_frames, train_scene_features
    from latent3d.systems.nfldm.scene_model import load_scene_model

    t0 = time.time()
    torch.manual_seed(a.seed)
    model = load_scene_model(a.model)
    g = torch.Generator().manual_seed(a.seed)
    ref_imgs, labels, eps = dataset_frames(a.data, a.max_ref, g)
    net = train_scene_features(ref_imgs, labels, steps=a.feature_steps, seed=a.seed)
    ref = embed_frames(net, ref_imgs)
    print(f"reference: {len(ref)} dataset frames of {len(eps)} episodes; features {ref.shape[1]}-d "
          f"({time.time() - t0:.0f} s)", flush=True)
    kid_g = torch.Generator().manual_seed(a.seed)

    def scores(feats: Tensor, against: Tensor = ref) -> dict:
        kid, kid_std = kernel_inception_distance(feats, against, a.kid_subsets, 1000, kid_g)
        return {"fid": frechet_distance(feats, against), "kid_x1e3": kid * 1e3, "kid_std_x1e3": kid_std * 1e3,
                "n": len(feats)}  # fmt: skip

    half = len(ref) // 2
    rows = {"dataset half vs half": scores(ref[:half], ref[half:])}
    rows["dataset half vs half"]["reprojection_l1"] = dataset_consistency(eps, a.frames)
    for name, lat in ablation_latents(model, a.n, a.steps, a.seed).items():
        imgs, errs = render_latents(model, lat, a.frames)
        rows[name] = scores(embed_frames(net, imgs)) | {"reprojection_l1": sum(errs) / max(len(errs), 1)}
        print(f"{name}: {rows[name]} ({time.time() - t0:.0f} s)", flush=True)
        if name == "g + c + f":
            locality = edit_locality(model, lat, min(a.edits, a.n), a.steps, a.seed)
            rows |= post_opt_rows(a, model, lat, net, scores, t0)
    print(f"\n### Generation (paper Tables 1 and 4), {a.n} scenes x {a.frames} frames vs {len(ref)} dataset frames\n")
    print("| row | FID | KID x1e3 | consecutive-frame reprojection L1 | n |\n|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['fid']:.2f} | {r['kid_x1e3']:.2f} ± {r['kid_std_x1e3']:.2f} | "
              f"{r['reprojection_l1']:.4f} | {r['n']} |")
    print(f"\n### Editing locality ({min(a.edits, a.n)} samples, box 0.3..0.7)\n")
    print(f"largest |change| of c outside {locality['c_out']:g}, of f outside {locality['f_out']:g}; mean |change| "
          f"of the decoded grid outside {locality['grid_out']:.4f}, inside {locality['grid_in']:.4f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\ntotal {time.time() - t0:.0f} s, peak RSS {rss:.0f} MB, torch threads {torch.get_num_threads()}")
    if a.json is not None:
        a.json.write_text(json.dumps({"rows": rows, "editing": locality, "model": a.model}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
