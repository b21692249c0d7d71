"""What ``latent3d app`` is built on, without a web server: tqdm bars reported to a listener and cancelled through
it, numbered run folders, and a job that runs the very CLI command (its error line, its cancellation, its files)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tqdm.auto import tqdm, trange

from latent3d.app.jobs import JobRunner as _JobRunner
from latent3d.app.jobs import next_folder
from latent3d.progress import Cancelled, Listener, listening, preview_due, report_preview


def JobRunner(out: Path, preview_every: int = 10) -> _JobRunner:
    """A runner over the command line's own root command."""
    import typer

    from latent3d.cli import app

    return _JobRunner(typer.main.get_command(app), out, preview_every)


def test_bars_report_to_the_listener_and_stop_when_cancelled():
    listener = Listener(preview_every=5)
    seen = []
    with listening(listener):
        for i in trange(12, desc="work", mininterval=0, disable=None):  # on, although stderr is no terminal here
            seen.append(listener.snapshot())
            assert preview_due(i + 1) == ((i + 1) % 5 == 0)
        last = listener.snapshot()
        assert (last.desc, last.n, last.total) == ("work", 12, 12)
        assert [s.n for s in seen[1:]] == list(range(1, 12))  # every update reached the listener
        assert seen[6].seconds_left is not None and seen[6].line().startswith("work: 6/12, 0:")
        listener.cancel()
        with pytest.raises(Cancelled):
            for _ in tqdm(range(100), desc="after cancel", mininterval=0):
                pass
    assert not preview_due(5)  # nobody listens: the command line computes what it did before
    report_preview(None)  # ignored outside listening
    for _ in trange(3, mininterval=0):  # tqdm itself is back (a cancelled listener no longer reaches it)
        pass


def test_a_hidden_bar_still_checks_for_cancel():
    listener = Listener()
    listener.cancel()
    with listening(listener), pytest.raises(Cancelled):
        tqdm(range(3), disable=True)


def test_run_folders_are_numbered_never_named_by_the_prompt(tmp_path):
    (tmp_path / "dream-0007").mkdir()
    (tmp_path / "dream-notes").mkdir()
    assert next_folder(tmp_path, "dream").name == "dream-0008"
    assert next_folder(tmp_path, "dream").name == "dream-0009"
    assert next_folder(tmp_path, "rgbd").name == "rgbd-0001"
    with pytest.raises(ValueError):
        next_folder(tmp_path, "../x")


def test_a_failed_job_ends_with_the_command_lines_error(tmp_path, capsys):
    from latent3d.cli import main

    args = ["rgbd", "a cat", "--model", str(tmp_path / "missing"), "--steps", "2"]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 2
    line = capsys.readouterr().err.strip()
    job = JobRunner(tmp_path / "app").start("rgbd", args)
    assert job.done.wait(60)
    assert line.startswith("latent3d: error:") and job.error == line and not job.ok
    usage = JobRunner(tmp_path / "app").start("rgbd", ["rgbd", "a cat", "--steps", "0"])  # a bad value
    assert usage.done.wait(60) and usage.error.startswith("latent3d: error: Invalid value for '--steps'")


def test_cancel_stops_a_dream_between_iterations(tmp_path):
    runner = JobRunner(tmp_path, preview_every=2)
    job = runner.start("dream", ["dream", "a red snowman", "--iters", "400", "--seed", "0"])
    end = time.monotonic() + 120
    while job.listener.snapshot().preview_count < 1 and time.monotonic() < end and not job.done.is_set():
        time.sleep(0.1)
    snap = job.listener.snapshot()
    assert snap.preview is not None and snap.preview.dtype.name == "uint8" and snap.preview.std() > 1, \
        "no live preview of the views"  # fmt: skip
    assert snap.desc.startswith("dream") and snap.total == 400
    runner.cancel_current()
    assert job.done.wait(30), "the job did not stop"
    assert job.cancelled and job.error is None and job.listener.snapshot().n < 400
    assert not (job.folder / "gaussians.ply").exists()
    job.thread.join(10)
    assert [t for t in threading.enumerate() if t.name.startswith("latent3d-")] == []


def test_every_tab_builds_the_command_line_a_user_would_type():
    """The forms' values become the CLI's own arguments: empty fields leave the command's defaults, whole numbers
    stay whole (a seed of 3.0 from a number box is ``--seed 3``), and each list parses as its command."""
    import typer

    from latent3d.app.ui import dream_args, object_args, rgbd_args, scene_args, world_args
    from latent3d.cli import app

    cases = [
        (rgbd_args("a cat", "", " 4 ", "", "", 3.0, "cpu"), ["rgbd", "a cat", "--steps", "4", "--seed", "3", "--device", "cpu"]),
        (world_args("a beach", None, None, "", "", "2.5", 0, "auto"), ["immersive", "a beach", "--guidance", "2.5", "--seed", "0", "--device", "auto"]),
        (world_args("ignored", "/x/rgb.png", "/x/d.png", "", "", "", 1, "cpu"), ["immersive", "--from", "/x/rgb.png", "/x/d.png", "--seed", "1", "--device", "cpu"]),
        (dream_args("a red snowman", "sds", "20", "", "blurry", "", 5, "cpu"), ["dream", "a red snowman", "--method", "sds", "--iters", "20", "--negative", "blurry", "--seed", "5", "--device", "cpu"]),
        (object_args("a chair", "object3d-tiny", 2.0, "", "", 0, "cpu"), ["object", "a chair", "--model", "object3d-tiny", "--n", "2", "--seed", "0", "--device", "cpu"]),
        (scene_args("vizdoom-tiny", 1, "8", "16", 7, "cpu"), ["scene", "--model", "vizdoom-tiny", "--n", "1", "--steps", "8", "--frames", "16", "--seed", "7", "--device", "cpu"]),
    ]  # fmt: skip
    root = typer.main.get_command(app)
    for got, expected in cases:
        assert got == expected
        cmd = root.get_command(None, got[0])
        ctx = cmd.make_context(got[0], list(got[1:]), resilient_parsing=True)
        assert ctx.params.get("seed") == int(expected[expected.index("--seed") + 1])
