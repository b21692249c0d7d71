"""The command line takes every default and help text from the config dataclasses (one source), rebuilds the
command a user typed from the parsed parameters (model cards), and parses sizes with one clear error."""

import dataclasses

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from latent3d.cli import app
from latent3d.data.command import parse_hw
from latent3d.errors import UserError
from latent3d.options import defaults, field_doc, invocation
from latent3d.priors.object_prior.config import ObjectPriorConfig
from latent3d.systems.autodecoder.config import AutodecoderConfig, ObjectConfig, ObjectDiffusionConfig
from latent3d.systems.depthfusion.config import WorldConfig
from latent3d.systems.ldm3d.config import RGBDLDMConfig, RGBDVAEConfig
from latent3d.systems.lucid_dreamer.config import DreamConfig

# command -> (config class, {option parameter name: config field})
BOUND = {
    ("train", "prior"): (ObjectPriorConfig, {n: n for n in (
        "steps", "batch_size", "lr", "views", "warmup_steps", "init", "prediction_type", "ema_decay")}),
    ("train", "rgbd-vae"): (RGBDVAEConfig, {"steps": "steps", "batch_size": "batch_size", "lr": "lr", "vae": "rgb_vae",
                                            "pano": "pano", "n_images": "n_images", "height": "height"}),
    ("train", "rgbd"): (RGBDLDMConfig, {"steps": "steps", "batch_size": "batch_size", "lr": "lr", "pano": "pano",
                                        "n_images": "n_images", "height": "height"}),
    ("dream",): (DreamConfig, {"method": "method", "iters": "iters", "views": "views", "guidance": "guidance_scale",
                               "init": "init"}),
    ("train", "autodecoder"): (AutodecoderConfig, {n: n for n in (
        "holdout", "steps", "lr", "embedding", "embedding_dim", "latent_channels", "blocks", "shuffle", "norm", "samples",
        "patch", "objects_per_step", "views_per_object", "refine_cameras", "vgg", "icnr", "tv_weight", "cameras",
        "camera_radius", "search_azimuths", "search", "search_size", "fov_y")}),
    ("train", "object-diffusion"): (ObjectDiffusionConfig, {n: n for n in (
        "steps", "batch_size", "lr", "model_channels", "blocks", "normalization", "text_encoder", "cond_drop",
        "ema_decay", "sigma_data", "p_mean", "p_std")}),
    ("object",): (ObjectConfig, {n: n for n in ("model", "n", "steps", "guidance", "views", "size", "frames")}),
    ("immersive",): (WorldConfig, {"ipd": "ipd", "strength": "strength", "resolution": "sphere_lon", "radius": "radius",
                                   "depth_mode": "depth_mode", "stereo_width": "stereo_width",
                                   "tour_seconds": "tour_seconds"}),
}  # fmt: skip


def _command(path: tuple[str, ...]):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", list(BOUND), ids="-".join)
def test_option_defaults_are_the_config_fields(path):
    cls, bound = BOUND[path]
    params = {p.name: p for p in _command(path).params}
    plain = vars(defaults(cls))
    for option, fname in bound.items():
        assert params[option].default == plain[fname], (path, option)
        if option not in ("resolution", "depth_mode"):  # these two say how the command maps them, in their own words
            assert params[option].help == field_doc(cls, fname), (path, option)


def test_defaults_and_field_docs_read_the_dataclass():
    @dataclasses.dataclass
    class Base:
        a: int = 3
        """First."""

    @dataclasses.dataclass
    class Child(Base):
        b: tuple = dataclasses.field(default_factory=lambda: (1, 2))
        c: str = "x"
        """Third,
        over two lines."""

    assert vars(defaults(Child)) == {"a": 3, "c": "x"}  # factory fields are left out (they may import torch)
    assert field_doc(Child, "a") == "First." and field_doc(Child, "c") == "Third, over two lines."
    with pytest.raises(KeyError):
        field_doc(Child, "b")  # no docstring: an option bound to it would have no help


def test_invocation_rebuilds_what_was_typed():
    seen = {}
    mini = typer.Typer()

    @mini.command()
    def run(ctx: typer.Context, name: str, steps: int = 5, out: str = "o", flag: bool = False) -> None:
        seen["cmd"] = invocation(ctx)

    @mini.callback()
    def _root() -> None:
        pass

    result = CliRunner().invoke(mini, ["run", "a b", "--out", "my dir", "--flag"], prog_name="tool")
    assert result.exit_code == 0, result.output
    # defaults left out (only what came from the command line), values quoted for a shell
    assert seen["cmd"] == "tool run 'a b' --out 'my dir' --flag"


@pytest.mark.parametrize("text, hw", [("512", (512, 512)), ("384x512", (384, 512)), ("24X32", (24, 32)), ("0", None)])
def test_parse_hw(text, hw):
    assert parse_hw(text) == hw


@pytest.mark.parametrize("text", ["", "x", "12x", "-4", "0x5", "1x2x3", "a"])
def test_parse_hw_refuses_nonsense(text):
    with pytest.raises(UserError, match="--size"):
        parse_hw(text)


def test_tuple_fields_are_comma_separated_options():
    params = {p.name: p for p in _command(("train", "autodecoder")).params}
    plain = defaults(AutodecoderConfig)
    assert params["widths"].default == ",".join(map(str, plain.widths))
    assert params["attention"].default == ",".join(map(str, plain.attention))
    assert params["widths"].help == field_doc(AutodecoderConfig, "widths")
