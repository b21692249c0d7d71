"""The object prior's model card: the command that trains it, its data, network, objective, wall time and loss."""

from __future__ import annotations

from pathlib import Path

from latent3d.priors.object_prior.config import ObjectPriorConfig


def model_card(cfg: ObjectPriorConfig, n_images: int, render_s: float, train_s: float, final_loss: float,
          n_params: int, where: str, out_dir: Path) -> str:
    """The MODEL_CARD.md of an exported prior: the ``latent3d train prior`` command that reproduces it, its data,
    network, objective (DDPM eps or v target, Ho et al. 2020 eq. 14 / Salimans & Ho 2022 Sec. 4), wall time and
    final loss."""
    init = f" --init {cfg.init}" if cfg.init else ""
    command = (f"latent3d train prior --out {out_dir}{init} --steps {cfg.steps} --batch-size {cfg.batch_size} "
               f"--lr {cfg.lr:g} --warmup-steps {cfg.warmup_steps} --prediction-type {cfg.prediction_type} "
               f"--ema-decay {cfg.ema_decay:g} --views {cfg.views} --seed {cfg.seed}")
    objective = {"epsilon": "eps-prediction MSE (DDPM)",
                 "v_prediction": "v-prediction MSE (v = sqrt(abar) eps - sqrt(1 - abar) x0)"}[cfg.prediction_type]
    return f"""# object-prior

A text-to-image diffusion prior over latent3d's procedural objects, in pixel space at {cfg.resolution}x{cfg.resolution}.
Loaded like any diffusers Stable-Diffusion-layout folder (`latent3d sample`, `--prior object-prior`).

- Reproduce: `{command}`, then copy `{out_dir}/model` to `src/latent3d/weights/object-prior`.
- Data: {n_images} renders by latent3d's ray caster: {len(cfg.objects)} objects ({", ".join(cfg.objects)}) x
  {len(cfg.colors)} colours x {cfg.views} views (azimuth stratified, elevation U{list(cfg.elevation_range_deg)} deg,
  radius {cfg.radius}, fov {cfg.fov_y} rad, white background, {cfg.supersample}x supersampled). Captions:
  "a red snowman, side view" (front |az| <= 45, back |az| >= 135, overhead elevation > 60, else side).
- Model: UNet2DConditionModel {list(cfg.block_out_channels)} (text cross-attention in the lowest {cfg.attn_levels} level(s) and
  the mid block) + {cfg.text_layers}-layer CLIPTextModel ({cfg.text_dim}-d) over a word-level vocabulary; {n_params / 1e6:.2f}M parameters, stored float16.
- Objective: {objective}, {cfg.beta_schedule} schedule, T=1000, caption dropout {cfg.cond_drop}.
- Optimisation: AdamW lr {cfg.lr:g} (warm-up {cfg.warmup_steps}), batch {cfg.batch_size}, {cfg.steps} steps, EMA
  {cfg.ema_decay:g} (the exported weights are the EMA){f"; started from {cfg.init}" if cfg.init else ""}.
- Wall time on {where}: rendering the data {render_s:.0f} s, training {train_s / 60:.1f} min; final
  training loss (mean of the last 10 steps) {final_loss:.4f}.
- Knows only its vocabulary: other words still run, with one warning line.

## Evaluation

Run `python benchmarks/prior_eval.py` (object/colour/view classifier trained on renders; accuracy of samples vs of
renders).
"""
