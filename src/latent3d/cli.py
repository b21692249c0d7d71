"""The ``latent3d`` command line (typer). Every command takes ``--help``, ``--seed`` and ``--device``.

A user mistake raises :class:`latent3d.errors.UserError`; :func:`main` prints its message as one line on stderr and
exits with a non-zero code instead of showing a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from latent3d.errors import UserError

app = typer.Typer(
    name="latent3d",
    help="3D generation with latent diffusion: RGBD images, immersive 360° worlds, text-to-3D splats, latent 3D "
    "and scene diffusion. Every command runs offline on the bundled checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by every command (use these aliases so help texts and defaults stay the same everywhere).
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; CPU runs with the same seed are bitwise identical.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda if present, else cpu), cpu, cuda or cuda:N.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing; files written atomically).")]


@app.callback()
def _root() -> None:
    """latent3d: 3D generation with latent diffusion."""


@app.command()
def info(
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Versions, the device latent3d would use, and the bundled checkpoints found."""
    from latent3d.info import collect_info, format_info

    report = collect_info(device, seed)
    if json_out:
        import json

        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(format_info(report))


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point: run the app, turning :class:`UserError` into one line and exit code 2.

    Usage errors (unknown option, missing argument) are reported by typer/click itself with exit code 2.
    """
    try:
        app(args=argv, prog_name="latent3d", standalone_mode=True)
    except SystemExit as e:  # standalone mode always ends this way
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except UserError as e:
        print(f"latent3d: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("latent3d: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
