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
from latent3d.data import command as data_commands
from latent3d.errors import UserError
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
data_app.command("scenes")(data_commands.scenes)
data_app.command("vizdoom")(data_commands.vizdoom)


# typer >= 0.26 carries its own copy of click: take the exception classes from typer, whichever click it runs on
_UsageError = typer.BadParameter.__mro__[1]
_ClickException = _UsageError.__mro__[1]


def _out_of_memory(e: BaseException) -> bool:
    """An allocator failure: Python's MemoryError, PyTorch's CPU allocator or CUDA out-of-memory error."""
    text = str(e)
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or any(
        m in text for m in ("can't allocate memory", "out of memory", "Cannot allocate memory"))


def _allocator_line(e: BaseException) -> str:
    """The allocator's own words, one line: ``you tried to allocate 6710886400000 bytes``."""
    import re

    m = re.search(r"tried to allocate [0-9.,]+ ?[A-Za-z]*", str(e))
    return m.group(0) if m else (" ".join(str(e).split())[:120] or type(e).__name__)


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point. A :class:`UserError` or a usage error (unknown option, bad value, missing
    argument) is one line ``latent3d: error: ...`` on stderr and exit code 2 (3 for a diverged training run)."""
    try:
        rv = app(args=argv, prog_name="latent3d", standalone_mode=False)
    except _UsageError as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `latent3d` / `latent3d train` alone
            print(ctx.get_help(), file=sys.stderr)
            return 2
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"latent3d: error: {' '.join(e.format_message().split())}{where}", file=sys.stderr)
        return 2
    except _ClickException as e:
        print(f"latent3d: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return e.exit_code
    except UserError as e:
        print(f"latent3d: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except (MemoryError, RuntimeError) as e:  # the last resort behind the memory preflight (latent3d.memory)
        if not _out_of_memory(e):
            raise
        print(f"latent3d: error: out of memory ({_allocator_line(e)}); lower the sizes or counts of the options, or "
              "free memory", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("latent3d: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as e:
        return e.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
