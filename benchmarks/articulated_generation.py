"""3DVADER stage 3's evaluation (arXiv 2307.05445, Sec. 4; issue: "generation FID/KID on rendered frames"): an
articulated generator (``train autodecoder --articulated`` -> ``train object-diffusion``) against the videos its
autodecoder was trained on.

1. FID / KID x10^3 of rendered frames vs the data's frames: every training video's caption sampled ``--samples``
   times, each sample moved by that video's tracked motion and seen by the videos' fixed camera, so that generated
   and real frames share camera and motion and differ only in the objects. Beside it, the decoder's
   reconstructions (each video's own latent: the floor of what the generator can reach) and direct Gaussian latent
   sampling (the normalised training latents' mean and covariance: what diffusion must beat).
2. The pose network read across videos: for each video, a pose network trained on the other videos' tracked poses
   (``--posenet-steps``) predicts its motion, scored as the fits are (each joint's angle error against the truth),
   beside the fit's own tracked error.

Image features: :class:`~latent3d.metrics.scene_features.SceneFeatureNet` trained to tell the videos apart (instance
discrimination) on the data's frames; FID / KID use its pooled trunk (not Inception), so the numbers compare only runs
with the same settings and seed.

    python benchmarks/articulated_generation.py --data /work/bundle/data --run /work/bundle/ad \\
        --model /work/bundle/od/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor

from latent3d.systems.autodecoder.config import ArticulatedConfig


def render(decoder, latents: Tensor, motions: Tensor, size: int, box: float, samples: int) -> Tensor:
    """Frames ``[sum F, 3, S, S]`` of every latent ``[M, C, 8, 8, 8]`` moved by its motion ``[M, F, P, 4, 4]`` (the
    root's motion kept: the camera's drift, as the videos show it), seen by the fits' camera."""
    from latent3d.systems.autodecoder.stage3.animate import animation_frames

    cam = ArticulatedConfig()
    out = []
    for z, motion in zip(latents, motions):
        with torch.no_grad():
            density, rgb, skin = decoder.decode_skinned(z[None])
        out.append(animation_frames(density[0], rgb[0], skin[0], motion, size, cam.camera_radius,
                                    cam.camera_elevation, cam.fov_y, box, samples))  # fmt: skip
    return torch.cat(out).permute(0, 3, 1, 2)


def gaussian_latents(z: Tensor, n: int, seed: int) -> Tensor:  # [N, C, 8, 8, 8] -> [n, C, 8, 8, 8]
    """Draws from the Gaussian with the latents' per-voxel mean and a covariance of rank N - 1 (their own span)."""
    g = torch.Generator().manual_seed(seed)
    flat = z.reshape(len(z), -1).double()
    mu = flat.mean(0)
    coef = torch.randn(n, len(z), generator=g, dtype=torch.float64) / max(1, len(z) - 1) ** 0.5
    return (mu + coef @ (flat - mu)).float().reshape(n, *z.shape[1:])


def fid_kid(net, real: Tensor, fake: Tensor) -> tuple[float, float]:
    from latent3d.metrics.generation import frechet_distance, kernel_inception_distance
    from latent3d.metrics.scene_features import embed_frames

    a, b = embed_frames(net, real), embed_frames(net, fake)
    kid = kernel_inception_distance(a, b)
    return frechet_distance(a, b), 1e3 * kid[0]


def generation(args, videos, motions: Tensor) -> dict:
    """Part 1 of the module docstring."""
    from latent3d.metrics.scene_features import train_scene_features
    from latent3d.systems.autodecoder.generate import sample_latents
    from latent3d.systems.autodecoder.stage1.run import load_autodecoder
    from latent3d.systems.autodecoder.stage2.generator import load_generator
    from latent3d.systems.autodecoder.stage2.latents import read_latents

    real = torch.cat([torch.from_numpy(v.frames).float().permute(0, 3, 1, 2) / 255 for v in videos])
    labels = torch.cat([torch.full((len(v.frames),), k) for k, v in enumerate(videos)])
    net = train_scene_features(real, labels, steps=args.feature_steps, seed=args.seed)
    decoder, meta = load_autodecoder(args.run)
    lat = read_latents(args.run)
    gen = load_generator(args.model)
    box, samples, size = float(meta["box"]), decoder.cfg.samples, real.shape[-1]
    rows = {"reconstructions": render(decoder, lat.latents, motions, size, box, samples)}
    idx = [k for k in range(len(videos)) for _ in range(args.samples)]
    z = torch.cat([sample_latents(gen, [lat.captions[k]], args.steps, args.guidance, args.seed + 1000 * r + k)
                   for r in range(args.samples) for k in range(len(videos))])  # fmt: skip
    order = [k for _ in range(args.samples) for k in range(len(videos))]
    rows["diffusion"] = render(gen.decoder, z, motions[order], size, box, samples)
    zn = gen.normalizer.normalize(lat.latents)
    zg = gen.normalizer.denormalize(gaussian_latents(zn, len(idx), args.seed))
    rows["gaussian latents"] = render(gen.decoder, zg, motions[order], size, box, samples)
    out = {}
    for name, frames in rows.items():
        fid, kid = fid_kid(net, real, frames)
        out[name] = {"fid": round(fid, 3), "kid_x1e3": round(kid, 2), "frames": len(frames)}
        print(f"{name:>18}: FID {fid:8.3f}  KID x1e3 {kid:8.2f}  ({len(frames)} frames vs {len(real)})")
    return out


def posenet_transfer(args, videos, motions: Tensor) -> dict:
    """Part 2 of the module docstring."""
    from latent3d.data.procedural.articulated_videos import read_truth
    from latent3d.systems.autodecoder.stage3.posenet import pose_input, predict_motion, train_pose_net
    from latent3d.systems.autodecoder.stage3.train import joint_errors

    report = json.loads((Path(args.run) / "eval.json").read_text())["videos"]
    inputs = [pose_input(torch.from_numpy(v.frames).float() / 255, torch.from_numpy(v.masks)) for v in videos]
    out = {}
    for k, v in enumerate(videos):
        match = report[v.folder.name].get("part_match")
        if match is None:
            continue
        others = [i for i in range(len(videos)) if i != k]
        net, _ = train_pose_net([inputs[i] for i in others], [motions[i, :len(inputs[i])] for i in others],
                                motions.shape[2], args.posenet_steps, args.seed, progress=False)  # fmt: skip
        pred = predict_motion(net, torch.from_numpy(v.frames).float() / 255, torch.from_numpy(v.masks))
        truth = read_truth(v.folder)
        got = joint_errors(pred, truth, match)
        fit = joint_errors(motions[k, :len(pred)], truth, match)
        out[v.folder.name] = {j: {"pose_net_mean_deg": got[j]["mean_error_deg"], "fit_mean_deg": fit[j]["mean_error_deg"]}
                              for j in got}  # fmt: skip
        print(f"{v.folder.name}: " + ", ".join(f"{j} pose net {e['pose_net_mean_deg']:.1f} deg, fit {e['fit_mean_deg']:.1f}"
                                               for j, e in out[v.folder.name].items()))  # fmt: skip
    errs = [e for v in out.values() for e in v.values()]
    if errs:
        print(f"mean: pose net (unseen video) {sum(e['pose_net_mean_deg'] for e in errs) / len(errs):.2f} deg, "
              f"fits {sum(e['fit_mean_deg'] for e in errs) / len(errs):.2f} deg")
    return out


def main() -> None:
    from latent3d.data.formats.video_frames import list_video_folders, read_video_folder
    from latent3d.systems.autodecoder.stage3.motion import read_motions

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True, help="the `train autodecoder --articulated` run")
    p.add_argument("--model", required=True, help="the generator trained on it (OUT/model)")
    p.add_argument("--samples", type=int, default=2, help="samples per training caption")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--feature-steps", type=int, default=600)
    p.add_argument("--posenet-steps", type=int, default=1500)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: generation, posenet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    videos = [read_video_folder(f, root=args.data) for f in list_video_folders(args.data)]
    meta = json.loads((Path(args.run) / "model" / "config.json").read_text())
    motions = read_motions(args.run, meta["parts"])
    result = {}
    if "generation" not in args.skip:
        result["generation"] = generation(args, videos, motions)
    if "posenet" not in args.skip:
        result["posenet"] = posenet_transfer(args, videos, motions)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
