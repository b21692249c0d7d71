"""Personalised priors (issue 19 item 9): ``latent3d dream --lora`` merges a diffusers-format LoRA into the prior's
UNet (and text encoder), which must equal the weights merged by hand, ``W + scale * (alpha / r) * up @ down``, from
the saved tensors; a path that is not such a LoRA for this prior is one error line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from latent3d.cli import main
from latent3d.errors import UserError
from latent3d.priors import load_prior
from latent3d.priors.loading import resolve_prior_path
from latent3d.priors.lora import LORA_FILE, load_lora

# Both sides evaluate the same float64 networks on the same inputs; only the order of the float64 sums in the merged
# weights differs (peft: W + (B @ A) * s, by hand: W + s * (B @ A)), each off by ~eps64 * |W| ~ 1e-16: 1e-11 is the
# bound of tests/test_priors.py (TOL64), ~1e7 below what a wrong alpha, rank or scale changes (>= 1e-4 here).
TOL64 = dict(atol=1e-11, rtol=0)
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "v_proj"]
R, UNET_ALPHA, TE_ALPHA = 2, 3.0, 5.0  # alpha != r: the file's metadata must carry alpha
# the tiny UNet of tests/conftest.py with twice the channels: the same layer names, other shapes
WIDE_UNET = dict(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), cross_attention_dim=8, norm_num_groups=2,
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=2)  # fmt: skip


def make_lora(prior_dir, out: Path, text_encoder: bool = False, std: float = 0.5, unet_kw: dict | None = None) -> Path:
    """A random LoRA (up and down ~ N(0, std^2), so non-zero) on the UNet of the prior folder ``prior_dir`` (on a
    UNet built from ``unet_kw`` instead, if given) and optionally its text encoder, saved by diffusers'
    ``save_lora_weights`` with each adapter's metadata (its alpha); returns the folder."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from transformers import CLIPTextModel

    if unet_kw:
        unet = UNet2DConditionModel(**unet_kw)
    else:
        unet = UNet2DConditionModel.from_pretrained(prior_dir, subfolder="unet")
    cfgs = {"unet": LoraConfig(r=R, lora_alpha=UNET_ALPHA, target_modules=UNET_TARGETS)}
    unet.add_adapter(cfgs["unet"])
    models = {"unet": unet}
    if text_encoder:
        models["text_encoder"] = CLIPTextModel.from_pretrained(prior_dir, subfolder="text_encoder")
        cfgs["text_encoder"] = LoraConfig(r=R, lora_alpha=TE_ALPHA, target_modules=TE_TARGETS)
        inject_adapter_in_model(cfgs["text_encoder"], models["text_encoder"])  # transformers 5's add_adapter
        # wants a newer peft than diffusers does
    g = torch.Generator().manual_seed(1)
    layers = {}
    for part, m in models.items():
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * std)
        layers[f"{part}_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(m))
        layers[f"{part}_lora_adapter_metadata"] = cfgs[part].to_dict()
    StableDiffusionPipeline.save_lora_weights(out, **layers)
    return out


def merge_by_hand(prior, file: Path, scale: float) -> int:
    """Add ``scale * (alpha / r) * up @ down`` of every layer of ``file`` to the prior's weights; returns the count."""
    sd, n = load_file(str(file)), 0
    for key, down in sd.items():
        # diffusers' layout: unet.<layer>.lora.down.weight, text_encoder.<layer>.lora_linear_layer.down.weight
        m = re.fullmatch(r"(unet|text_encoder)\.(.+)\.(lora|lora_linear_layer)\.down\.weight", key)
        if m is None:
            continue
        part, name = m.group(1), m.group(2)
        model, alpha = (prior.unet, UNET_ALPHA) if part == "unet" else (prior.text_encoder, TE_ALPHA)
        up = sd[key.removesuffix("down.weight") + "up.weight"]
        w = dict(model.named_modules())[name].weight
        assert down.shape[0] == up.shape[1] == R
        with torch.no_grad():
            w += scale * (alpha / R) * (up.double() @ down.double()).to(w.dtype)
        n += 1
    return n


def _eps(prior, prompt="a red cube"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=g, dtype=torch.float64)
    with torch.no_grad():
        return prior.predict_eps(x, torch.tensor([100, 700]), prior.encode_text([prompt, ""]))


@pytest.mark.parametrize("text_encoder", [False, True], ids=["unet", "unet+text_encoder"])
def test_lora_equals_the_weights_merged_by_hand(tiny_sd_dir, tmp_path, text_encoder):
    scale = 0.6
    folder = make_lora(tiny_sd_dir, tmp_path / "lora", text_encoder=text_encoder)
    plain, ours, ref = (load_prior(tiny_sd_dir, dtype=torch.float64) for _ in range(3))
    plain_text = ours.encode_text(["a red cube"])  # fills the text cache that load_lora must clear
    info = load_lora(ours, folder if text_encoder else folder / LORA_FILE, scale=scale)
    n = merge_by_hand(ref, folder / LORA_FILE, scale)
    def targets(model, names):
        return sum(name.endswith(tuple("." + t for t in names)) for name, _ in model.named_modules())

    assert info["unet_layers"] == targets(plain.unet, UNET_TARGETS) > 0
    assert info["text_encoder_layers"] == (targets(plain.text_encoder, TE_TARGETS) if text_encoder else 0)
    assert info["unet_layers"] + info["text_encoder_layers"] == n
    assert not any("lora" in name for name, _ in [*ours.unet.named_modules(), *ours.text_encoder.named_modules()])
    assert_close(ours.encode_text(["a red cube"]), ref.encode_text(["a red cube"]), **TOL64)
    if text_encoder:
        assert (ours.encode_text(["a red cube"]) - plain_text).abs().max() > 1e-3
    eps, eps_ref, eps_plain = _eps(ours), _eps(ref), _eps(plain)
    assert eps.dtype == torch.float64
    assert_close(eps, eps_ref, **TOL64)
    assert (eps - eps_plain).abs().max() > 1e-3 * eps_plain.abs().max()  # the LoRA changes the prediction


def test_a_lora_of_another_unet_is_one_clear_error(tiny_sd_dir, tmp_path):
    prior = load_prior(tiny_sd_dir, dtype=torch.float64)
    folder = make_lora(None, tmp_path / "wide", unet_kw=WIDE_UNET)
    before = {k: v.clone() for k, v in prior.unet.state_dict().items()}
    with pytest.raises(UserError, match="does not fit this prior") as e:
        load_lora(prior, folder)
    assert "\n" not in str(e.value)
    assert all(torch.equal(v, before[k]) for k, v in prior.unet.state_dict().items())  # nothing merged


def _wrong_files(tmp: Path, tiny_sd_dir: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "junk.safetensors").write_bytes(b"not a safetensors file")
    (tmp / "lora.bin").write_bytes(b"\0" * 16)
    (tmp / "empty").mkdir()
    return {
        "missing": (tmp / "no_such_lora", "no such file or folder"),
        "pickle": (tmp / "lora.bin", "not a .safetensors file"),
        "empty_folder": (tmp / "empty", "holds 0 .safetensors files"),
        "junk": (tmp / "junk.safetensors", "not a readable safetensors file"),
        "unet_weights": (tiny_sd_dir / "unet" / "diffusion_pytorch_model.safetensors", "is not a LoRA"),
    }


@pytest.mark.parametrize("case", ["missing", "pickle", "empty_folder", "junk", "unet_weights", "other_unet"])
def test_dream_with_a_wrong_lora_is_one_error_line(tiny_sd_dir, tmp_path, capsys, case):
    wrong = _wrong_files(tmp_path, tiny_sd_dir)
    if case == "other_unet":  # a real LoRA, for another UNet: refused after the prior loads
        wrong[case] = (make_lora(None, tmp_path / "other", unet_kw=WIDE_UNET), "does not fit this prior")
    path, needle = wrong[case]
    out = tmp_path / "o"
    capsys.readouterr()
    code = main(["dream", "a red cube", "--prior", str(tiny_sd_dir), "--lora", str(path), "--out", str(out),
                 "--iters", "1", "--views", "1", "--device", "cpu"])  # fmt: skip
    text = capsys.readouterr().err
    err = [ln for ln in text.splitlines() if ln.strip()]
    if case == "other_unet":  # after the prior loaded: its weight-loading progress bar may come first
        err = err[-1:]
    assert code == 2 and len(err) == 1 and err[0].startswith("latent3d: error: --lora"), text
    assert needle in err[0] and "Traceback" not in text and not out.exists(), text


def test_dream_with_a_lora_on_the_bundled_prior_records_it(tmp_path):
    lora = make_lora(resolve_prior_path(None)[0], tmp_path / "lora", std=0.05)
    out = tmp_path / "o"
    code = main(["dream", "a red snowman", "--lora", str(lora), "--out", str(out), "--method", "sds", "--iters", "2",
                 "--views", "1", "--device", "cpu"])  # fmt: skip
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["lora"] == str(lora)
