"""A :class:`~latent3d.priors.base.DiffusionPrior` over diffusers/transformers components.

Loads any Stable-Diffusion-layout folder (``model_index.json`` + ``unet/``, optional ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``), from the hub or a local path; each component's class is the one
``model_index.json`` names (diffusers or transformers only). Without ``vae`` the prior works in pixel space
(``downsample = 1``, images scaled to [-1, 1]) -- the layout of latent3d's bundled priors.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from latent3d.diffusion.guidance import cfg_batched
from latent3d.diffusion.schedules import alphas_cumprod as make_alphas_cumprod
from latent3d.diffusion.schedules import expand_like, to_eps_x0
from latent3d.errors import UserError

_ALLOWED_LIBS = {"diffusers", "transformers"}


def _read_json(root: str | Path, filename: str, local_only: bool) -> dict:
    from latent3d.io.model_folder import read_config

    fix = f"the folder {root} is damaged: copy or download it again"
    path = Path(root) / filename
    if path.is_file():
        return read_config(path, fix)
    if Path(root).is_dir():
        raise UserError(f"{root} is not a diffusers pipeline folder: {filename} is missing")
    from huggingface_hub import hf_hub_download

    return read_config(hf_hub_download(str(root), filename, local_files_only=local_only), fix)


def _load_component(root: str | Path, name: str, spec: list, local_only: bool):
    if len(spec) != 2 or not all(isinstance(v, str) for v in spec):
        raise UserError(f"{Path(root) / 'model_index.json'}: {name!r} must be [library, class], got {spec}; the "
                        f"folder {root} is damaged: copy or download it again")
    lib, cls = spec
    if lib not in _ALLOWED_LIBS:
        raise UserError(f"component {name!r} of {root} needs library {lib!r}; latent3d loads diffusers/transformers only")
    klass = getattr(importlib.import_module(lib), cls)
    if name == "tokenizer":
        return klass.from_pretrained(str(root), subfolder=name, local_files_only=local_only)
    from latent3d.io.model_folder import from_pretrained

    # weights from safetensors only (a .bin file is a pickle, which latent3d never loads), and all of them
    return from_pretrained(klass, root, subfolder=name, local_files_only=local_only)


def schedule_from_config(sc: dict) -> Tensor:  # [T] float64
    """alphas_cumprod of a diffusers scheduler config (``beta_schedule``, ``beta_start``, ``beta_end``, ``trained_betas``)."""
    if sc.get("trained_betas") is not None:
        return torch.cumprod(1.0 - torch.tensor(sc["trained_betas"], dtype=torch.float64), 0)
    return make_alphas_cumprod(
        sc.get("beta_schedule", "linear"),
        sc.get("num_train_timesteps", 1000),
        sc.get("beta_start", 0.0001),
        sc.get("beta_end", 0.02),
    )


class DiffusersPrior:
    """Text-to-image diffusion prior (SD 1.x/2.x layout, eps- or v-prediction, latent or pixel space)."""

    def __init__(self, unet, text_encoder, tokenizer, scheduler_config: dict, vae=None, device="cpu", dtype=None,
                 defaults: dict | None = None):
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        # what predictions, decoded images and the schedule come back in: float32 for half/float32 weights, float64
        # for float64 weights (parity tests run tiny priors in float64, so their bounds do not depend on the CPU)
        self.compute_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
        self.unet = self._place(unet)
        self._nhwc = self.device.type == "cpu" and self.dtype == torch.float32
        if self._nhwc:  # oneDNN's NHWC convolutions: the bundled prior's UNet call -15 % (4 x 32^2, 1 thread)
            self.unet.to(memory_format=torch.channels_last)
        self.text_encoder = self._place(text_encoder)
        self.vae = self._place(vae) if vae is not None else None
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.prediction_type = self.scheduler_config.get("prediction_type", "epsilon")
        self.alphas_cumprod = schedule_from_config(self.scheduler_config).to(self.device, self.compute_dtype)
        self.num_train_timesteps = len(self.alphas_cumprod)
        self.latent_channels = unet.config.in_channels
        # channels of decoded images: 3 for Stable Diffusion, 6 (RGB + packed depth) / 4 (RGB + depth) for LDM3D
        self.image_channels = vae.config.out_channels if vae is not None else unet.config.out_channels
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.resolution = unet.config.sample_size * self.downsample
        self.scaling_factor = vae.config.scaling_factor if vae is not None else 1.0
        self.defaults = dict(defaults or {})  # recommended settings shipped with a prior (e.g. guidance_scale)
        self._text_cache: dict[str, Tensor] = {}
        self._warned: set[str] = set()

    def _place(self, module):
        module = module.to(self.device)
        if module.dtype != self.dtype:
            module = module.to(self.dtype)
        return module.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls,
        id_or_path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        local_files_only: bool = False,
        option: str = "--prior",
    ) -> "DiffusersPrior":
        """Load from a hub id or a folder. ``dtype`` defaults to float16 on CUDA and float32 elsewhere.

        ``option`` is the command-line option named in error messages (``--prior``, ``--model``)."""
        device = torch.device(device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        from latent3d.io.model_folder import first_line, is_load_error

        try:
            index = _read_json(id_or_path, "model_index.json", local_files_only)
            parts = {
                name: _load_component(id_or_path, name, spec, local_files_only)
                for name, spec in index.items()
                if name in ("unet", "vae", "text_encoder", "tokenizer") and isinstance(spec, list) and spec[0]
            }
            sched = _read_json(id_or_path, "scheduler/scheduler_config.json", local_files_only)
            missing = {"unet", "text_encoder", "tokenizer"} - parts.keys()
            if missing:
                raise UserError(f"prior {str(id_or_path)!r} lacks {', '.join(sorted(missing))} in model_index.json")
            return cls(parts["unet"], parts["text_encoder"], parts["tokenizer"], sched, parts.get("vae"), device,
                       dtype, index.get("_latent3d_defaults"))  # fmt: skip
        except UserError:
            raise
        except Exception as e:
            if not is_load_error(e):
                raise
            if Path(id_or_path).is_dir():  # a local folder: say what is wrong with it, no download advice
                raise UserError(
                    f"could not load {option.lstrip('-')} folder {str(id_or_path)!r}: {type(e).__name__}: "
                    f"{first_line(e)} -- the folder is damaged: check that every component folder (unet/, "
                    "text_encoder/, tokenizer/, vae/, scheduler/) holds its config and safetensors weights, or copy it "
                    "again"
                ) from None
            raise UserError(
                f"could not load {option.lstrip('-')} {str(id_or_path)!r} ({type(e).__name__}): download it where there "
                f"is network (`hf download {id_or_path} --local-dir DIR`) and pass {option} DIR"
            ) from None

    # -- text -------------------------------------------------------------------------------------------------
    def unknown_words(self, prompt: str) -> list[str]:
        """Words the tokenizer maps to its unknown token (a bundled prior knows only its training vocabulary)."""
        unk = self.tokenizer.unk_token_id
        if unk is None or unk == self.tokenizer.pad_token_id == self.tokenizer.eos_token_id:
            return []  # byte-level BPE (CLIP): every word has tokens
        words = re.findall(r"[\w']+", prompt.lower())
        return [w for w in words if unk in self.tokenizer(w, add_special_tokens=False)["input_ids"]]

    def vocabulary(self) -> list[str]:
        specials = set(self.tokenizer.all_special_tokens)
        return sorted(t for t in self.tokenizer.get_vocab() if t not in specials)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:  # [B, L, D]
        """Last hidden states of the text encoder, as diffusers' ``encode_prompt`` (no clip-skip)."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        for p in todo:
            unknown = self.unknown_words(p)
            if unknown and p not in self._warned:
                self._warned.add(p)
                known = " ".join(self.vocabulary())
                print(f"latent3d: warning: the prior does not know {', '.join(map(repr, unknown))}; it knows: {known}",
                      file=sys.stderr)  # fmt: skip
        if todo:
            tok = self.tokenizer(todo, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt")  # fmt: skip
            mask = tok.attention_mask.to(self.device) if getattr(self.text_encoder.config, "use_attention_mask", False) else None
            emb = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
            self._text_cache.update(zip(todo, emb))
        return torch.stack([self._text_cache[p] for p in prompts])

    # -- images <-> latents ------------------------------------------------------------------------------------
    def encode_images(
        self,
        images: Tensor,  # [B, C, H, W] in [0, 1], C = image_channels (3; LDM3D: 6 or 4)
        generator: torch.Generator | None = None,
    ) -> Tensor:  # [B, C, H/ds, W/ds]
        """Scaled VAE latents (posterior mean, or a sample with ``generator``); pixel priors map to [-1, 1]."""
        x = images.to(self.device, self.dtype) * 2.0 - 1.0
        if self.vae is None:
            return x
        dist = self.vae.encode(x).latent_dist
        z = dist.sample(generator) if generator is not None else dist.mean
        return z * self.scaling_factor

    def decode_latents(self, latents: Tensor) -> Tensor:  # [B, C, h, w] -> [B, image_channels, H, W] in [0, 1]
        x = latents.to(self.dtype)
        if self.vae is not None:
            x = self.vae.decode(x / self.scaling_factor).sample
        return (x.to(self.compute_dtype) / 2 + 0.5).clamp(0, 1)

    # -- denoiser ----------------------------------------------------------------------------------------------
    def predict_eps(
        self,
        x_t: Tensor,  # [B, C, h, w]
        t: Tensor,  # [B] or [] long
        text_emb: Tensor,  # [B, L, D]
    ) -> Tensor:  # [B, C, h, w] in compute_dtype (float32; float64 for float64 weights)
        t = torch.as_tensor(t, device=self.device).long().expand(x_t.shape[0])
        x = x_t.to(self.dtype, memory_format=torch.channels_last) if self._nhwc else x_t.to(self.dtype)
        out = self.unet(x, t, encoder_hidden_states=text_emb.to(self.dtype)).sample
        out = out.to(self.compute_dtype, memory_format=torch.contiguous_format)
        if self.prediction_type == "epsilon":
            return out
        a = expand_like(self.alphas_cumprod[t], x_t)
        return to_eps_x0(x_t.to(self.compute_dtype), out, a, self.prediction_type)[0]

    def predict_eps_cfg(
        self,
        x_t: Tensor,  # [B, C, h, w]
        t: Tensor,  # [B] or [] long
        cond: Tensor,  # [B or 1, L, D]
        uncond: Tensor,  # [B or 1, L, D] empty prompt or a negative embedding
        scale: float,
    ) -> Tensor:  # [B, C, h, w]
        """Classifier-free guided eps in one batched UNet call (Ho & Salimans 2022, eq. 6)."""
        return cfg_batched(lambda x, tt, encoder_hidden_states: self.predict_eps(x, tt, encoder_hidden_states),
                           x_t, t, cond, uncond, scale)  # fmt: skip
