"""3DVADER stage 3 on the two-part hinge box: how well one video's lid motion is recovered from its frames.

For each seed, a `latent3d data articulated`-style video of the box and its lid (random colour, joint motion and
camera path) is fitted by :func:`latent3d.systems.autodecoder.stage3.fit.fit_video` (canonical grid + skinning over
2 parts + autodecoded per-frame poses); printed per video: the true opening range and largest change per frame, the
mean and largest absolute error of the lid's rotation angle from frame 0 against the true hinge angle, the angle
between the fitted and true hinge axes, the best-matching part IoU of the fitted parts against the true part ids
over all frames, and the fit time.

    python benchmarks/articulated_fit.py [--seeds 1,2,3] [--frames 12] [--size 48] [--steps 900] [--cameras given|fixed]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def main() -> None:
    from latent3d.data.procedural.articulated import hinge_box, joint_motion
    from latent3d.systems.autodecoder.config import ArticulatedConfig
    from latent3d.data.procedural.articulated_videos import camera_path, render_video
    from latent3d.systems.autodecoder.stage3.fit import (FitConfig, best_match_iou, fit_video, hinge_axis,
                                                         part_maps, relative_angles_deg)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--cameras", default="given", help="given (the video's true cameras, part 0 fixed) or fixed (one "
                   "camera for all frames, part 0 moving: what `train autodecoder --articulated` does)")
    args = p.parse_args()
    print("| seed | opening range deg | largest change per frame deg | mean abs error deg | max abs error deg | "
          "axis error deg | part IoU | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    fixed = args.cameras == "fixed"
    for seed in (int(s) for s in args.seeds.split(",")):
        g = torch.Generator().manual_seed(seed)
        obj = hinge_box("red")
        angles = joint_motion(obj, args.frames, g)
        V, K = camera_path(args.frames, args.size, 40.0, g)
        frames, masks, parts = render_video(obj, angles, V, K, args.size)
        torch.manual_seed(0)
        t0 = time.time()
        V_true = V
        if fixed:
            V = V[:1].expand(len(V), 4, 4)  # the camera's motion is left to the root part
        fit = fit_video(torch.tensor(frames) / 255.0, torch.tensor(masks), V, K,
                        FitConfig(steps=args.steps, free_root=fixed,
                                  root_smooth_weight=ArticulatedConfig.root_smoothness if fixed else 0.0),
                        progress=False)  # fmt: skip
        wall = time.time() - t0
        true = (angles[:, 0] - angles[0, 0]).abs()
        err = (relative_angles_deg(fit.transforms, 1, root=0 if fixed else None) - true).abs()
        T = fit.transforms
        if fixed:  # the lid's motion in the root's frame
            T = torch.cat([T[:, :1], torch.linalg.inv(T[:, :1]) @ T[:, 1:]], dim=1)
        axis = hinge_axis(T, 1)
        if fixed:  # the fit's canonical frame is frame 0's camera frame seen as the world: map it to the true world
            axis = (torch.linalg.inv(V_true[0]) @ V[0])[:3, :3].double() @ axis
        axis_err = math.degrees(math.acos(min(1.0, abs(float(axis[1])))))
        iou, _ = best_match_iou(part_maps(fit, V, K, args.size, args.size), torch.tensor(parts).long(), 2)
        step = float((angles[1:, 0] - angles[:-1, 0]).abs().max())
        print(f"| {seed} | {float(true.max()):.1f} | {step:.1f} | {float(err.mean()):.1f} | {float(err.max()):.1f} | "
              f"{axis_err:.1f} | {iou:.2f} | {wall:.0f} |", flush=True)
    print(f"({args.frames} frames of {args.size}^2, {args.steps} steps, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
