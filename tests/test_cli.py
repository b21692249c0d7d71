"""CLI skeleton: subcommands listed, user errors are one line with a non-zero exit, info reports the truth."""

import json
import subprocess
import sys

import pytest
import torch

from latent3d.cli import main
from latent3d.weights import bundled_checkpoints


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "latent3d.cli", "--help"], capture_output=True, text=True, check=True)
    assert "info" in out.stdout


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
