"""3DVADER's evaluation protocols (Ntavelis et al. 2023, arXiv 2307.05445, Table 1 and Table 3) on latent3d's objects.

Evaluates an object generator (stage 2, ``latent3d train object-diffusion``) against the multi-view object set its
autodecoder was trained on; every ground-truth object is rebuilt exactly from ``objects.json`` (category, colour,
seed, variation) and ray-cast at the evaluation cameras.

1. Table 1: FID / KID x10^3 / COV % / MMD x10^3 of "V views x M samples vs V ground-truth views per training object"
   (paper: 10 x 1K). Samples are drawn per training caption in proportion to its frequency; COV / MMD use Chamfer
   distances on P marching-cubes points per sample vs P points back-projected from the depth of 24 ground-truth
   views per training object (paper: 2048 points; default here 512, a GPU job at 2048).
2. Table 3: direct latent sampling (a Gaussian with exactly the sample mean and covariance of the normalised
   training latents) vs Heun with 16 / 32 / 64 steps, FID / KID of the whole set, seconds per sample.
3. Prompt agreement: object / colour / view accuracy of the in-domain classifier on each sample's views.
4. Memorisation: nearest training latent (normalised) and nearest training object in image-feature space.
5. Guidance sweep (``--guidance-list``): Table 1's sampler at other CFG scales, with the std of the normalised
   samples beside the training latents' (over-dispersion from guidance shows here).

Image features: latent3d's own :class:`~latent3d.metrics.classifier.ObjectViewClassifier`, trained here on the
ground-truth renders of the training objects; FID / KID use its pooled trunk features (not Inception), so the
numbers compare only runs with the same classifier settings and seed.

    python benchmarks/object_generation_eval.py --model /tmp/o3/od/model --autodecoder /tmp/o3/ad --data /tmp/o3/data
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from latent3d.data.procedural.object_sets_config import OBJECT_FOV_Y
from latent3d.systems.autodecoder.config import ObjectConfig

ELEVATION, RADIUS, FOV = 20.0, 3.0, OBJECT_FOV_Y  # the turntable of the evaluation (object renders' defaults)
# seconds on one CPU thread of the dev machine, for the estimate printed before the run
RAYCAST_S = 0.042  # per 64^2 view at ss=2
POINT_VIEW_S = 0.009  # per 64^2 depth view (ss=1)
CLF_S = 0.007  # per image per classifier training step
FEAT_S = 0.010  # per image feature pass
CHAMFER_S = 1.7e-8  # per point pair
CELL = 0.025  # thinning of the GT surface points (about one 96^2 pixel's footprint at the camera distance)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="generator folder (OUT/model of train object-diffusion) or a "
                    f"bundled name ({ObjectConfig.model})")  # fmt: skip
    ap.add_argument("--autodecoder", required=True, help="the autodecoder run folder (its latents.safetensors)")
    ap.add_argument("--data", required=True, help="the multi-view object dataset (objects.json)")
    ap.add_argument("--out", default="runs/object_generation_eval", help="writes OUT/eval.json and previews")
    ap.add_argument("--samples", type=int, default=0, help="M generated objects per row (0 = number of training objects)")
    ap.add_argument("--views", type=int, default=10, help="V turntable views per object (paper: 10)")
    ap.add_argument("--points", type=int, default=512, help="P surface points per shape for Chamfer (paper: 2048)")
    ap.add_argument("--steps-list", default="16,32,64", help="Heun steps of the Table 3 rows")
    ap.add_argument("--table1-steps", type=int, default=32, help="Heun steps of the Table 1 row (paper: 32)")
    ap.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's, paper 3)")
    ap.add_argument("--guidance-list", default="", help="extra CFG scales for a guidance sweep at --table1-steps, "
                    "e.g. 1,2,5")
    ap.add_argument("--cov-all", action="store_true", help="COV / MMD for every row, not just Table 1's and the "
                    "reconstructions")  # fmt: skip
    ap.add_argument("--heldout-objects", type=int, default=0, help="GT objects of other seeds: the classifier's "
                    "ceiling and the FID / KID floor (0 = as many as samples)")  # fmt: skip
    ap.add_argument("--clf-steps", type=int, default=400)
    ap.add_argument("--clf-batch", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64, help="latents per sampler call")
    ap.add_argument("--kid-subsets", type=int, default=100)
    ap.add_argument("--kid-subset-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (the ray caster and classifier fit run on CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    a = ap.parse_args(argv)
    a.steps_list = sorted({int(s) for s in a.steps_list.split(",") if s.strip()} | {a.table1_steps})
    a.guidance_list = [float(s) for s in a.guidance_list.split(",") if s.strip()]
    return a


def read_objects(data: Path) -> tuple[list[dict], dict]:
    from latent3d.errors import UserError

    try:
        doc = json.loads((data / "objects.json").read_text())
        return doc["objects"], doc["latent3d"]["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{data}/objects.json: unreadable ({type(e).__name__}); pass the folder written by "
                        "`latent3d data objects`") from None


def color_of(caption: str) -> str:  # "a red chair" -> "red"
    return caption.split()[-2]


def matched_prompts(captions: list[str], m: int) -> list[str]:
    """``m`` prompts, each training caption repeated in proportion to its frequency (largest remainders)."""
    counts = Counter(captions)
    quota = {c: m * n / len(captions) for c, n in counts.items()}
    take = {c: int(q) for c, q in quota.items()}
    for c in sorted(counts, key=lambda c: take[c] - quota[c])[: m - sum(take.values())]:
        take[c] += 1
    return [c for c in counts for _ in range(take[c])]


def surface_cameras(size: int) -> tuple[Tensor, Tensor]:  # 24 views: rings at -60, -15, 25, 65 degrees
    from latent3d.render.camera import orbit_cameras

    el = torch.tensor([-60.0, -15.0, 25.0, 65.0]).repeat_interleave(6)
    az = torch.arange(24) % 6 * 60.0 + torch.arange(24) // 6 * 15.0
    return orbit_cameras(RADIUS, el, az, FOV, size, size)


def surface_points(obj, n: int, g: torch.Generator) -> Tensor:  # -> [n, 3]
    """Back-projected depth of 24 views, thinned to one point per CELL-sided voxel (about uniform by area, not by
    pixel), ``n`` of them drawn."""
    from latent3d.data.procedural.raycast import render_views
    from latent3d.render.camera import pixel_rays

    V, K = surface_cameras(96)
    r = render_views(obj, V, K, 96, 96)
    o, d = pixel_rays(V, K, 96, 96, normalize=False)  # camera z of d = 1: o + depth * d
    p = (o + r.depth[..., None] * d)[r.hit]
    _, cell = torch.unique(torch.floor(p / CELL).long(), dim=0, return_inverse=True)
    first = torch.full((int(cell.max()) + 1,), len(p)).scatter_reduce_(0, cell, torch.arange(len(p)), "amin")
    p = p[first]
    idx = torch.randperm(len(p), generator=g)[:n] if len(p) >= n else torch.randint(len(p), (n,), generator=g)
    return p[idx]


def ground_truth(entries: list[dict], variation: float, V: Tensor, K: Tensor, size: int, ss: int, points: int,
                 g: torch.Generator, desc: str) -> tuple[Tensor, list[str], Tensor | None]:  # fmt: skip
    """Turntable renders [O V, 3, H, W], their captions ("a red chair, side view") and, when ``points``, [O, P, 3]."""
    from tqdm.auto import tqdm

    from latent3d.data.procedural.captions import caption
    from latent3d.data.procedural.objects import make_object
    from latent3d.data.procedural.raycast import render_views
    from latent3d.runtime import num_threads

    imgs, caps, pts = [], [], []
    az = torch.arange(len(V)) * (360.0 / len(V))
    with num_threads(1):  # the ray caster's many small ops: one thread is fastest
        for e in tqdm(entries, desc=desc, unit="obj"):
            obj = make_object(e["category"], e["color"], seed=e["seed"], variation=variation)
            imgs.append(render_views(obj, V, K, size, size, ss=ss).rgb.clamp(0, 1).permute(0, 3, 1, 2))
            caps += [caption(e["category"], e["color"], float(a), ELEVATION) for a in az]
            if points:
                pts.append(surface_points(obj, points, g))
    return torch.cat(imgs), caps, (torch.stack(pts) if points else None)


@torch.no_grad()
def embed(clf, images: Tensor, dev: torch.device, batch: int = 256) -> tuple[Tensor, Tensor]:
    """Pooled trunk features [N, D] and predicted (object, colour, view) [N, 3] of images [N, 3, H, W] in [0, 1]."""
    feats, preds = [], []
    for i in range(0, len(images), batch):
        f = clf.features(images[i:i + batch].to(dev) * 2 - 1).mean(dim=(2, 3))
        feats.append(f.double().cpu())
        preds.append(torch.stack([h(f).argmax(-1) for h in clf.heads], -1).cpu())
    return torch.cat(feats), torch.cat(preds)


@torch.no_grad()
def decode_render(gen, lat: Tensor, V: Tensor, K: Tensor, size: int, points: int, g: torch.Generator,
                  desc: str) -> tuple[Tensor, list[Tensor | None]]:  # fmt: skip
    """G2-decode each latent [S, C, 8, 8, 8], render its V views -> [S V, 3, H, W]; surface points [P, 3] per sample
    (None for an empty grid) when ``points``."""
    from tqdm.auto import tqdm

    from latent3d.render.grid_assets import grid_points
    from latent3d.render.volume import render_grid_views

    dev, box = next(gen.decoder.parameters()).device, float(gen.meta["box"])
    imgs, pts = [], []
    for k in tqdm(range(len(lat)), desc=desc, unit="obj"):
        d, c = gen.decoder.decode(lat[k:k + 1].to(dev))
        rgb, _ = render_grid_views(d, c, V.to(d), K.to(d), size, size, gen.decoder.cfg.box, gen.decoder.cfg.samples)
        imgs.append(rgb.clamp(0, 1).permute(0, 3, 1, 2).cpu())
        if points:
            try:
                pts.append(grid_points(d[0, 0].cpu(), (-box,) * 3, (box,) * 3, points, generator=g))
            except ValueError:  # an empty grid has no surface
                pts.append(None)
    return torch.cat(imgs), pts


def direct_latents(gen, train: Tensor, m: int, g: torch.Generator) -> Tensor:
    """Table 3's "direct latent sampling": ``mu + A^T eps / sqrt(N - 1)``, A the centred [N, D] matrix of the
    normalised training latents, eps ~ N(0, I_N): the Gaussian with exactly their sample covariance; de-normalised."""
    z = gen.normalizer.normalize(train).flatten(1).double()
    mu = z.mean(0)
    eps = torch.randn(m, len(z), generator=g, dtype=torch.float64)
    s = mu + eps @ (z - mu) / math.sqrt(len(z) - 1)
    return gen.normalizer.denormalize(s.float().reshape(m, *train.shape[1:]))


def diffusion_latents(gen, prompts: list[str], steps: int, guidance: float, seed: int, batch: int) -> Tensor:
    from tqdm.auto import tqdm

    from latent3d.systems.autodecoder.generate import sample_latents

    out = []
    with tqdm(total=len(prompts), desc=f"Heun {steps}", unit="obj") as bar:
        for j, i in enumerate(range(0, len(prompts), batch)):  # same noise per chunk for every step count
            out.append(sample_latents(gen, prompts[i:i + batch], steps, guidance, seed + j).cpu())
            bar.update(len(prompts[i:i + batch]))
    return torch.cat(out)


def quantiles(x: Tensor) -> dict:
    x = x.double()
    return {"median": float(x.median()), "p10": float(torch.quantile(x, 0.1))}


def memorisation(q: Tensor, ref: Tensor) -> dict:  # q [S, D], ref [R, D]
    from latent3d.metrics.generation import nearest_distances

    s, t = nearest_distances(q, ref), nearest_distances(ref, ref, exclude_self=True)
    med = float(t.median())
    return {"sample_to_train": quantiles(s), "train_to_train": quantiles(t),
            "frac_closer_than_train_median": float((s < med).double().mean())}  # fmt: skip


def estimate(a, n_train: int, n_calls: int, t_call: float, t_render: float, n_rows: int, n_cov: int) -> float:
    thr = max(1.0, a.threads ** 0.7) if a.device_obj.type == "cpu" else 1e3
    px = (a.size / 64) ** 2
    gt = (n_train + a.heldout_objects) * a.views * RAYCAST_S * px * a.ss**2 / 4 + n_train * 24 * POINT_VIEW_S * 2.25
    clf = a.clf_steps * a.clf_batch * CLF_S * px / max(1.0, a.threads ** 0.7)
    imgs = (n_train + a.heldout_objects + n_rows * a.samples) * a.views * FEAT_S * px / thr
    chamfer = n_cov * a.samples * n_train * a.points**2 * CHAMFER_S / thr
    return gt + clf + imgs + chamfer + n_calls * t_call + n_rows * a.samples * t_render


def main(argv: list[str] | None = None) -> int:
    from latent3d.errors import UserError

    a = parse_args(argv)
    try:
        return run(a)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def load_inputs(a: argparse.Namespace):
    """Threads, device and global seed; the training latents, the generator and the training objects (with their
    colours) -> (latents file, generator, training entries, dataset settings). Refuses mismatched folders."""
    from latent3d.errors import UserError
    from latent3d.runtime import resolve_device
    from latent3d.systems.autodecoder.stage2.generator import load_generator, resolve_model
    from latent3d.systems.autodecoder.stage2.latents import read_latents

    if a.threads:
        torch.set_num_threads(a.threads)
    a.threads = torch.get_num_threads()
    a.device_obj = dev = resolve_device(a.device)
    torch.manual_seed(a.seed)
    entries, settings = read_objects(Path(a.data))
    data = read_latents(a.autodecoder)
    gen = load_generator(resolve_model(a.model)).to(dev)
    if list(data.latents.shape[1:]) != list(gen.meta["latent_shape"]):
        raise UserError(f"--autodecoder {a.autodecoder}: latents {list(data.latents.shape[1:])} but the model "
                        f"samples {gen.meta['latent_shape']}; pass the autodecoder run the model was trained on")
    by_id = {e["id"]: e for e in entries}
    missing = [i for i in data.object_ids if i not in by_id]
    if missing:
        raise UserError(f"--data {a.data}: objects.json lacks {len(missing)} of the autodecoder's objects (e.g. "
                        f"{missing[0]}); pass the dataset the autodecoder was trained on")
    train = [dict(by_id[i], color=color_of(by_id[i]["caption"])) for i in data.object_ids]
    return data, gen, train, settings


def heldout_entries(n: int, seed: int, train: list[dict], cats: tuple[str, ...], colors: tuple[str, ...]) -> list[dict]:
    """``n`` ground-truth objects of seeds no training object has (categories round-robin, colours drawn)."""
    rng = random.Random(f"heldout-{seed}")
    used = {e["seed"] for e in train}
    seeds: list[int] = []
    while len(seeds) < n:
        s = rng.getrandbits(63)
        seeds += [s] if s not in used else []
    return [{"category": cats[k % len(cats)], "color": rng.choice(colors), "seed": s} for k, s in enumerate(seeds)]


def plan_rows(a: argparse.Namespace, gen, data, prompts: list[str], guidance: float, V: Tensor, K: Tensor,
              N: int) -> tuple[list[tuple[str, int | None, float | None]], float]:  # (name, steps, guidance), est s
    """The rows to evaluate and the run's estimated seconds, calibrated on one guided sampler step (3 network
    calls) and one decode + render + points; prints the estimate."""
    from latent3d.systems.autodecoder.generate import sample_latents

    t0 = time.time()
    sample_latents(gen, prompts[: a.batch], 2, guidance, a.seed)
    t_call = (time.time() - t0) / 3
    t0 = time.time()
    decode_render(gen, data.latents[:1], V, K, a.size, a.points, torch.Generator(), "calibrate")
    t_render = time.time() - t0
    chunks = math.ceil(a.samples / a.batch)
    sweep = [w for w in a.guidance_list if w != guidance]
    n_calls = (sum(2 * s - 1 for s in a.steps_list) + len(sweep) * (2 * a.table1_steps - 1)) * chunks
    rows_spec = ([("reconstruction", None, None), ("direct", None, None)]
                 + [(f"heun{s}", s, guidance) for s in a.steps_list]
                 + [(f"heun{a.table1_steps}_cfg{w:g}", a.table1_steps, w) for w in sweep])  # fmt: skip
    n_cov = len(rows_spec) if a.cov_all else 2
    est = estimate(a, N, n_calls, t_call, t_render, len(rows_spec), n_cov)
    print(f"{N} training objects ({len(set(data.captions))} captions), {a.samples} samples per row x {a.views} views "
          f"at {a.size}^2, P={a.points}, device {a.device_obj}, {a.threads} threads; estimated ~{est / 60:.1f} min "
          f"(one guided call on {min(a.batch, a.samples)} latents {t_call:.2f}s, decode+render {t_render:.2f}s)",
          flush=True)  # fmt: skip
    return rows_spec, est


class Reference:
    """The ground truth the rows are scored against: the training objects' turntable renders, their features and
    surface points, and the in-domain classifier fitted on them (its accuracy on held-out objects is the ceiling)."""

    def __init__(self, a: argparse.Namespace, train: list[dict], held: list[dict], variation: float, V: Tensor,
                 K: Tensor, g: torch.Generator, cats: tuple[str, ...], colors: tuple[str, ...]):
        from latent3d.metrics.classifier import train_classifier

        self.a, dev = a, a.device_obj
        gt_img, self.gt_caps, self.gt_pts = ground_truth(train, variation, V, K, a.size, a.ss, a.points, g,
                                                         "GT training objects")
        ho_img, ho_caps, _ = ground_truth(held, variation, V, K, a.size, a.ss, 0, g, "GT held-out objects")
        t0 = time.time()
        clf = train_classifier(gt_img, self.gt_caps, cats, colors, steps=a.clf_steps, batch_size=a.clf_batch,
                               seed=a.seed)
        self.t_clf = time.time() - t0
        self.clf = clf.to(dev)
        self.gt_f, gt_p = embed(self.clf, gt_img, dev)
        ho_f, ho_p = embed(self.clf, ho_img, dev)
        self.kid_g = torch.Generator().manual_seed(a.seed + 1)
        self.gt_fv = self.gt_f.reshape(len(train), -1)  # the V views of an object concatenated
        self.n_gt_img, self.n_ho_img = len(gt_img), len(ho_img)
        self.ceiling = {**self.scores("GT held-out objects", ho_f), **self.agreement(ho_p, ho_caps),
                        "n_objects": len(held)}
        self.train_acc = self.agreement(gt_p, self.gt_caps)

    def agreement(self, pred: Tensor, caps: list[str]) -> dict:
        """Classifier accuracy of object, colour and view against the captions."""
        y = self.clf.labels(caps)
        return {k: float((pred[:, i] == y[:, i]).double().mean()) for i, k in enumerate(("object", "color", "view"))}

    def scores(self, name: str, feats: Tensor) -> dict:
        """FID and KID of image features against the training objects' (Table 1 / Table 3)."""
        from latent3d.metrics.generation import frechet_distance, kernel_inception_distance

        a = self.a
        kid, kid_std = kernel_inception_distance(feats, self.gt_f, a.kid_subsets, a.kid_subset_size, self.kid_g)
        return {"row": name, "fid": frechet_distance(feats, self.gt_f), "kid_x1e3": kid * 1e3,
                "kid_std_x1e3": kid_std * 1e3, "n_images": len(feats)}  # fmt: skip

    def report(self) -> None:
        c, t = self.ceiling, self.train_acc
        print(f"classifier: {self.a.clf_steps} steps x {self.a.clf_batch} on {self.n_gt_img} GT renders in "
              f"{self.t_clf:.0f}s; held-out ({self.n_ho_img} renders of {c['n_objects']} other seeds): object "
              f"{c['object']:.3f} colour {c['color']:.3f} view {c['view']:.3f} (training renders: object "
              f"{t['object']:.3f} colour {t['color']:.3f} view {t['view']:.3f})", flush=True)  # fmt: skip


def row_latents(name: str, steps: int | None, w: float | None, a: argparse.Namespace, gen, data, prompts: list[str],
                g: torch.Generator) -> tuple[Tensor, list[str] | None]:  # latents [S, C, 8, 8, 8], their prompts
    """The latents of a row: the training latents, Table 3's direct sampling, or Heun with ``steps`` at CFG ``w``."""
    if name == "reconstruction":
        return data.latents, data.captions
    if name == "direct":
        return direct_latents(gen, data.latents, a.samples, g), None
    return diffusion_latents(gen, prompts, steps, w, a.seed, a.batch), prompts


def coverage_row(pts: list[Tensor | None], gt_pts: Tensor, dev: torch.device) -> dict:
    """COV % and MMD x10^3 (Chamfer) of the non-empty samples' surface points against the training objects'."""
    from latent3d.metrics.generation import chamfer_matrix, coverage_mmd

    ok = [q for q in pts if q is not None]
    r: dict = {"empty": len(pts) - len(ok)}
    if ok:
        t0 = time.time()
        cm = chamfer_matrix(torch.stack(ok).to(dev), gt_pts.to(dev), 2**26 if dev.type == "cuda" else 2**22)
        cm = coverage_mmd(cm)
        r |= {"cov_pct": cm["cov"] * 100, "mmd_x1e3": cm["mmd"] * 1e3, "chamfer_s": time.time() - t0,
              "n_shapes": len(ok)}  # fmt: skip
    return r


def evaluate_row(name: str, steps: int | None, w: float | None, a: argparse.Namespace, gen, data, prompts: list[str],
                 ref: Reference, V: Tensor, K: Tensor, g: torch.Generator, z_train: Tensor) -> dict:
    """Sample, decode and render one row; its FID / KID, prompt agreement, memorisation and (Table 1's row, the
    reconstructions, or all with --cov-all) COV / MMD. Writes OUT/preview_<name>.png and prints the row."""
    from latent3d.io.image import make_grid, save_image

    t0 = time.time()
    lat, caps = row_latents(name, steps, w, a, gen, data, prompts, g)
    t_sample = time.time() - t0
    want_pts = a.points if (a.cov_all or name == "reconstruction" or name == f"heun{a.table1_steps}") else 0
    t0 = time.time()
    img, pts = decode_render(gen, lat, V, K, a.size, want_pts, g, f"decode+render {name}")
    t_dec = time.time() - t0
    save_image(Path(a.out) / f"preview_{name}.png", make_grid([img[i * a.views] for i in range(min(16, len(lat)))], 8))
    f, p = embed(ref.clf, img, a.device_obj)
    r = {**ref.scores(name, f), "n_samples": len(lat), "sample_s_per_obj": t_sample / len(lat),
         "decode_render_s_per_obj": t_dec / len(lat), "steps": steps, "guidance": w,
         "latent_std": float(gen.normalizer.normalize(lat).double().std()),
         "memorisation_latent": memorisation(gen.normalizer.normalize(lat).flatten(1), z_train),
         "memorisation_image": memorisation(f.reshape(len(lat), -1), ref.gt_fv)}  # fmt: skip
    if caps is not None:
        vcaps = [f"{c}, {v}" for c in caps for v in (s.split(", ")[1] for s in ref.gt_caps[: a.views])]
        r |= ref.agreement(p, vcaps)
    if want_pts:
        r |= coverage_row(pts, ref.gt_pts, a.device_obj)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                      if not k.startswith("memorisation")}), flush=True)  # fmt: skip
    return r


def fmt(r: dict, k: str, d: int = 2) -> str:
    return f"{r[k]:.{d}f}" if isinstance(r.get(k), (int, float)) else "n/a"


def label(r: dict) -> str:
    fixed = {"reconstruction": "autodecoder reconstructions (training latents)",
             "direct": "direct latent sampling (Gaussian fit)"}
    return fixed.get(r["row"]) or f"diffusion, Heun {r['steps']}, CFG {r['guidance']:g}"


def print_table1(a: argparse.Namespace, rows: list[dict], ceiling: dict, ref: str, n_held: int) -> None:
    """Table 1 style (Ntavelis et al. 2023): FID / KID / COV / MMD of Table 1's row and the reconstructions."""
    t1 = next(r for r in rows if r["row"] == f"heun{a.table1_steps}")
    print(f"\n### Table 1 style: {a.views} views x {a.samples} samples vs {a.views} GT views per training object "
          f"(paper: 10 x 1K); COV / MMD: Chamfer on {a.points} points (paper: 2048)\n")
    print("| generator | samples x views | refs x views | FID | KID x10^3 | COV % | MMD x10^3 | empty grids |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in [t1, rows[0]] + [r for r in rows if r is not t1 and r is not rows[0] and "cov_pct" in r]:
        print(f"| {label(r)} | {r['n_samples']} x {a.views} | {ref} | {fmt(r, 'fid')} | {fmt(r, 'kid_x1e3')} | "
              f"{fmt(r, 'cov_pct', 1)} | {fmt(r, 'mmd_x1e3')} | {r.get('empty', 'n/a')} |")
    print(f"| GT renders of other seeds (floor) | {n_held} x {a.views} | {ref} | {fmt(ceiling, 'fid')} | "
          f"{fmt(ceiling, 'kid_x1e3')} | n/a | n/a | n/a |")


def print_table3(a: argparse.Namespace, rows: list[dict], ref: str) -> None:
    """Table 3 style: direct latent sampling vs diffusion, with sampling and decoding times."""
    print(f"\n### Table 3 style: direct latent sampling vs diffusion (whole set, unconditional comparison; refs "
          f"{ref})\n")
    print("| sampler | samples x views | FID | KID x10^3 (std) | latent std | sampling s/obj | decode+render s/obj |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {label(r)} | {r['n_samples']} x {a.views} | {fmt(r, 'fid')} | {fmt(r, 'kid_x1e3')} "
              f"({fmt(r, 'kid_std_x1e3')}) | {r['latent_std']:.3f} | {r['sample_s_per_obj']:.4f} | "
              f"{r['decode_render_s_per_obj']:.3f} |")


def print_agreement(rows: list[dict], ceiling: dict, n_ho_img: int) -> None:
    print("\n### Prompt agreement (classifier accuracy of each view vs its prompt; view = turntable azimuth bin)\n")
    print("| images | n views | object | colour | view |\n|---|---|---|---|---|")
    print(f"| GT held-out objects (ceiling) | {n_ho_img} | {fmt(ceiling, 'object', 3)} | {fmt(ceiling, 'color', 3)} "
          f"| {fmt(ceiling, 'view', 3)} |")
    for r in rows:
        print(f"| {label(r)} | {r['n_images']} | {fmt(r, 'object', 3)} | {fmt(r, 'color', 3)} | {fmt(r, 'view', 3)} |")


def print_memorisation(rows: list[dict]) -> None:
    print("\n### Memorisation: nearest training object (latent: normalised 8^3 volume; image: the V views' features "
          "concatenated)\n")
    print("| samples | space | sample->train median | p10 | train->train median | p10 | samples closer than train "
          "median |\n|---|---|---|---|---|---|---|")
    for r in rows[1:]:
        for space in ("latent", "image"):
            m = r[f"memorisation_{space}"]
            print(f"| {label(r)} | {space} | {m['sample_to_train']['median']:.3f} | {m['sample_to_train']['p10']:.3f} "
                  f"| {m['train_to_train']['median']:.3f} | {m['train_to_train']['p10']:.3f} | "
                  f"{100 * m['frac_closer_than_train_median']:.1f} % |")


def run(a: argparse.Namespace) -> int:
    from latent3d.io.atomic import write_text
    from latent3d.render.camera import turntable_cameras

    t_start = time.time()
    data, gen, train, settings = load_inputs(a)
    dev = a.device_obj
    cats, colors = tuple(settings["categories"]), tuple(settings["colors"])
    variation, a.ss, a.size = float(settings.get("variation", 1.0)), int(settings.get("ss", 2)), int(settings["size"])
    N = len(train)
    a.samples = a.samples or N
    a.heldout_objects = a.heldout_objects or a.samples
    guidance = gen.meta["defaults"]["guidance"] if a.guidance is None else a.guidance
    prompts = matched_prompts(data.captions, a.samples)
    held = heldout_entries(a.heldout_objects, a.seed, train, cats, colors)
    V, K = turntable_cameras(a.views, a.size, RADIUS, FOV, ELEVATION)
    g = torch.Generator().manual_seed(a.seed)
    out = Path(a.out)
    rows_spec, est = plan_rows(a, gen, data, prompts, guidance, V, K, N)
    ref = Reference(a, train, held, variation, V, K, g, cats, colors)
    z_train = gen.normalizer.normalize(data.latents).flatten(1)
    ref.report()
    rows = [evaluate_row(name, steps, w, a, gen, data, prompts, ref, V, K, g, z_train) for name, steps, w in rows_spec]

    refs = f"{N} x {a.views}"
    print_table1(a, rows, ref.ceiling, refs, len(held))
    print_table3(a, rows, refs)
    print_agreement(rows, ref.ceiling, ref.n_ho_img)
    print_memorisation(rows)
    wall, rss = time.time() - t_start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nfeatures: pooled trunk of latent3d's ObjectViewClassifier ({ref.gt_f.shape[1]}-d) trained on the "
          f"{ref.n_gt_img} GT renders (not Inception); KID {a.kid_subsets} subsets of "
          f"{min(a.kid_subset_size, len(ref.gt_f))}")
    print(f"wall {wall:.0f}s (estimate {est:.0f}s), peak RSS {rss:.0f} MB, {a.threads} threads, device {dev}")
    doc = {"settings": {k: v for k, v in vars(a).items() if k != "device_obj"} | {"guidance": guidance,
           "training_objects": N, "feature_dim": ref.gt_f.shape[1]}, "classifier": {"heldout": ref.ceiling,
           "train": ref.train_acc, "fit_s": ref.t_clf}, "rows": rows, "wall_s": wall, "peak_rss_mb": rss,
           "estimate_s": est}  # fmt: skip
    write_text(out / "eval.json", json.dumps(doc, indent=1))
    print(f"wrote {out / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
