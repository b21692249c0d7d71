"""LDM3D: text -> RGB + depth (Stan et al. 2023, "LDM3D: Latent Diffusion Model for 3D", arXiv 2305.10853).

LDM3D is Stable Diffusion whose KL-autoencoder takes and returns RGB *and* depth (Sec. 3, Fig. 1): the 16-bit
depth map (DPT-Large's normalised inverse depth, bright = near) is packed into a 3-channel RGB-like image
``(0, d >> 8, d & 255) / 255`` and concatenated with the RGB image, so the VAE sees 6 channels (``Intel/ldm3d``,
``Intel/ldm3d-pano``); ``Intel/ldm3d-4c`` instead appends the depth map as one channel in [0, 1]. Only the first and
last convolutions of the VAE differ from SD's (Sec. 3); the UNet, the CLIP text encoder and the latent space
(4 channels, downsampling 8) are SD's. Sampling is therefore plain DDIM + classifier-free guidance in latent space
(:func:`latent3d.priors.sampling.sample_images`; defaults and schedulers: :class:`RGBDPipeline`), followed by a decode
that splits the VAE output:

* channels 0..2: RGB, ``x / 2 + 0.5`` clamped to [0, 1] (diffusers' ``VaeImageProcessorLDM3D.postprocess``);
* 6 channels: channels 3..5 are the packed depth, unpacked *exactly* by :func:`latent3d.io.depth.unpack_depth_rgb`
  (``round(G * 255) * 256 + round(B * 255)``; diffusers' ``rgblike_to_depthmap`` returns only the low byte under
  NumPy 2, diffusers issue #14206);
* 4 channels: channel 3 is the depth in [0, 1], quantised to 16 bits by rounding (diffusers truncates:
  ``(x * 65535).astype(uint16)``; the two differ by at most one unit).

Precision: on CUDA the models run in float16. The 6-channel packing survives this (each byte needs 8 bits); the
single depth channel of a 4-channel VAE keeps only ~12300 of the 65536 levels in float16 (steps of 32 units near
both ends of the range) -- the reason the paper packs depth into three channels.

:func:`lift_points` turns an RGB image and its relative inverse depth into a coloured point cloud (pinhole model,
or equirectangular rays for panoramas).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from latent3d.errors import UserError
from latent3d.nets.rgbd_vae import Variant, variant_channels

DEFAULT_RGBD_MODEL = "ldm3d-tiny"  # the bundled tiny LDM3D latent3d trains on its procedural RGBD scenes
RGBD_CHANNELS = (6, 4)
DEFAULT_NEAR, DEFAULT_FAR, DEFAULT_FOV_DEG = 1.0, 10.0, 60.0
# diffusers' StableDiffusionLDM3DPipeline.__call__ defaults (num_inference_steps=49, guidance_scale=5.0): what a model
# folder without latent3d's `_latent3d_defaults` (the hub's Intel/ldm3d, -4c, -pano) samples with
LDM3D_STEPS, LDM3D_GUIDANCE = 49, 5.0


# ----------------------------------------------------------------------------------------- channel conventions
def split_rgbd(
    decoded: Tensor,  # [B, C, H, W] decoder output mapped to [0, 1] (x / 2 + 0.5, clamped), C in (6, 4)
) -> tuple[Tensor, Tensor]:  # rgb [B, H, W, 3] float32 in [0, 1], depth [B, H, W] torch.uint16
    """Split an LDM3D decoder output into RGB and 16-bit depth (LDM3D Sec. 3, Fig. 1, "the output is separated
    into an RGB image and a 16-bit grayscale depth map").

    6 channels: exact unpack of the ``(0, d >> 8, d & 255) / 255`` packing; 4 channels: ``round(x * 65535)``.
    Depth is what LDM3D learned from DPT: normalised inverse depth (disparity), bright = near.
    """
    from latent3d.io.depth import quantize_depth, unpack_depth_rgb

    c = decoded.shape[1]
    rgb = decoded[:, :3].float().permute(0, 2, 3, 1).contiguous()
    if c == 6:
        depth = unpack_depth_rgb(decoded[:, 3:6], dim=1)
    elif c == 4:
        depth = quantize_depth(decoded[:, 3])
    else:
        raise ValueError(f"an LDM3D decoder output has 6 or 4 channels, got {c}")
    return rgb, depth


def join_rgbd(
    rgb: Tensor,  # [B, 3, H, W] in [0, 1]
    depth_u16: Tensor,  # [B, H, W] integer 0..65535 (disparity, bright = near)
    variant: Variant,  # "6c" (packed depth, Intel/ldm3d) or "4c" (one depth channel, Intel/ldm3d-4c)
) -> Tensor:  # [B, 6 or 4, H, W] in [0, 1]: the autoencoder input before the [-1, 1] mapping
    """Inverse of :func:`split_rgbd`: the RGBD image LDM3D's KL-encoder takes (Fig. 1). The 4-channel depth is
    ``d / 65535``, as diffusers' ``VaeImageProcessorLDM3D.depth_pil_to_numpy``."""
    from latent3d.io.depth import dequantize_depth, pack_depth_rgb

    rgb = rgb.float()
    if variant_channels(variant) == 6:
        d = pack_depth_rgb(depth_u16, dim=1)
    else:
        d = dequantize_depth(depth_u16)[:, None]
    return torch.cat([rgb, d.to(rgb.device)], dim=1)


# ------------------------------------------------------------------------------------------------ point cloud
def default_intrinsics(height: int, width: int, fov_y_deg: float = DEFAULT_FOV_DEG) -> Tensor:  # [3, 3]
    """Pinhole intrinsics for a generated image: LDM3D has no camera, so a vertical field of view is assumed
    (60 degrees by default, a typical photo), principal point at the centre (:mod:`latent3d.render.camera`)."""
    from latent3d.render.camera import intrinsics_from_fov

    return intrinsics_from_fov(math.radians(fov_y_deg), width, height)


def lift_points(
    rgb: Tensor,  # [H, W, 3] float in [0, 1] (or uint8)
    disparity: Tensor,  # [H, W] float in [0, 1], or integer 0..65535 (16-bit); bright (1) = near
    K: Tensor | None,  # [3, 3] pinhole intrinsics in pixels (OpenCV axes, pixel centres at +0.5); None = equirect
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    stride: int = 1,
) -> tuple[Tensor, Tensor]:  # points [N, 3] float32, colors [N, 3] (rgb's dtype); row-major pixel order
    """Back-project every ``stride``-th pixel into a coloured point cloud.

    LDM3D's depth is *relative* inverse depth: DPT/MiDaS predict disparity only up to an unknown scale and shift
    (MiDaS, Ranftl et al. 2020, TPAMI: their scale- and shift-invariant loss in disparity space), and
    LDM3D normalises it to [0, 1]. Choosing the distances of the nearest (``d = 1``) and farthest (``d = 0``) points
    fixes that affine map: ``1/z = a d + b`` with ``b = 1/far``, ``a = 1/near - 1/far``, i.e.
    ``z = 1 / (d (1/near - 1/far) + 1/far)`` (:func:`latent3d.io.depth.disparity_to_depth`).

    * Pinhole (``K`` given): ``z`` is the camera-space depth and ``x = (u + 0.5 - cx) z / fx``,
      ``y = (v + 0.5 - cy) z / fy`` for the pixel in column u, row v (camera space, OpenCV axes).
    * Equirectangular (``K=None``, LDM3D-pano): ``z`` is the distance along the pixel's ray from the panorama's
      centre, ``point = z * dir`` with :func:`latent3d.render.camera.equirect_directions` (world axes, +z up).
    """
    from latent3d.io.depth import dequantize_depth, disparity_to_depth
    from latent3d.render.camera import equirect_directions

    if disparity.ndim != 2 or tuple(rgb.shape[:2]) != tuple(disparity.shape):
        raise ValueError(f"lift_points expects rgb [H, W, 3] and disparity [H, W], got {tuple(rgb.shape)} and "
                         f"{tuple(disparity.shape)}")  # fmt: skip
    H, W = disparity.shape
    d = disparity if disparity.is_floating_point() else dequantize_depth(disparity)
    z = disparity_to_depth(d.double()[::stride, ::stride], near, far)  # [h, w]
    if K is None:
        dirs = equirect_directions(W, H, torch.float64)[::stride, ::stride]  # [h, w, 3]
        points = dirs * z[..., None]
    else:
        K = torch.as_tensor(K, dtype=torch.float64)
        v, u = torch.meshgrid(torch.arange(0, H, stride, dtype=torch.float64) + 0.5,
                              torch.arange(0, W, stride, dtype=torch.float64) + 0.5, indexing="ij")  # fmt: skip
        points = torch.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], dim=-1)
    return points.reshape(-1, 3).float(), rgb[::stride, ::stride].reshape(-1, 3)


# --------------------------------------------------------------------------------------------------- settings
def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"HxW"`` (or ``"S"`` for a square) -> ``(H, W)``; one clear error line otherwise."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+)\s*)?", str(text))
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise UserError(f"--size {text!r} is not HxW (height x width in pixels, e.g. 512x512 or 512x1024)")
    h = int(m.group(1))
    return h, int(m.group(2)) if m.group(2) is not None else h


@dataclass
class RGBDOutput:
    rgb: Tensor  # [B, H, W, 3] float32 in [0, 1]
    depth: Tensor  # [B, H, W] torch.uint16: normalised inverse depth (bright = near), as LDM3D's depth output
    decoded: Tensor  # [B, C, H, W] float32 in [0, 1]: the decoder output the two were split from


class RGBDPipeline:
    """Text -> RGBD over a diffusers folder in the ``Intel/ldm3d`` layout (LDM3D Sec. 3, Fig. 1, blue frame).

    Text embeddings, classifier-free guidance, eps and DDIM come from the shared
    :class:`~latent3d.priors.diffusers_prior.DiffusersPrior` / :mod:`latent3d.diffusion`. ``safety_checker`` and
    ``feature_extractor`` entries are ignored.

    Defaults: a ``_latent3d_defaults`` entry of ``model_index.json`` (latent3d's bundled and trained models) may set
    ``num_inference_steps`` (or ``steps``), ``guidance_scale``, ``height``/``width`` (or ``size``: int, [H, W] or
    "HxW"). What it leaves unset -- everything, for a hub folder such as ``Intel/ldm3d`` -- takes the defaults of
    diffusers' ``StableDiffusionLDM3DPipeline.__call__``: 49 steps, guidance 5.0, the UNet's native size. Arguments
    given explicitly (``--steps``, ``--guidance``, ``--size``) always win.

    Scheduler: sampling is DDIM (eta 0; Song et al. 2021, eq. 12) on the timestep grid of the folder's own scheduler
    config (``timestep_spacing``, ``steps_offset``), with its ``set_alpha_to_one``, ``clip_sample``, ``prediction_type``
    and ``alphas_cumprod`` (:func:`~latent3d.priors.sampling.sample_images`). For a ``DDIMScheduler`` folder (latent3d's
    own) this equals diffusers' pipeline for the same initial latents, at both sides' defaults too. Intel's hub folders
    ship a ``PNDMScheduler`` with ``skip_prk_steps=True``: PLMS (Liu et al. 2022, "Pseudo Numerical Methods for
    Diffusion Models on Manifolds", Sec. 3), which feeds the DDIM transfer a 4th-order Adams-Bashforth combination of
    the last eps predictions, after a first step that evaluates the UNet twice. latent3d has no PLMS sampler: it takes
    DDIM's first-order steps on *the same* grid (49 steps: timesteps 961, 941, ..., 1, then ``alphas_cumprod[0]``).
    Both integrate the same probability-flow ODE from the same noise, so the images are close to diffusers' but not
    equal to them. Other scheduler classes (Euler, DPM-Solver, ...) are treated alike: their grid, DDIM's steps.
    """

    def __init__(self, prior):
        self.prior = prior
        self.channels = int(prior.image_channels)
        self.variant: Variant = "6c" if self.channels == 6 else "4c"
        if self.channels not in RGBD_CHANNELS:
            raise UserError(
                f"the model's autoencoder returns {self.channels} channels, so it is not an LDM3D RGBD model: "
                "use one whose VAE has 6 (RGB + packed 16-bit depth, Intel/ldm3d) or 4 (RGB + depth, Intel/ldm3d-4c)"
            )

    @classmethod
    def from_pretrained(cls, spec: str | Path | None = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> "RGBDPipeline":
        """Load a bundled name (default ``ldm3d-tiny``), a folder, or a hub id (offline-aware, one-line errors).
        ``dtype`` defaults to float16 on CUDA and float32 elsewhere."""
        from latent3d.priors.loading import load_prior, resolve_prior_path
        from latent3d.weights import bundled_checkpoints

        spec = DEFAULT_RGBD_MODEL if spec in (None, "", "bundled") else spec
        try:
            resolve_prior_path(spec)
        except UserError:
            bundled = ", ".join(c.name for c in bundled_checkpoints()) or "none"
            if str(spec) == DEFAULT_RGBD_MODEL:
                raise UserError(
                    f"the bundled RGBD model {DEFAULT_RGBD_MODEL!r} is not in this install (bundled: {bundled}): pass "
                    "--model with a diffusers folder in the Intel/ldm3d layout or a hub id such as Intel/ldm3d-4c"
                ) from None
            raise UserError(f"model {str(spec)!r} is neither a folder, a bundled checkpoint ({bundled}) nor a hub id "
                            "like Intel/ldm3d") from None  # fmt: skip
        pipe = cls(load_prior(spec, device, dtype, option="--model"))
        try:  # the recommended settings are read at sampling time: a damaged entry fails here, in one line
            pipe.defaults
        except (TypeError, ValueError, AttributeError) as e:
            from latent3d.io.model_folder import first_line

            raise UserError(f"model {str(spec)!r}: model_index.json's _latent3d_defaults are damaged "
                            f"({first_line(e)}); copy the model folder again") from None
        return pipe

    # -- settings ---------------------------------------------------------------------------------------------
    @property
    def is_pano(self) -> bool:
        """Whether the model makes 2:1 equirectangular panoramas (LDM3D-pano): ``_latent3d_defaults["pano"]``."""
        return bool(self.prior.defaults.get("pano", False))

    @property
    def defaults(self) -> dict:
        """Steps, guidance and size this model recommends (``_latent3d_defaults``), else diffusers'
        ``StableDiffusionLDM3DPipeline`` defaults (49 steps, guidance 5.0, the UNet's native size)."""
        d = self.prior.defaults
        size = d.get("size")
        if isinstance(size, str):
            size = parse_size(size)
        elif isinstance(size, int):
            size = (size, size)
        h, w = size if size is not None else (d.get("height", self.prior.resolution), d.get("width", self.prior.resolution))
        steps = d.get("num_inference_steps", d.get("steps", LDM3D_STEPS))
        return {"steps": int(steps), "guidance": float(d.get("guidance_scale", LDM3D_GUIDANCE)), "height": int(h),
                "width": int(w)}  # fmt: skip

    def settings(self, steps: int | None = None, guidance: float | None = None, height: int | None = None,
                 width: int | None = None) -> tuple[int, float, int, int]:
        """Fill unset values from :attr:`defaults`; check the size against the VAE's downsampling."""
        d = self.defaults
        steps = d["steps"] if steps is None else steps
        guidance = d["guidance"] if guidance is None else guidance
        height = d["height"] if height is None else height
        width = d["width"] if width is None else width
        if not 1 <= steps <= self.prior.num_train_timesteps:
            raise UserError(f"--steps must be in 1..{self.prior.num_train_timesteps}, got {steps}")
        ds = self.prior.downsample
        if height % ds or width % ds or height < ds or width < ds:
            raise UserError(f"--size {height}x{width} must be a multiple of {ds} (the autoencoder's downsampling) in "
                            f"both dimensions, e.g. {max(ds, height // ds * ds)}x{max(ds, width // ds * ds)}")  # fmt: skip
        return steps, float(guidance), height, width

    # -- autoencoder ------------------------------------------------------------------------------------------
    def encode(
        self,
        rgb: Tensor,  # [B, 3, H, W] in [0, 1]
        depth_u16: Tensor,  # [B, H, W] integer 0..65535 disparity (bright = near)
    ) -> Tensor:  # [B, 4, H/ds, W/ds] scaled latents (posterior mean)
        """LDM3D's KL-encoder on the concatenated RGBD input (Fig. 1)."""
        return self.prior.encode_images(join_rgbd(rgb, depth_u16, self.variant))

    @torch.no_grad()
    def decode(self, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # [B, 4, h, w] -> rgb, depth, decoded
        """Decode latents and split them (:func:`split_rgbd`): rgb [B, H, W, 3], depth [B, H, W] uint16, decoded."""
        decoded = self.prior.decode_latents(latents).float().cpu()
        return (*split_rgbd(decoded), decoded)

    @torch.no_grad()
    def reconstruct(self, rgb: Tensor, depth_u16: Tensor) -> tuple[Tensor, Tensor]:  # rgb [B,3,H,W], depth [B,H,W]
        """Autoencoder round trip (rgb [B, H, W, 3], depth [B, H, W] uint16): what LDM3D's AE table measures."""
        return self.decode(self.encode(rgb, depth_u16))[:2]

    # -- sampling ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompts: str | Sequence[str],
        steps: int | None = None,
        guidance: float | None = None,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | None = None,
        latents: Tensor | None = None,  # [B, 4, h, w] initial noise (drawn from `generator` on CPU if None)
        disable_progress: bool | None = None,
    ) -> RGBDOutput:
        """DDIM + classifier-free guidance in latent space (LDM3D Fig. 1, blue frame: sampling as in SD), then decode and
        split. Unset settings come from :meth:`settings`. Equals diffusers' ``StableDiffusionLDM3DPipeline`` with a
        ``DDIMScheduler`` for the same latents (other scheduler classes: see the class docstring)."""
        from latent3d.priors.sampling import sample_images

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        steps, guidance, height, width = self.settings(steps, guidance, height, width)
        decoded = sample_images(self.prior, prompts, steps, guidance, negative_prompt, height, width,
                                generator=generator, latents=latents, disable_progress=disable_progress)  # fmt: skip
        decoded = decoded.float().cpu()
        return RGBDOutput(*split_rgbd(decoded), decoded)
