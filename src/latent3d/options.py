"""What every command shares: option aliases, value checks, and options whose default and help come from a config
dataclass (nerfstudio-style: the field's default is the option's default, the field's docstring is its help).

Importing this module loads typer only, so ``latent3d --help`` stays fast; the config modules it reads from
(``*/config.py``) import no torch either.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import textwrap
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Optional

import typer

from latent3d.ranges import SEED_MAX, OneOf, Range, choices, field_range

GUIDANCE = Range(0, 1000, integer=False)  # a classifier-free guidance scale (1 = none; SDS uses 100)



def check_out(value: Path) -> Path:
    """The output folder must be a folder (or creatable): checked before any weight loads, writing nothing."""
    import tempfile

    p = value.expanduser()
    if p.exists() and not p.is_dir():
        raise typer.BadParameter(f"{p} exists and is not a folder; name a folder (new or existing)")
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise typer.BadParameter(f"{p} cannot be created: {parent} is not a folder")
    try:  # can we create entries there? (a read-only mount, /proc, /sys or a folder without permission cannot)
        os.rmdir(tempfile.mkdtemp(prefix=".latent3d-probe-", dir=parent))
    except OSError as e:
        raise typer.BadParameter(f"{p} cannot be written ({e.strerror or e}); choose a writable folder") from None
    return value


# ------------------------------------------------------------------------------------- defaults from a config
@lru_cache(maxsize=None)
def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal right below a field) of ``cls`` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):  # fmt: skip
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_doc(cls: type, name: str) -> str:
    """The docstring of field ``name`` of dataclass ``cls`` (KeyError if it has none: every option needs help)."""
    return _field_docs(cls)[name]


def defaults(cls: type) -> SimpleNamespace:
    """The plain default of every field of dataclass ``cls`` that has one, by name (``default_factory`` fields are
    left out: calling them may import torch, and no option takes its default from one)."""
    return SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING})


def field_option(cls: type, name: str, *param_decls: str, help: str | None = None, **kw: Any) -> Any:
    """``typer.Option`` whose help is the docstring of ``cls.name`` (or ``help``) and whose check is the field's
    declared range or choices (:mod:`latent3d.ranges`; a tuple-valued field's option is comma-separated text that
    the check parses into the tuple); the command's parameter default is to be ``defaults(cls).name``, so the
    dataclass is the only place a default or a valid value is written."""
    rng, opts = field_range(cls, name), choices(cls, name)
    kw.setdefault("callback", rng if rng is not None else OneOf(opts) if opts else None)
    return typer.Option(*param_decls, help=help if help is not None else field_doc(cls, name), **kw)


# ---------------------------------------------------------------------------------- options of every command
SeedOpt = Annotated[int, typer.Option("--seed", callback=Range(0, SEED_MAX), help="Random seed (0..2**63-1); runs with the same seed on one machine write identical files.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda if present, else cpu), cpu, cuda or cuda:N.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", callback=check_out, help="Output folder (created if missing; files written atomically).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from the newest intact checkpoint in --out (bit-for-bit; the settings must match).")]
CheckpointEveryOpt = Annotated[int, typer.Option("--checkpoint-every", callback=Range(1, 10**8), help="Write a checkpoint every this many steps (and at the end); the newest two are kept.")]
NegativeOpt = Annotated[str, typer.Option(help="Negative prompt (replaces the empty prompt in guidance).")]
ModelStepsOpt = Annotated[Optional[int], typer.Option(callback=Range(1, 1000), help="DDIM steps (default: the model's recommendation, else 50).")]
# LDM3D models (`rgbd`, `immersive`): without `_latent3d_defaults`, diffusers' StableDiffusionLDM3DPipeline defaults
LDM3DStepsOpt = Annotated[Optional[int], typer.Option(callback=Range(1, 1000), help="DDIM steps (default: the model's recommendation, else 49 as diffusers' StableDiffusionLDM3DPipeline).")]
LDM3DGuidanceOpt = Annotated[Optional[float], typer.Option(callback=GUIDANCE, help="Classifier-free guidance scale (default: the model's recommendation, else 5.0 as diffusers' StableDiffusionLDM3DPipeline).")]
PriorOpt = Annotated[Optional[str], typer.Option(help="Bundled name, diffusers folder or hub id (default: bundled object prior).")]
CHECKPOINT_EVERY = 500  # default of --checkpoint-every on every training command


def invocation(ctx: typer.Context) -> str:
    """The command as the user gave it (``latent3d train rgbd --vae runs/vae --steps 100``), rebuilt from the
    parsed parameters that came from the command line (for model cards: no ``sys.argv`` reading)."""
    import shlex

    words = [ctx.command_path]
    for p in ctx.command.params:
        source = ctx.get_parameter_source(p.name)  # typer may run its own copy of click: compare by name
        if source is None or source.name != "COMMANDLINE":
            continue
        v = ctx.params[p.name]
        flag = max(p.opts, key=len) if getattr(p, "param_type_name", "") == "option" else None
        if flag is None:
            words += [str(x) for x in (v if isinstance(v, (tuple, list)) else (v,))]
        elif getattr(p, "is_flag", False):
            words.append(flag if v else (p.secondary_opts or [flag])[0])
        else:
            words += [flag, *(str(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))]
    return " ".join(shlex.quote(w) if w != ctx.command_path else w for w in words)
