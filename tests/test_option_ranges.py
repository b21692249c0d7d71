"""Every numeric option of every command, walked from the typer app (issue 30): each declares its range (a config
field's ``within(...)`` or a :class:`~latent3d.ranges.Range` callback), and nan, inf, -1, 0, 1e-300 (the issue's
``--fov``) and a huge value each give one ``latent3d: error:`` line and exit 2, or lie inside the declared range (the
documented acceptance: 0 for ``--holdout``, ``--tv-weight``...; ``--seed`` takes any 64-bit value). An option added
later is covered here without a test of its own; a numeric option without a declared range fails."""

from __future__ import annotations

import math
import typing
from pathlib import Path

import pytest
import typer
import typer.main

from latent3d.cli import app, main
from latent3d.ranges import Range, field_range
from latent3d.systems.autodecoder.config import AutodecoderConfig, ObjectDiffusionConfig

BAD = ("nan", "inf", "-inf", "-1", "0", "1e-300", "1000000000", "1e308")
HUGE_OK = {"seed"}  # --seed takes any whole number in 0..2**63-1 (torch.manual_seed's range)
# numeric text options with a parser of their own (HxW sizes; tests/test_options.py::test_parse_hw)
OWN_PARSER = {("rgbd", "size"), ("data", "rgbd-pairs", "size")}


def _leaves(cmd=None, path=()):
    cmd = cmd or typer.main.get_command(app)
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _leaves(sub, path + (name,))
    else:
        yield path, cmd


def _callback(p):
    return p.type_descriptor.parameter_info.callback


def _numeric(p) -> bool:
    ann = p.type_descriptor.annotation
    kinds = {a for a in (ann, *typing.get_args(ann)) if a is not type(None)}
    return bool(kinds & {int, float}) or isinstance(_callback(p), Range)


def _required(path, cmd, tmp: Path) -> list[str]:
    """Values for the command's required arguments and options, so that the option under test is what fails."""
    argv = []
    for p in cmd.params:
        if not p.required:
            continue
        value = "a red chair" if p.name == "prompt" else str(tmp)
        argv += [value] if p.param_type_name == "argument" else [max(p.opts, key=len), value]
    return argv


OPTIONS = [(path, p.name) for path, cmd in _leaves() for p in cmd.params
           if p.param_type_name == "option" and _numeric(p) and path + (p.name,) not in OWN_PARSER]  # fmt: skip


def test_the_walk_finds_the_options_of_every_command():
    commands = {path for path, _ in OPTIONS}
    for path in [("object",), ("data", "objects"), ("train", "autodecoder"), ("train", "object-diffusion"),
                 ("dream",), ("sample",), ("rgbd",), ("immersive",), ("view",), ("train", "prior")]:
        assert path in commands, path
    assert len(OPTIONS) > 80


@pytest.mark.parametrize("path, name", OPTIONS, ids=[" ".join(p) + " --" + n for p, n in OPTIONS])
def test_numeric_option_declares_its_range_and_refuses_bad_values(path, name, tmp_path, capsys):
    cmd = dict(_leaves())[path]
    p = next(q for q in cmd.params if q.name == name)
    rng = _callback(p)
    assert isinstance(rng, Range), f"{' '.join(path)} --{name} declares no range"
    ann = p.type_descriptor.annotation
    if rng.count is None:  # an int option takes whole numbers, a float option any number in its range
        assert rng.integer == (int in (ann, *typing.get_args(ann))), (path, name)
    assert rng.hi < 1e9 or name in HUGE_OK, "a huge value must not be valid"
    flag = max(p.opts, key=len)
    out = tmp_path / "out"
    for bad in BAD:
        argv = [*path, *_required(path, cmd, tmp_path), flag, bad]
        if "--out" in {o for q in cmd.params for o in q.opts}:
            argv += ["--out", str(out)]
        try:
            ctx = cmd.make_context(path[-1], argv[len(path):])
        except typer.BadParameter:
            rc = main(argv)
            err = capsys.readouterr().err
            assert rc == 2 and err.count("\n") == 1 and err.startswith("latent3d: error:") and flag in err, (argv, err)
            assert not out.exists()
            continue
        value = ctx.params[name]  # accepted: it must be a finite value inside the declared range
        values = value if isinstance(value, tuple) else (value,)
        assert all(math.isfinite(v) for v in values), (argv, value)
        assert rng.why(value) is None, (argv, value)
        assert bad not in ("nan", "inf", "-inf") and (float(bad) < 1e9 or name in HUGE_OK), (argv, value)


def test_ranges_are_declared_on_the_config_fields():
    # the option's check is the field's declared range: one place
    assert field_range(AutodecoderConfig, "samples") == Range(2, 1024)
    assert field_range(ObjectDiffusionConfig, "lr") == Range(0, 1, open_lo=True, integer=False)
    params = {q.name: q for q in dict(_leaves())[("train", "autodecoder")].params}
    assert _callback(params["samples"]) is field_range(AutodecoderConfig, "samples")


@pytest.mark.parametrize("kw, needle", [
    ({"attention": (3,)}, "--attention 3"),  # never a volume side
    ({"model_channels": 3}, "--model-channels must be even"),  # was a matmul shape error
    ({"channel_mult": (1, 2), "attention": (2,)}, "--attention 2"),
    ({"text_dim": 30}, "--text-dim"),
    ({"lr": -1.0}, "--lr"),
    ({"sigma_data": float("nan")}, "--sigma-data"),
    ({"batch_size": "16"}, "--batch-size must be of type int"),  # a config.json with a wrong type
    ({"normalization": "median"}, "one of channel, global"),
])
def test_config_checks_ranges_types_and_relations(kw, needle):
    from latent3d.errors import UserError

    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        ObjectDiffusionConfig(**kw)


def test_relations_of_the_autodecoder():
    from latent3d.errors import UserError

    AutodecoderConfig(widths=(32, 16), attention=(8, 32))
    with pytest.raises(UserError, match="volume side"):
        AutodecoderConfig(widths=(32,), attention=(32,))
    with pytest.raises(UserError, match="256"):
        AutodecoderConfig(widths=(32, 32, 32, 32), shuffle=4)
