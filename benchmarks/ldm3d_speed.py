"""Seconds per LDM3D image at Stable Diffusion 1.x size (issue: LDM3D, GPU figure).

Builds random-weight components of SD 1.x's sizes -- UNet2DConditionModel (320, 640, 1280, 1280), cross-attention
768; a 6-channel KL-autoencoder (128, 256, 512, 512), the Intel/ldm3d layout; a 12-layer 768-d CLIP text encoder
over a word-level vocabulary (the real CLIP BPE vocabulary cannot be downloaded here) -- saves them as a
StableDiffusionLDM3DPipeline folder, loads it with latent3d's RGBDPipeline (float16 on CUDA) and times whole
512x512 generations (50 DDIM steps, classifier-free guidance, decode and exact depth unpacking) after one warm-up.

    python benchmarks/ldm3d_speed.py                 # cuda if present (fp16), else cpu (fp32)
    python benchmarks/ldm3d_speed.py --tiny          # small components: checks the script on a CPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def build(folder: Path, tiny: bool) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionLDM3DPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from latent3d.priors.vocab import build_word_tokenizer

    torch.manual_seed(0)
    ch, vae_ch, text = ((32, 64), (32, 64), (64, 2)) if tiny else ((320, 640, 1280, 1280), (128, 256, 512, 512), (768, 12))
    n = len(ch)
    unet = UNet2DConditionModel(
        sample_size=64, block_out_channels=ch, cross_attention_dim=text[0], attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1), norm_num_groups=32 if not tiny else 8,
    )  # fmt: skip
    vae = AutoencoderKL(in_channels=6, out_channels=6, latent_channels=4, block_out_channels=vae_ch,
                        down_block_types=("DownEncoderBlock2D",) * len(vae_ch),
                        up_block_types=("UpDecoderBlock2D",) * len(vae_ch), layers_per_block=2,
                        norm_num_groups=32, scaling_factor=0.18215)  # fmt: skip
    tok = build_word_tokenizer("a blue sphere on wooden floor red snowman".split(), 77)
    enc = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=text[0], intermediate_size=4 * text[0],
                                       num_hidden_layers=text[1], num_attention_heads=12 if not tiny else 4,
                                       max_position_embeddings=77, pad_token_id=tok.pad_token_id,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))  # fmt: skip
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionLDM3DPipeline(vae=vae, text_encoder=enc, tokenizer=tok, unet=unet, scheduler=sched,
                                        safety_checker=None, feature_extractor=None, image_encoder=None,
                                        requires_safety_checker=False)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()

    from latent3d.runtime import resolve_device
    from latent3d.systems.ldm3d.pipeline import RGBDPipeline

    dev = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = RGBDPipeline.from_pretrained(build(Path(tmp) / "ldm3d", a.tiny), device=dev)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        g = torch.Generator().manual_seed(0)
        run = lambda: pipe("a blue sphere on a wooden floor", steps=a.steps, guidance=7.5, height=a.size,  # noqa: E731
                           width=a.size, generator=g, disable_progress=True)
        run()
        sync()
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            out = run()
            sync()
            times.append(time.perf_counter() - t0)
        n_unet = sum(p.numel() for p in pipe.prior.unet.parameters()) / 1e6
        print(f"{'tiny' if a.tiny else 'SD1.x-size'} LDM3D (UNet {n_unet:.0f}M params, {pipe.prior.dtype}) on "
              f"{torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}: {a.size}x{a.size}, {a.steps} "
              f"steps, CFG: {min(times):.2f} s/image (best of {a.reps}; all {', '.join(f'{t:.2f}' for t in times)}); "
              f"depth {out.depth.dtype} max {int(out.depth.to(torch.int32).max())}")


if __name__ == "__main__":
    main()
