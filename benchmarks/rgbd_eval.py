"""LDM3D's three evaluation tables on latent3d's procedural RGBD domain (Stan et al. 2023, arXiv 2305.10853).

    python benchmarks/rgbd_eval.py [--model ldm3d-tiny] [--ae DIR ...] [--n 64] [--steps S] [--guidance G]
                                   [--refs runs/rgbd_eval_refs] [--json FILE]

1. Autoencoder (the paper's 6-channel vs 4-channel KL-AE comparison): RGB PSNR / SSIM and depth AbsRel / RMSE /
   delta1 of reconstructions of held-out renders, for the --model's VAE and every --ae folder (a pipeline folder
   with vae/, or a bare AutoencoderKL folder; 6 or 4 channels). Reconstructed 16-bit disparity is turned into
   metric depth with each render's exact near/far and compared with the exact depth (sky excluded).
2. Depth (paper Table 2, LDM3D vs ZoeDepth-N): the generated depth against latent3d's reference estimator
   (:mod:`latent3d.metrics.depth_net`) run on the generated RGB, MiDaS protocol (least-squares scale + shift in
   inverse depth, metrics in depth space). Row "renders": the exact disparity of held-out renders against the
   reference on them -- what a perfect depth map scores, i.e. the reference's own error.
3. Image-text (paper Table 1, CLIP score): the in-domain CLIP-style score (:mod:`latent3d.metrics.clip_score`,
   100 * cosine) of generated images with their prompts; renders with their own captions are the ceiling,
   renders with shuffled captions the floor; plus top-1 caption retrieval among the distinct prompts.

The generator is prompted with the captions of the held-out renders, so rows compare like with like. The two
reference networks are trained on renders of a different seed on first use and cached under --refs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from latent3d.data.formats.rgbd import disparity_from_depth
from latent3d.data.procedural.rgbd_sets import render_rgbd_set
from latent3d.errors import UserError
from latent3d.io.depth import dequantize_depth, quantize_depth
from latent3d.metrics.clip_score import ClipConfig, clip_scores, load_clip, retrieval_accuracy, save_clip, train_clip
from latent3d.metrics.depth import depth_errors, disparity_errors
from latent3d.metrics.depth_net import DepthNetConfig, load_depth_net, save_depth_net, train_depth_net
from latent3d.metrics.image import psnr, ssim
from latent3d.nets.rgbd_vae import variant_of
from latent3d.systems.ldm3d.pipeline import DEFAULT_RGBD_MODEL, RGBDPipeline, join_rgbd, split_rgbd

TEST_SEED = 7001  # renders for evaluation (the references train on DepthNetConfig/ClipConfig.data_seed = 1001)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def references(folder: Path, size: int, quick: bool = False) -> tuple:
    """The reference depth estimator and CLIP-style model at ``size``: loaded from ``folder`` or trained there
    (``quick``: 96 renders and 60 steps each, for smoke tests only)."""
    small = {"n_train": 96, "steps": 60} if quick else {}
    dcfg, ccfg = DepthNetConfig(size=size, **small), ClipConfig(size=size, **small)
    tag = f"{size}_{dcfg.n_train}_{dcfg.steps}_{ccfg.steps}"
    dpath, cpath = folder / f"depth_net_{tag}", folder / f"clip_{tag}"
    if not (dpath / "config.json").is_file() or not (cpath / "config.json").is_file():
        t0 = time.time()
        log(f"training the reference networks on {dcfg.n_train} renders of {size}x{size} (cached in {folder}) ...")
        data = render_rgbd_set(dcfg.n_train, size, size, seed=dcfg.data_seed)
        log(f"  rendered in {time.time() - t0:.0f}s")
        save_depth_net(dpath, train_depth_net(dcfg, data, log=log), dcfg)
        save_clip(cpath, train_clip(ccfg, data, log=log))
        log(f"  trained in {time.time() - t0:.0f}s")
    return load_depth_net(dpath), load_clip(cpath)


def load_vae(folder: str | Path):
    """An AutoencoderKL from a pipeline folder (its vae/) or a bare VAE folder."""
    from diffusers import AutoencoderKL

    folder = Path(folder)
    sub = "vae" if (folder / "model_index.json").is_file() else None
    if not (folder / (sub or "") / "config.json").is_file():
        raise UserError(f"{folder} holds neither a pipeline with vae/ nor an AutoencoderKL (config.json missing)")
    return AutoencoderKL.from_pretrained(str(folder), subfolder=sub, local_files_only=True).eval()


@torch.no_grad()
def autoencoder_row(vae, test, batch: int = 16) -> dict:
    """Reconstruct the held-out renders through ``vae`` (posterior mean) and score RGB and depth (sky excluded)."""
    variant = variant_of(vae)
    d16 = quantize_depth(test.disparity[:, 0])
    rgbs, deps = [], []
    for i in range(0, len(test), batch):
        x = join_rgbd(test.rgb[i:i + batch], d16[i:i + batch], variant) * 2 - 1
        y = vae.decode(vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean).sample.float().cpu()
        r, d = split_rgbd((y / 2 + 0.5).clamp(0, 1))
        rgbs.append(r)
        deps.append(d)
    rgb, disp = torch.cat(rgbs), dequantize_depth(torch.cat(deps)).double()
    _, near, far = disparity_from_depth(test.depth)
    z = 1.0 / (1.0 / far.double().view(-1, 1, 1) + disp * (1.0 / near - 1.0 / far).double().view(-1, 1, 1))
    e = depth_errors(z, test.depth[:, 0].double())  # invalid (sky) pixels of the exact depth are excluded
    exact = dequantize_depth(d16).double()
    return {"channels": vae.config.in_channels, "psnr": psnr(rgb, test.rgb.permute(0, 2, 3, 1)), "ssim": ssim(rgb, test.rgb.permute(0, 2, 3, 1)),
            **e.as_dict(), "disparity_mae": float((disp - exact).abs().mean())}  # fmt: skip


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_RGBD_MODEL, help="bundled name, LDM3D-layout folder or hub id")
    ap.add_argument("--ae", action="append", default=[], help="extra VAE / pipeline folders for table 1 (repeat)")
    ap.add_argument("--n", type=int, default=64, help="held-out renders and generated samples")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--size", type=int, default=None, help="square size (default: the model's default height)")
    ap.add_argument("--refs", default="runs/rgbd_eval_refs", help="where the reference networks are cached")
    ap.add_argument("--quick-refs", action="store_true", help="tiny reference networks (smoke tests only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    return ap.parse_args()


def autoencoder_table(vaes: dict, test, h: int, w: int) -> dict:
    """Table 1: :func:`autoencoder_row` of each named VAE, printed as markdown."""
    rows = {name: autoencoder_row(vae, test) for name, vae in vaes.items()}
    print(f"\nTable 1 -- autoencoder reconstructions of {len(test)} held-out renders ({h}x{w})")
    print("| VAE | channels | RGB PSNR | RGB SSIM | depth AbsRel | depth RMSE | depth δ1 | disparity MAE |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['channels']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['abs_rel']:.4f} | "
              f"{r['rmse']:.3f} | {r['delta1']:.3f} | {r['disparity_mae']:.4f} |")  # fmt: skip
    return rows


def generate(pipe, captions: list[str], steps: int, guidance: float, h: int, w: int,
             seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:  # rgb [N, 3, H, W], disparity [N, H, W], ms
    """One sample per caption, 16 at a time from one generator; and the milliseconds per sample."""
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    gens = [pipe(captions[i:i + 16], steps, guidance, "", h, w, generator=g, disable_progress=True)
            for i in range(0, len(captions), 16)]  # fmt: skip
    dt = time.time() - t0
    gen_rgb = torch.cat([r.rgb for r in gens]).permute(0, 3, 1, 2)  # [N, 3, H, W]
    gen_disp = dequantize_depth(torch.cat([r.depth for r in gens]))  # [N, H, W]
    return gen_rgb, gen_disp, dt / len(captions) * 1000


def depth_table(depth_ref, gen_rgb: torch.Tensor, gen_disp: torch.Tensor, test) -> dict:
    """Table 2: generated and exact disparity against the reference estimator on the same RGB, printed."""
    far = 0.95 * depth_ref.max_depth  # beyond this the reference says "sky / far": excluded
    ref_gen = depth_ref.predict_depth(gen_rgb)[:, 0]
    ref_real = depth_ref.predict_depth(test.rgb)[:, 0]
    out = {"depth": {
        "generated": disparity_errors(gen_disp, ref_gen, max_depth=far).as_dict(),
        "renders (exact disparity)": disparity_errors(test.disparity[:, 0], ref_real, max_depth=far).as_dict(),
    }}  # fmt: skip
    out["reference_vs_exact"] = depth_errors(ref_real, test.depth[:, 0], max_depth=far, align_mode="median").as_dict()
    print("\nTable 2 -- depth vs the reference estimator on the same RGB (least-squares scale+shift in inverse depth)")
    print("| depth maps | AbsRel | RMSE | δ1 |")
    print("|---|---|---|---|")
    for name, r in out["depth"].items():
        print(f"| {name} | {r['abs_rel']:.4f} | {r['rmse']:.3f} | {r['delta1']:.3f} |")
    r = out["reference_vs_exact"]
    print(f"(reference estimator vs exact depth of the renders, median-scaled: AbsRel {r['abs_rel']:.4f}, "
          f"δ1 {r['delta1']:.3f})")
    return out


def clip_table(clip_ref, gen_rgb: torch.Tensor, test) -> dict:
    """Table 3: CLIP-style scores of generated images and of renders with their own / shuffled captions, printed."""
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(1)).tolist()
    shuffled = [test.captions[i] for i in perm]
    out = {"clip": {
        "generated": float(clip_scores(clip_ref, gen_rgb, test.captions).mean()),
        "renders (ceiling)": float(clip_scores(clip_ref, test.rgb, test.captions).mean()),
        "renders, shuffled captions (floor)": float(clip_scores(clip_ref, test.rgb, shuffled).mean()),
    }}  # fmt: skip
    out["retrieval"] = {"generated": retrieval_accuracy(clip_ref, gen_rgb, test.captions),
                        "renders": retrieval_accuracy(clip_ref, test.rgb, test.captions)}  # fmt: skip
    print(f"\nTable 3 -- in-domain CLIP-style score (100 x cosine), {len(set(test.captions))} distinct prompts")
    print("| images | score | top-1 retrieval |")
    print("|---|---|---|")
    for name, s in out["clip"].items():
        ret = out["retrieval"].get(name.split(" ")[0], None) if "shuffled" not in name else None
        print(f"| {name} | {s:.2f} | {'' if ret is None else f'{ret:.3f}'} |")
    return out


def main() -> None:
    a = parse_args()
    t_start = time.time()
    try:
        pipe = RGBDPipeline.from_pretrained(a.model, a.device)
    except UserError as e:
        if a.model == DEFAULT_RGBD_MODEL and not a.ae:
            print(f"rgbd_eval: skipped ({e})")
            return
        raise
    steps, guidance, h, w = pipe.settings(a.steps, a.guidance, a.size, a.size)
    if h != w:
        h = w = min(h, w)
    test = render_rgbd_set(a.n, h, w, seed=TEST_SEED)
    depth_ref, clip_ref = references(Path(a.refs), h, a.quick_refs)
    out: dict = {"model": a.model, "size": [h, w], "n": a.n, "steps": steps, "guidance": guidance}
    vaes = {f"{a.model} (own VAE)": pipe.prior.vae} if pipe.prior.vae is not None else {}
    vaes.update({str(f): load_vae(f) for f in a.ae})
    out["autoencoder"] = autoencoder_table(vaes, test, h, w)
    gen_rgb, gen_disp, out["ms_per_sample"] = generate(pipe, test.captions, steps, guidance, h, w, a.seed)
    out |= depth_table(depth_ref, gen_rgb, gen_disp, test)
    out |= clip_table(clip_ref, gen_rgb, test)
    print(f"\nsampling: {out['ms_per_sample']:.0f} ms/sample ({steps} DDIM steps, guidance {guidance}, {a.device}); "
          f"total {time.time() - t_start:.0f}s")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(f"rgbd_eval: error: {e}", file=sys.stderr)
        sys.exit(2)
