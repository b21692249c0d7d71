"""The ``latent3d`` command line (typer): this module only assembles the commands that each package declares in
its ``command.py`` (the options shared by all of them are in :mod:`latent3d.options`). Every command takes
``--help``; every command that computes something takes ``--seed`` and ``--device``.

A user mistake raises :class:`latent3d.errors.UserError`; :func:`main` prints its message as one line on stderr and
exits with a non-zero code instead of showing a traceback.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from latent3d import info, viewer
from latent3d.app import command as app_commands
from latent3d.data import command as data_commands
from latent3d.exits import failure
from latent3d.priors import command as prior_commands
from latent3d.systems.autodecoder import command as autodecoder
from latent3d.systems.depthfusion import command as depthfusion
from latent3d.systems.ldm3d import command as ldm3d
from latent3d.systems.lucid_dreamer import command as lucid_dreamer
from latent3d.systems.nfldm import command as nfldm

app = typer.Typer(
    name="latent3d",
    help="3D generation with latent diffusion: RGBD images, immersive 360° worlds, text-to-3D splats, latent 3D "
    "and scene diffusion. Every command runs offline on the bundled checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train latent3d's models (shared Accelerate trainer: --resume, EMA, NaN guard).",
                        no_args_is_help=True)  # fmt: skip
scene_app = typer.Typer(help="NeuralField-LDM scenes: generate (no subcommand), edit, pack.", no_args_is_help=False)
data_app = typer.Typer(help="Build training data from your own files.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """latent3d: 3D generation with latent diffusion."""


app.command("info")(info.info)
app.command("dream")(lucid_dreamer.dream)
app.command("sample")(prior_commands.sample)
app.command("rgbd")(ldm3d.rgbd)
app.command("immersive")(depthfusion.immersive)
app.command("object")(autodecoder.object_cmd)
app.command("view")(viewer.view)
app.command("app")(app_commands.app_cmd)
app.add_typer(train_app, name="train")
train_app.command("prior")(prior_commands.train_prior)
train_app.command("rgbd-vae")(ldm3d.train_rgbd_vae)
train_app.command("rgbd")(ldm3d.train_rgbd)
train_app.command("autodecoder")(autodecoder.autodecoder_cmd)
train_app.command("object-diffusion")(autodecoder.object_diffusion_cmd)
train_app.command("scene-ae")(nfldm.scene_ae_cmd)
train_app.command("scene-latent-ae")(nfldm.scene_latent_ae_cmd)
train_app.command("scene-diffusion")(nfldm.scene_diffusion_cmd)
train_app.command("scene-prior")(nfldm.scene_prior_cmd)
app.add_typer(scene_app, name="scene")
scene_app.callback(invoke_without_command=True)(nfldm.scene_cmd)
scene_app.command("edit")(nfldm.scene_edit_cmd)
scene_app.command("pack")(nfldm.scene_pack_cmd)
scene_app.command("encode")(nfldm.scene_encode_cmd)
app.add_typer(data_app, name="data")
data_app.command("rgbd-pairs")(data_commands.rgbd_pairs)
data_app.command("objects")(data_commands.objects)
data_app.command("articulated")(data_commands.articulated)
data_app.command("scenes")(data_commands.scenes)
data_app.command("vizdoom")(data_commands.vizdoom)


def run(argv: list[str]):
    """Run one command as the console script does (``["dream", "a red snowman", "--seed", "0"]``) and return its
    value; a mistake raises (see :func:`failure`)."""
    return app(args=argv, prog_name="latent3d", standalone_mode=False)


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point. A :class:`UserError` or a usage error (unknown option, bad value, missing
    argument) is one line ``latent3d: error: ...`` on stderr and exit code 2 (3 for a diverged training run)."""
    try:
        rv = run(argv)
    except typer.Exit as e:
        return e.exit_code
    except BaseException as e:
        said = failure(e)
        if said is None:
            raise
        print(said[0], file=sys.stderr)
        return said[1]
    return rv if isinstance(rv, int) else 0

if __name__ == "__main__":
    sys.exit(main())
