"""Personalised priors: a diffusers-format LoRA (``save_lora_weights`` / ``load_lora_weights`` files, e.g. from
DreamBooth-LoRA training) merged into a :class:`~latent3d.priors.diffusers_prior.DiffusersPrior`'s UNet, and into its
text encoder when the file holds text-encoder layers.

The UNet goes through diffusers' own loader (``StableDiffusionLoraLoaderMixin.lora_state_dict`` reads the file and its
adapter metadata and converts kohya/old layouts; ``load_lora_into_unet`` injects peft layers), then ``fuse_lora`` merges
``W + scale * (alpha / r) * B @ A`` and ``unload_lora_weights`` drops the adapters, so the prior's networks are plain
modules again (no per-step cost). The text encoder follows diffusers' ``_load_lora_into_text_encoder`` with the peft
calls that transformers' ``load_adapter`` makes, since transformers 5 asks for a newer peft than diffusers does.
"""

from __future__ import annotations

from pathlib import Path

from latent3d.errors import UserError

LORA_FILE = "pytorch_lora_weights.safetensors"  # the name diffusers' save_lora_weights writes (LORA_WEIGHT_NAME_SAFE)
_ADAPTER = "latent3d_lora"


def lora_file(path: str | Path, option: str = "--lora") -> Path:
    """The LoRA's ``.safetensors`` file: ``path`` itself, or in a folder ``pytorch_lora_weights.safetensors`` or its
    only ``.safetensors`` file. Imports no torch."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix != ".safetensors":
            raise UserError(f"{option} {p} is not a .safetensors file: pass a LoRA written by diffusers' "
                            "save_lora_weights (a .safetensors file or its folder); latent3d loads no pickles")
        return p
    if not p.is_dir():
        raise UserError(f"{option} {p}: no such file or folder")
    if (p / LORA_FILE).is_file():
        return p / LORA_FILE
    found = sorted(p.glob("*.safetensors"))
    if len(found) != 1:
        raise UserError(f"{option} folder {p} holds {len(found)} .safetensors files and no {LORA_FILE}: pass the "
                        "LoRA file itself")
    return found[0]


def check_lora_file(path: str | Path, option: str = "--lora") -> Path:
    """:func:`lora_file`, checked to be a readable safetensors file whose tensors are all LoRA layers (diffusers' own
    test: every name holds ``lora``), before any model loads."""
    from safetensors import safe_open

    f = lora_file(path, option)
    try:
        with safe_open(str(f), "pt") as h:
            keys = list(h.keys())
    except Exception as e:
        raise UserError(f"{option} {f} is not a readable safetensors file ({type(e).__name__}): copy it "
                        "again") from None
    bad = next((k for k in keys if "lora" not in k), None) if keys else "(none: the file is empty)"
    if bad is not None:
        raise UserError(f"{option} {f} is not a LoRA: tensor {bad!r} is no LoRA layer; pass a file written by "
                        "diffusers' save_lora_weights")
    return f


def _check_fits(sd: dict, model, what: str, f: Path, option: str) -> None:
    """Every ``<module>.lora_A/B.weight`` of ``sd`` (peft layout) names a layer of ``model`` whose in/out sizes it
    fits: a LoRA of another base model is one clear error instead of diffusers' warning or size-mismatch trace."""
    modules = dict(model.named_modules())
    for k, v in sd.items():
        name, _, leaf = k.partition(".lora_")
        if leaf not in ("A.weight", "B.weight"):
            continue
        w = getattr(modules.get(name), "weight", None)
        if w is None:
            raise UserError(f"{option} {f} does not fit this prior: its {what} has no layer {name!r} (the LoRA was "
                            "trained on another base model; pass --prior with that model)")
        if (v.shape[1] != w.shape[1]) if leaf == "A.weight" else (v.shape[0] != w.shape[0]):
            raise UserError(f"{option} {f} does not fit this prior: {what} layer {name!r} has weight "
                            f"{tuple(w.shape)}, the LoRA's {leaf[0]} is {tuple(v.shape)} (the LoRA was trained on "
                            "another base model; pass --prior with that model)")


def _component(sd: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix + "."): v for k, v in sd.items() if k.startswith(prefix + ".")}


def _inject_text_encoder(sd: dict, network_alphas: dict | None, metadata: dict | None, text_encoder) -> None:
    """diffusers' ``_load_lora_into_text_encoder`` (``sd`` already in peft layout) with transformers'
    ``load_adapter`` written as its two peft calls."""
    from diffusers.utils import get_peft_kwargs
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    rank = {k: v.shape[1] for k, v in sd.items() if k.endswith("lora_B.weight")}
    alphas = _component(network_alphas, "text_encoder") if network_alphas else None
    kwargs = metadata or get_peft_kwargs(rank, network_alpha_dict=alphas, peft_state_dict=sd, is_unet=False)
    inject_adapter_in_model(LoraConfig(**kwargs), text_encoder, adapter_name=_ADAPTER)
    set_peft_model_state_dict(text_encoder, sd, adapter_name=_ADAPTER)


def load_lora(prior, path: str | Path, scale: float = 1.0, option: str = "--lora") -> dict:
    """Merge the LoRA at ``path`` (file or folder) into ``prior``'s UNet and text encoder, ``scale`` times its
    ``alpha / r``-scaled update; returns ``{"file", "scale", "unet_layers", "text_encoder_layers"}``."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from diffusers.utils import convert_unet_state_dict_to_peft

    class View(StableDiffusionLoraLoaderMixin):  # the two components diffusers' pipeline methods work on
        def __init__(self, unet, text_encoder):
            self.unet, self.text_encoder = unet, text_encoder

    f = check_lora_file(path, option)
    if not hasattr(prior.unet, "load_lora_adapter"):
        raise UserError(f"{option}: the prior's UNet ({type(prior.unet).__name__}) takes no diffusers LoRA")
    view = View(prior.unet, prior.text_encoder)
    try:
        sd, alphas, meta = view.lora_state_dict(str(f.parent), weight_name=f.name, use_safetensors=True,
                                                local_files_only=True, return_lora_metadata=True)  # fmt: skip
    except Exception as e:
        from latent3d.io.model_folder import first_line

        raise UserError(f"{option} {f} could not be read as a LoRA ({type(e).__name__}: {first_line(e)})") from None
    unet_sd, te_sd = _component(sd, "unet"), _component(sd, "text_encoder")
    if not unet_sd and not te_sd:
        raise UserError(f"{option} {f} holds no unet.* or text_encoder.* LoRA layers: pass a file written by "
                        "diffusers' save_lora_weights")
    if unet_sd and "lora_A" not in next(iter(unet_sd)):  # as diffusers' load_lora_adapter
        unet_sd = convert_unet_state_dict_to_peft(unet_sd)
    if te_sd:
        te_sd = convert_state_dict_to_peft(convert_state_dict_to_diffusers(te_sd))
        if not hasattr(prior.text_encoder, "text_model"):  # flattened CLIPTextModel (transformers 5)
            te_sd = {k.removeprefix("text_model."): v for k, v in te_sd.items()}
    _check_fits(unet_sd, prior.unet, "UNet", f, option)
    _check_fits(te_sd, prior.text_encoder, "text encoder", f, option)
    if unet_sd:
        unet_meta = meta if meta and _component(meta, "unet") else None  # text-encoder-only metadata: none
        view.load_lora_into_unet(sd, alphas, unet=prior.unet, adapter_name=_ADAPTER, metadata=unet_meta)
    if te_sd:
        _inject_text_encoder(te_sd, alphas, _component(meta, "text_encoder") if meta else None, prior.text_encoder)
    parts = [name for name, d in (("unet", unet_sd), ("text_encoder", te_sd)) if d]
    view.fuse_lora(components=parts, lora_scale=scale, adapter_names=[_ADAPTER])
    view.unload_lora_weights()
    for m in (prior.unet, prior.text_encoder):
        m.eval().requires_grad_(False)
    prior._text_cache.clear()  # embeddings of the text encoder before the merge
    return {"file": str(f), "scale": scale, "unet_layers": sum(k.endswith("lora_A.weight") for k in unet_sd),
            "text_encoder_layers": sum(k.endswith("lora_A.weight") for k in te_sd)}
