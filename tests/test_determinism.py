"""The README's promise (issue 30, item 7): on one machine, the same commands with the same seed write identical bytes,
every file but its timings. The 3DVADER chain -- `data objects`, `train autodecoder`, `train object-diffusion`,
`object` -- runs twice through the CLI in the same folder (moved aside in between), and every file of the two runs is
compared byte for byte; JSON files are compared after removing their ``*_s`` timing fields, model cards after
blanking their wall times. Model folders' config.json hold no wall time and no path."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from latent3d.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from output_hashes import comparable as _comparable  # noqa: E402 (one normaliser: the refactor harness's)

TINY_AUTODECODER = ["--steps", "4", "--embedding-dim", "16", "--latent-channels", "4", "--widths", "8", "--shuffle",
                    "1", "--samples", "16", "--patch", "8", "--objects-per-step", "2", "--views-per-object", "2",
                    "--holdout", "4", "--checkpoint-every", "2"]  # fmt: skip
TINY_DIFFUSION = ["--steps", "3", "--batch-size", "2", "--model-channels", "8", "--channel-mult", "1", "--attention",
                  "", "--checkpoint-every", "2"]  # fmt: skip


def _chain(w: Path) -> None:
    for argv in (
        ["data", "objects", "--out", str(w / "data"), "--categories", "chair,table", "--n-objects", "2", "--views", "4",
         "--size", "32", "--seed", "1"],
        ["train", "autodecoder", "--data", str(w / "data"), "--out", str(w / "ad"), *TINY_AUTODECODER, "--device",
         "cpu"],
        ["train", "object-diffusion", "--autodecoder", str(w / "ad"), "--out", str(w / "od"), *TINY_DIFFUSION,
         "--device", "cpu"],
        ["object", "a chair", "--model", str(w / "od"), "--out", str(w / "obj"), "--n", "2", "--steps", "2", "--size",
         "32", "--frames", "2", "--views", "2", "--seed", "3", "--device", "cpu"],
    ):  # fmt: skip
        assert main(argv) in (0, None), argv


def test_the_same_commands_write_the_same_bytes_but_the_timings(tmp_path):
    w = tmp_path / "w"
    for name in ("a", "b"):  # the same paths for both, so that command lines (and paths in them) agree
        _chain(w)
        shutil.move(w, tmp_path / name)
    a, b = tmp_path / "a", tmp_path / "b"
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    assert {"ad/latents.safetensors", "od/model/model.safetensors", "obj/sample_01/mesh.glb"} <= set(files)
    timed = set()
    for f in files:
        if (a / f).read_bytes() != (b / f).read_bytes():
            timed.add(f)
            assert _comparable(a / f) == _comparable(b / f), f
    # what differs: the timings, in these files only (the model card's wall time may round alike)
    allowed = re.compile(r"(.*/)?(run\.json|eval\.json|metrics\.jsonl|trainer_state\.json|MODEL_CARD\.md)$")
    assert all(allowed.fullmatch(f) for f in timed), timed
    for cfg in (a / "ad" / "model" / "config.json", a / "od" / "model" / "config.json"):
        text = cfg.read_text()
        assert str(tmp_path) not in text and "_s\"" not in text, cfg  # no path, no wall time
