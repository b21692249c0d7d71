"""CLI skeleton: every documented command is listed and its help runs with --seed and --device, user errors are one
line with a non-zero exit, info reports the truth."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latent3d.cli import main
from latent3d.weights import bundled_checkpoints


README = Path(__file__).resolve().parents[1] / "README.md"


def documented_commands() -> list[tuple[str, ...]]:
    """The commands of the README's command reference table: ``| `latent3d train prior --out DIR ...` | ...``."""
    rows = re.findall(r"^\| `latent3d ([a-z][a-z0-9 -]*?)(?= [A-Z\[-]|`)", README.read_text(), re.M)
    return [tuple(r.split()) for r in rows]


def help_entries(text: str, section: str = "Commands") -> list[str]:
    """Names listed in the ``Commands`` section of a click/typer help text (rich panel or plain layout)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.search(rf"\b{section}\b", ln) and not ln.lstrip().startswith("Usage"))
    names = []
    for ln in lines[start + 1 :]:
        if re.match(r"^\s*(╰|$)", ln):
            break
        m = re.match(r"^(?:│ | {2})([a-z][a-z0-9-]*)(?: {2,}|\s*│?$)", ln)
        if m:
            names.append(m.group(1))
    return names


def _help(*argv: str) -> str:
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1", TERM="dumb")
    out = subprocess.run([sys.executable, "-m", "latent3d.cli", *argv, "--help"], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    return out.stdout


def test_the_readme_documents_every_command_and_the_app_has_each():
    """The README's command table and the typer app name the same commands, nested groups included."""
    import typer.main

    from latent3d.cli import app

    def walk(group, prefix=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                if cmd.invoke_without_command:  # a group that is a command too (`latent3d scene`)
                    yield (*prefix, name)
                yield from walk(cmd, (*prefix, name))
            else:
                yield (*prefix, name)

    documented = documented_commands()
    assert ("dream",) in documented and ("train", "rgbd-vae") in documented  # the table was parsed
    assert sorted(walk(typer.main.get_command(app))) == sorted(documented)


def test_help_lists_every_command():
    top = help_entries(_help())
    documented = documented_commands()
    assert sorted(top) == sorted({c[0] for c in documented}), top
    train = help_entries(_help("train"))
    assert sorted(train) == sorted(c[1] for c in documented if c[0] == "train"), train


SERVES_FILES = {("view",), ("scene", "pack")}  # commands that draw nothing at random and compute nothing on a device


@pytest.mark.parametrize("argv", documented_commands(), ids="-".join)
def test_each_command_help_runs_and_lists_seed_and_device(capsys, argv):
    """README: "Every command takes --help; every command that computes something takes --seed and --device" (and
    `view`, which only serves files, takes neither instead of accepting and ignoring them)."""
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"Usage: latent3d {' '.join(argv)} ", out), out[:300]
    for opt in ("--seed", "--device"):
        listed = re.search(rf"(?<![\w-]){opt}(?![\w-])", out) is not None
        assert listed != (tuple(argv) in SERVES_FILES), f"`latent3d {' '.join(argv)} --help`: {opt} listed={listed}"


def test_info_json_reports_device_and_versions(capsys):
    assert main(["info", "--json", "--device", "cpu", "--seed", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu"
    assert report["torch"] == torch.__version__
    assert report["seed"] == 3
    assert report["cuda_available"] == torch.cuda.is_available()


def test_user_error_is_one_line_and_nonzero(capsys):
    code = main(["info", "--device", "not-a-device"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "not-a-device" in err and "Traceback" not in err


def test_unknown_option_exits_nonzero(capsys):
    assert main(["info", "--no-such-option"]) == 2


def test_bundled_checkpoint_discovery(tmp_path):
    ck = tmp_path / "tiny"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    (ck / "model.safetensors").write_bytes(b"\0" * 1000)
    (ck / "MODEL_CARD.md").write_text("card")
    (tmp_path / "not_a_checkpoint").mkdir()
    found = bundled_checkpoints(tmp_path)
    assert [c.name for c in found] == ["tiny"]
    assert found[0].size_bytes == 1000 + 2 + 4 and found[0].has_card


@pytest.mark.parametrize("argv, needle", [
    (["dream", "a red snowman", "--method", "vsd"], "--method"),
    (["dream", "   "], "prompt is empty"),
    (["dream", "a chair", "--init", "/no/such.ply"], "--init"),
    (["dream", "a chair", "--prior", "/no/such/folder"], "neither a folder"),
    (["sample", "a chair", "--n", "0"], "--n"),
    (["sample", "a chair", "--prior", "nobody/nothing"], "hf download"),
    (["train", "prior", "--steps", "0"], "--steps"),
])  # fmt: skip
def test_command_user_errors_are_one_line(capsys, tmp_path, argv, needle):
    code = main([*argv, "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()  # nothing half-written
