"""The GPU table of the README in one run (issue 19, item 8): at most 8 minutes on one H100/H200.

Measures, with random-weight models of the real sizes (nothing is downloaded; the weights do not change the speed):

1. ``dream`` (LucidDreamer) iterations/s, ISM and SDS, through latent3d's own loop
   (:func:`latent3d.systems.lucid_dreamer.dream.dream`) over a :class:`~latent3d.priors.diffusers_prior.DiffusersPrior`
   of Stable Diffusion 2.1-base's sizes (UNet 865M, SD's KL-VAE, OpenCLIP-H text tower), float16 on CUDA,
   4 views of 512^2, with the gsplat backend (when importable) and latent3d's pure-PyTorch rasterizer;
2. the 5000-iteration time to an asset extrapolated from it (next to the anchor: official LucidDreamer ~35 min on
   an A100). ISM's cost depends on its timestep (more DDIM-inversion steps for larger t, and t shrinks after the
   warm-up), so each iteration's time is fitted as ``a + b * (UNet samples)`` and the fit is summed over the UNet
   samples that the official 5000-iteration schedule draws;
3. LDM3D at 512^2, 50 DDIM steps, CFG 7.5, float16: seconds per image with an SD 1.x-size UNet, a 6-channel KL-VAE
   (Intel/ldm3d's layout) and a CLIP ViT-L text encoder, through latent3d's RGBDPipeline (anchor: SD 1.5 at 21.7 it/s
   on an A100 with SDPA);
4. the rasterizer, forward + backward, 10k / 100k / 1M Gaussians, one 512^2 view (the scene of
   ``benchmarks/rasterize.py``), each backend.

    bash benchmarks/gpu_suite.sh                     # CUDA: the full suite (< 8 min), float16
    bash benchmarks/gpu_suite.sh --quick             # tiny models, 64^2, few iterations: checks the script on a CPU
    python benchmarks/gpu_suite.py --only dream,raster --json out.json

Writes a JSON file (``--json``, default ``benchmarks/out/gpu_suite.json``, rewritten after every section) and prints
a Markdown table for the README. ``--quick`` rows are labelled "quick CPU": they are not GPU figures. Without CUDA
the suite always runs ``--quick``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from unittest import mock

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ANCHOR_DREAM = "official LucidDreamer: ~35 min on an A100 (5000 iterations)"
ANCHOR_LDM3D = "SD 1.5 on an A100 (SDPA): 21.7 it/s"
NOMINAL_ITERS = 5000  # LucidDreamer's 3DGS iterations: the schedule (warm-up, densification) the loop is run under
PROMPT = "a red snowman"

# -- component configs (diffusers / transformers config.json values of the real checkpoints) ----------------------
SD_SCHEDULER = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,  # SD 2.1-base / SD 1.x
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False, "skip_prk_steps": True}
SD21_BASE_UNET = {  # stabilityai/stable-diffusion-2-1-base unet/config.json
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280), "attention_head_dim": (5, 10, 20, 20), "cross_attention_dim": 1024,
    "use_linear_projection": True, "norm_num_groups": 32, "act_fn": "silu", "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
}
SD1_UNET = {**SD21_BASE_UNET, "attention_head_dim": 8, "cross_attention_dim": 768,  # Intel/ldm3d (SD 1.4's UNet)
            "use_linear_projection": False}
SD_VAE = {  # SD's 4-channel KL-autoencoder (2.1-base: sample_size 512); LDM3D: in/out 6 channels
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2, "norm_num_groups": 32, "act_fn": "silu", "sample_size": 512, "scaling_factor": 0.18215,
}
OPENCLIP_H_TEXT = {"vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
                   "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu",
                   "projection_dim": 512, "layer_norm_eps": 1e-5}  # SD 2.x text_encoder (OpenCLIP ViT-H/14)
CLIP_L_TEXT = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
               "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
               "projection_dim": 768, "layer_norm_eps": 1e-5}  # SD 1.x / LDM3D text_encoder (CLIP ViT-L/14)
# --quick: the same classes and layouts, tiny widths (64^2 images -> 8^2 latents)
QUICK_UNET = {"block_out_channels": (32, 64), "attention_head_dim": 4, "layers_per_block": 1, "norm_num_groups": 8,
              "sample_size": 8, "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D")}
QUICK_VAE = {"block_out_channels": (16, 16, 32, 32), "layers_per_block": 1, "norm_num_groups": 8, "sample_size": 64}
QUICK_TEXT = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
              "projection_dim": 64}


def settings(quick: bool) -> dict:
    """Sizes and time budgets (seconds) of every section: the full suite fits 8 minutes on one H100."""
    if quick:
        return {"res": 64, "views": 4, "init_points": 2048, "dream_warmup": 2, "dream_iters": 20, "dream_budget": 40.0,
                "ldm3d_steps": 50, "ldm3d_reps": 2, "ldm3d_budget": 30.0, "raster_n": (1_000, 10_000),
                "raster_res": 128, "raster_reps": 3, "raster_budget": 6.0, "total_budget": 400.0}
    return {"res": 512, "views": 4, "init_points": 4096 * 20, "dream_warmup": 3, "dream_iters": 400,
            "dream_budget": 50.0, "ldm3d_steps": 50, "ldm3d_reps": 3, "ldm3d_budget": 45.0,
            "raster_n": (10_000, 100_000, 1_000_000), "raster_res": 512, "raster_reps": 5, "raster_budget": 8.0,
            "total_budget": 420.0}


# -- building the models ------------------------------------------------------------------------------------------
def char_tokenizer(folder: Path):
    """A CLIPTokenizer over single characters, offline. The token count does not matter for speed: prompts are
    padded to 77 tokens, as with the real BPE vocabulary."""
    from latent3d.priors.vocab import char_clip_tokenizer

    return char_clip_tokenizer(folder, "abcdefghijklmnopqrstuvwxyz0123456789,.-", 77)


def build_prior(kind: str, device: torch.device, quick: bool):
    """A DiffusersPrior of random weights: ``"sd21"`` (SD 2.1-base sizes) or ``"ldm3d"`` (SD 1.x UNet, 6-channel
    VAE, CLIP ViT-L). Modules are created on the device (fast init), then cast to float16 on CUDA."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from latent3d.priors.diffusers_prior import DiffusersPrior

    unet_cfg, text_cfg = (SD21_BASE_UNET, OPENCLIP_H_TEXT) if kind == "sd21" else (SD1_UNET, CLIP_L_TEXT)
    vae_cfg = SD_VAE if kind == "sd21" else {**SD_VAE, "in_channels": 6, "out_channels": 6}
    if quick:
        unet_cfg, vae_cfg, text_cfg = {**unet_cfg, **QUICK_UNET}, {**vae_cfg, **QUICK_VAE}, {**text_cfg, **QUICK_TEXT}
    unet_cfg = {**unet_cfg, "cross_attention_dim": text_cfg["hidden_size"]}
    with tempfile.TemporaryDirectory(prefix="gpu_suite_tok_") as tmp:  # the tokenizer reads its files at init
        tok = char_tokenizer(Path(tmp))
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text = CLIPTextModel(CLIPTextConfig(**text_cfg, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    prior = DiffusersPrior(unet, text, tok, dict(SD_SCHEDULER), vae=vae, device=device, dtype=dtype)
    prior.params_m = {name: round(sum(p.numel() for p in m.parameters()) / 1e6, 1)
                      for name, m in (("unet", unet), ("vae", vae), ("text_encoder", text))}  # fmt: skip
    return prior


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gsplat_version() -> str | None:
    try:
        import gsplat
    except ImportError:
        return None
    return getattr(gsplat, "__version__", "?")


def _error(e: Exception) -> dict:
    """A failed measurement as a row (the traceback goes to stderr)."""
    import traceback

    traceback.print_exc()
    return {"status": f"error: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"}


# -- 1-2. dream (ISM / SDS) ---------------------------------------------------------------------------------------
class _Enough(Exception):
    """Raised from the dream callback when the section has measured enough (or spent its budget)."""


@contextmanager
def forced_backend(backend: str):
    """Render every GaussianModel with ``backend``: ``dream`` has no backend option, so the rasterizer that
    ``GaussianModel.render`` calls is wrapped for the duration."""
    import latent3d.render.gaussians as gaussians
    from latent3d.render.rasterize import rasterize

    with mock.patch.object(gaussians, "rasterize", partial(rasterize, backend=backend)):
        yield


@contextmanager
def counting_unet_samples(prior, counter: list[int]):
    """Count the samples the UNet sees (``predict_eps`` batch sizes; CFG calls count 2 per view)."""
    inner = prior.predict_eps

    def predict_eps(x_t, t, text_emb):
        counter[0] += int(x_t.shape[0])
        return inner(x_t, t, text_emb)

    prior.predict_eps = predict_eps
    try:
        yield
    finally:
        del prior.predict_eps


def ism_unet_samples(t_index: int, delta_t: int, ism, views: int, offset: int) -> int:
    """UNet samples of one ISM iteration: the inversion's model calls (schedule length - 2) and the target
    eps(x_s, s) (1) at ``views`` each (twice with reverse CFG), and one batched CFG call at ``2 * views``
    (latent3d.distill.ism.ism_grad). ``bench_dream`` checks this count against the UNet's own."""
    from latent3d.diffusion.ddim import ism_inversion_schedule

    sched = ism_inversion_schedule(t_index + offset, delta_t, ism.xs_delta_t, ism.xs_inv_steps, offset)
    per_call = 2 if ism.denoise_guidance_scale > 1.0 else 1
    return views * per_call * (len(sched) - 1) + 2 * views


def schedule_unet_samples(method: str, cfg, views: int, offset: int, iters: int = NOMINAL_ITERS) -> int:
    """Total UNet samples of an ``iters``-iteration run under the official schedule (ISM's t and delta_t drawn with
    the warm-up annealing, seeded; SDS: one CFG call per iteration)."""
    if method == "sds":
        return iters * 2 * views
    from latent3d.distill import ism_timestep

    g = torch.Generator().manual_seed(0)
    return sum(ism_unet_samples(*ism_timestep(cfg.ism, it, g), cfg.ism, views, offset) for it in range(iters))


def count_check(method: str, cfg, views: int, offset: int, first_iter: int, ts: list[int], samples: list[int]) -> str:
    """Whether :func:`ism_unet_samples` predicts the UNet samples counted in the measured iterations (their t from
    the loop's history, delta_t from the warm-up schedule): the extrapolation rests on it."""
    if method == "sds":
        ok = all(n == 2 * views for n in samples)
    else:
        from latent3d.distill import ism_timestep

        g = torch.Generator().manual_seed(0)  # delta_t does not depend on the draw
        dts = [ism_timestep(cfg.ism, first_iter + j, g)[1] for j in range(len(ts))]
        ok = all(ism_unet_samples(t - offset, dt, cfg.ism, views, offset) == n for t, dt, n in zip(ts, dts, samples))
    return "ok" if ok else "MISMATCH: the UNet-sample model of the extrapolation is out of date"


def fit_iteration_time(times: list[float], samples: list[int]) -> tuple[float, float] | None:
    """Least squares ``time = a + b * samples`` (a: render, VAE, update; b: one UNet sample); None if degenerate."""
    if len(times) < 4 or len(set(samples)) < 2:
        return None
    ms, mt = statistics.fmean(samples), statistics.fmean(times)
    var = sum((s - ms) ** 2 for s in samples)
    b = sum((s - ms) * (t - mt) for s, t in zip(samples, times)) / var
    a = mt - b * ms
    return (a, b) if a >= 0 and b > 0 else None


def bench_dream(prior, method: str, backend: str, st: dict, deadline: float) -> dict:
    """Run latent3d's ``dream`` loop with ``prior`` and time its iterations (warm-up excluded)."""
    from latent3d.systems.lucid_dreamer.config import DreamConfig
    from latent3d.systems.lucid_dreamer.dream import dream

    dev, views = prior.device, st["views"]
    cfg = DreamConfig(prompt=PROMPT, method=method, iters=NOMINAL_ITERS, views=views, resolution=st["res"],
                      init_points=st["init_points"], seed=0)  # fmt: skip
    counter, stamps, samples, gaussians, ts = [0], [], [], [], []
    start = time.perf_counter()
    stop_at = min(deadline, start + st["dream_budget"])

    def callback(it: int, row: dict) -> None:
        sync(dev)
        stamps.append(time.perf_counter())
        samples.append(counter[0])
        gaussians.append(row["num"])
        ts.append(row["t"])
        counter[0] = 0
        measured = len(stamps) - 1 - st["dream_warmup"]
        if measured >= st["dream_iters"] or (stamps[-1] >= stop_at and measured >= 2):
            raise _Enough
        if stamps[-1] >= stop_at + st["dream_budget"]:  # warm-up alone ate twice the budget: give up
            raise _Enough

    with forced_backend(backend), counting_unet_samples(prior, counter):
        try:
            dream(prior, cfg, progress=False, callback=callback)
        except _Enough:
            pass
    w = st["dream_warmup"]
    times = [b - a for a, b in zip(stamps[w:], stamps[w + 1 :])]
    n_samples = samples[w + 1 :]
    if not times:
        return {"status": f"too slow: {len(stamps)} iterations in {time.perf_counter() - start:.0f} s"}
    mean = statistics.fmean(times)
    offset = int(prior.scheduler_config.get("steps_offset", 0))
    total_samples = schedule_unet_samples(method, cfg, views, offset)
    fit = fit_iteration_time(times, n_samples)
    if method == "sds" or fit is None:  # constant UNet work per iteration: the mean is the estimate
        est = mean * NOMINAL_ITERS
    else:
        est = fit[0] * NOMINAL_ITERS + fit[1] * total_samples
    return {"status": "ok", "method": method, "backend": backend, "iters_measured": len(times),
            "warmup_iters": w, "s_per_iter_mean": round(mean, 4),
            "s_per_iter_median": round(statistics.median(times), 4),
            "it_per_s": round(1 / mean, 3), "unet_samples_per_iter_measured": round(statistics.fmean(n_samples), 2),
            "unet_samples_per_iter_schedule": round(total_samples / NOMINAL_ITERS, 2),
            "fit_s_fixed_per_iter": None if fit is None else round(fit[0], 4),
            "fit_s_per_unet_sample": None if fit is None else round(fit[1], 5),
            "unet_count_check": count_check(method, cfg, views, offset, w + 1, ts[w + 1 :], n_samples),
            "gaussians": gaussians[-1], "t_measured": ts[w + 1 :], "est_5000_iters_min": round(est / 60, 1),
            "est_5000_iters_naive_min": round(mean * NOMINAL_ITERS / 60, 1)}  # fmt: skip


def section_dream(device: torch.device, st: dict, quick: bool, deadline: float) -> dict:
    prior = build_prior("sd21", device, quick)
    backends = ["torch"] if device.type != "cuda" else (["gsplat"] if gsplat_version() else []) + ["torch"]
    out = {"prior_params_m": prior.params_m, "dtype": str(prior.dtype).replace("torch.", ""),
           "resolution": st["res"], "views": st["views"], "init_points": st["init_points"], "runs": []}
    if device.type == "cuda" and not gsplat_version():
        out["runs"].append({"backend": "gsplat", "status": "gsplat not importable"})
    for backend in backends:
        for method in ("ism", "sds"):
            if time.perf_counter() >= deadline:
                out["runs"].append({"method": method, "backend": backend, "status": "skipped: total budget spent"})
                continue
            try:  # one failing run (e.g. a backend's API) must not cost the rest of a lent GPU's time
                r = bench_dream(prior, method, backend, st, deadline)
            except Exception as e:  # noqa: BLE001
                r = _error(e)
            out["runs"].append({"method": method, "backend": backend, **r})
            print(f"  dream {method} {backend}: {r.get('it_per_s', '-')} it/s, 5000 iters ~ "
                  f"{r.get('est_5000_iters_min', '-')} min ({r['status']})", flush=True)
    del prior
    return out


# -- 3. LDM3D -----------------------------------------------------------------------------------------------------
def section_ldm3d(device: torch.device, st: dict, quick: bool, deadline: float) -> dict:
    """Seconds per 512^2 RGBD image (50 DDIM steps, CFG 7.5, decode, exact depth unpacking), warm-up excluded."""
    from latent3d.systems.ldm3d.pipeline import RGBDPipeline

    prior = build_prior("ldm3d", device, quick)
    pipe, R, steps = RGBDPipeline(prior), st["res"], st["ldm3d_steps"]
    g = torch.Generator().manual_seed(0)
    prompt = "a blue sphere on a wooden floor"
    stop_at = min(deadline, time.perf_counter() + st["ldm3d_budget"])

    def run():
        sync(device)
        t0 = time.perf_counter()
        out = pipe(prompt, steps=steps, guidance=7.5, height=R, width=R, generator=g, disable_progress=True)
        sync(device)
        return time.perf_counter() - t0, out

    run()  # warm-up (kernels, text-embedding cache)
    times = []
    while len(times) < st["ldm3d_reps"] and (not times or time.perf_counter() + times[-1] < stop_at):
        dt, out = run()
        times.append(dt)
    z = torch.randn(1, prior.latent_channels, R // prior.downsample, R // prior.downsample, generator=g)
    pipe.decode(z.to(device))
    sync(device)
    t0 = time.perf_counter()
    pipe.decode(z.to(device))
    sync(device)
    decode_s = time.perf_counter() - t0
    s_img = statistics.median(times)
    del pipe, prior
    return {"status": "ok", "resolution": R, "steps": steps, "guidance": 7.5, "reps": len(times),
            "s_per_image_median": round(s_img, 3), "s_per_image_all": [round(t, 3) for t in times],
            "decode_s": round(decode_s, 3), "denoise_it_per_s": round(steps / max(s_img - decode_s, 1e-9), 2),
            "depth_dtype": str(out.depth.dtype).replace("torch.", "")}  # fmt: skip


# -- 4. rasterizer ------------------------------------------------------------------------------------------------
def _raster_bench_module():
    spec = importlib.util.spec_from_file_location("latent3d_bench_rasterize", HERE / "rasterize.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_raster_case(rb, n: int, res: int, backend: str, device: torch.device, st: dict, stop_at: float) -> dict:
    params = rb.make_scene(n, device)
    V, K = rb.make_cameras(1, res, device)
    rb.step(params, V, K, res, backend)  # warm-up
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    case_stop = min(stop_at, time.perf_counter() + st["raster_budget"])
    while len(times) < st["raster_reps"] and (not times or time.perf_counter() + times[-1] < case_stop):
        for p in params:
            p.grad = None
        sync(device)
        t0 = time.perf_counter()
        rb.step(params, V, K, res, backend)
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"status": "ok", "gaussians": n, "resolution": res, "cameras": 1, "backend": backend, "reps": len(times),
            "fwd_bwd_ms_median": round(1e3 * statistics.median(times), 2),
            "fwd_bwd_ms_min": round(1e3 * min(times), 2), "peak_mb": None if peak is None else round(peak)}


def section_raster(device: torch.device, st: dict, quick: bool, deadline: float) -> dict:
    rb = _raster_bench_module()
    backends = ["torch"] if device.type != "cuda" else (["gsplat"] if gsplat_version() else []) + ["torch"]
    runs = []
    for backend in backends:
        for n in st["raster_n"]:
            if time.perf_counter() >= deadline:
                runs.append({"gaussians": n, "backend": backend, "status": "skipped: total budget spent"})
                continue
            try:
                r = bench_raster_case(rb, n, st["raster_res"], backend, device, st, deadline)
            except Exception as e:  # noqa: BLE001  (out of memory included): report, keep the other rows
                r = {"gaussians": n, "backend": backend, **_error(e)}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            runs.append(r)
            print(f"  raster {backend} {n}: {r.get('fwd_bwd_ms_median', '-')} ms ({r['status']})", flush=True)
    return {"scene": "benchmarks/rasterize.py make_scene (unit cube seen from 4 m), one camera",
            "gsplat": gsplat_version(), "runs": runs}


# -- output -------------------------------------------------------------------------------------------------------
def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _fmt_min(m: float) -> str:
    return f"{m:.0f} min" if m >= 10 else f"{m:.1f} min"


def markdown_rows(res: dict) -> list[str]:
    """One Markdown row per measurement: | measurement | backend | setting | figure | anchor |."""
    q = "quick CPU: " if res["quick"] else ""
    anchor_dream, anchor_ldm3d = ("—", "—") if res["quick"] else (ANCHOR_DREAM, ANCHOR_LDM3D)  # not comparable
    rows = []
    d = res.get("sections", {}).get("dream")
    if d and "dtype" not in d:
        rows.append(f"| dream | | | {d.get('status')} | {anchor_dream} |")
    elif d:
        size = "SD2.1-base size" if not res["quick"] else "tiny UNet"
        setting = f"{q}{size} {d['dtype']}, {d['views']} views of {d['resolution']}², {d['init_points']} Gaussians"
        for r in d["runs"]:
            name = f"dream {r.get('method', '').upper()}".strip()
            if r["status"] != "ok":
                rows.append(f"| {name} | {r['backend']} | {setting} | {r['status']} | |")
                continue
            fig = (f"{r['it_per_s']:.2f} it/s ({r['s_per_iter_mean']:.3f} s/iter, {r['iters_measured']} iters); "
                   f"5000 iters ≈ {_fmt_min(r['est_5000_iters_min'])}")
            if r.get("unet_count_check") != "ok":
                fig += f" ({r.get('unet_count_check')})"
            rows.append(f"| {name} | {r['backend']} | {setting} | {fig} | {anchor_dream} |")
    ld = res.get("sections", {}).get("ldm3d")
    if ld and ld.get("status") == "ok":
        size = "SD1.x-size UNet + 6-ch VAE" if not res["quick"] else "tiny UNet + 6-ch VAE"
        fig = (f"{ld['s_per_image_median']:.2f} s/image ({ld['denoise_it_per_s']:.1f} it/s denoising, decode "
               f"{ld['decode_s']:.2f} s)")
        rows.append(f"| LDM3D text → RGBD | — | {q}{size}, {ld['resolution']}², {ld['steps']} DDIM steps, CFG "
                    f"{ld['guidance']} | {fig} | {anchor_ldm3d} |")
    elif ld:
        rows.append(f"| LDM3D text → RGBD | — | | {ld.get('status')} | {anchor_ldm3d} |")
    ra = res.get("sections", {}).get("raster")
    if ra and not ra.get("runs") and ra.get("status"):
        rows.append(f"| rasterizer fwd+bwd | | | {ra['status']} | |")
    for r in (ra or {}).get("runs", []):
        n = r["gaussians"]
        label = f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"
        if r["status"] != "ok":
            rows.append(f"| rasterizer fwd+bwd | {r['backend']} | {q}{label} Gaussians | {r['status']} | |")
            continue
        mem = f", peak {r['peak_mb']} MB" if r.get("peak_mb") is not None else ""
        rows.append(f"| rasterizer fwd+bwd | {r['backend']} | {q}{label} Gaussians, 1 view of {r['resolution']}² | "
                    f"{r['fwd_bwd_ms_median']:.1f} ms{mem} | |")
    return rows


def markdown(res: dict) -> str:
    head = (f"{'QUICK CPU RUN (tiny models, not GPU figures)' if res['quick'] else 'GPU'}: {res['device']}, torch "
            f"{res['torch']}, diffusers {res['diffusers']}, gsplat {res['gsplat'] or 'not installed'}; "
            f"`bash benchmarks/gpu_suite.sh{' --quick' if res['quick'] else ''}`, {res['wall_s']:.0f} s wall")
    lines = [head, "", "| measurement | backend | setting | figure | anchor |", "|---|---|---|---|---|"]
    return "\n".join(lines + markdown_rows(res))


# -- main ---------------------------------------------------------------------------------------------------------
SECTIONS = {"dream": section_dream, "ldm3d": section_ldm3d, "raster": section_raster}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="tiny models, 64^2, few iterations (CPU check)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "gpu_suite.json", help="where the JSON goes")
    ap.add_argument("--only", default="dream,ldm3d,raster", help="comma-separated sections: dream, ldm3d, raster")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole suite (default 420; quick 400)")
    a = ap.parse_args(argv)
    bad = [s for s in a.only.split(",") if s not in SECTIONS]
    if bad:
        ap.error(f"--only: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    import diffusers

    from latent3d.runtime import resolve_device

    dev = resolve_device(a.device)
    if dev.type != "cuda" and not a.quick:
        print("gpu_suite: no CUDA device: running the --quick CPU suite (tiny models; not GPU figures)",
              file=sys.stderr)
        a.quick = True
    st = settings(a.quick)
    t_start = time.perf_counter()
    deadline = t_start + (a.budget or st["total_budget"])
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    res = {"quick": a.quick, "device": name, "torch": torch.__version__, "diffusers": diffusers.__version__,
           "gsplat": gsplat_version(), "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in st.items()},
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sections": {}, "wall_s": 0.0}  # fmt: skip
    print(f"gpu_suite on {name} ({'quick' if a.quick else 'full'}), JSON -> {a.json}", flush=True)
    for sec in a.only.split(","):
        t0 = time.perf_counter()
        print(f"[{sec}]", flush=True)
        if time.perf_counter() >= deadline:
            res["sections"][sec] = {"status": "skipped: total budget spent", "runs": []}
        else:
            try:
                res["sections"][sec] = SECTIONS[sec](dev, st, a.quick, deadline)
            except Exception as e:  # noqa: BLE001
                res["sections"][sec] = {**_error(e), "runs": []}
        res["sections"][sec]["section_s"] = round(time.perf_counter() - t0, 1)
        res["wall_s"] = round(time.perf_counter() - t_start, 1)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        write_json_atomic(a.json, res)
    res["markdown"] = markdown(res)
    write_json_atomic(a.json, res)
    print()
    print(res["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
