"""The app's jobs: one CLI command at a time, run in this process, watched and cancellable.

A job is the argument list of a ``latent3d`` command (the app adds nothing the command line cannot say) run by the
command line's own root command (click) in a worker thread under :func:`latent3d.progress.listening`. Each job writes a new run
folder ``OUT/<kind>-NNNN`` (numbered, never named after a prompt). A mistake ends the job with the very line the
command line prints (:func:`latent3d.exits.failure`).
"""

from __future__ import annotations

import re
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from latent3d.exits import failure
from latent3d.progress import Cancelled, Listener, Snapshot, listening

KINDS = ("rgbd", "world", "dream", "object", "scene")


@dataclass
class Job:
    """A command running (or done) in a worker thread."""

    kind: str
    argv: list[str]
    folder: Path
    listener: Listener
    thread: threading.Thread | None = None
    error: str | None = None  # the one line of a failed job
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def ok(self) -> bool:
        return self.done.is_set() and self.error is None and not self.cancelled

    def cancel(self) -> None:
        self.listener.cancel()

    def watch(self, every: float = 0.25) -> Iterator[Snapshot]:
        """Snapshots of the job's progress every ``every`` seconds until it ends (then one last snapshot)."""
        while not self.done.wait(every):
            yield self.listener.snapshot()
        yield self.listener.snapshot()


def next_folder(root: Path, kind: str) -> Path:
    """A new, empty ``root/<kind>-NNNN`` (the next free number; created here so two jobs never share one)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    root.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"^{kind}-(\d{{4,}})$")
    taken = [int(m.group(1)) for p in root.iterdir() if (m := pattern.match(p.name))]
    k = max(taken, default=0) + 1
    while True:
        folder = root / f"{kind}-{k:04d}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            k += 1


class JobRunner:
    """Starts jobs one at a time: a job waits until the previous one (finished or cancelled) has left its thread.
    ``command`` is the ``latent3d`` root command (``typer.main.get_command(latent3d.cli.app)``, or the context's
    root inside ``latent3d app``)."""

    def __init__(self, command: Any, out: Path, preview_every: int = 10):
        self.command = command
        self.out = Path(out)
        self.preview_every = preview_every
        self._slot = threading.Lock()
        self.current: Job | None = None

    def cancel_current(self) -> None:
        """Stop the job that runs now (the page's Cancel button)."""
        if self.current is not None:
            self.current.cancel()

    def start(self, kind: str, args: list[str]) -> Job:
        """Run ``latent3d <args> --out <new folder>`` (``args`` without ``--out``) in a worker thread."""
        folder = next_folder(self.out, kind)
        job = Job(kind, [*args, "--out", str(folder)], folder, Listener(preview_every=self.preview_every))
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"latent3d-{kind}", daemon=True)
        job.thread.start()
        return job

    def _run(self, job: Job) -> None:
        with self._slot:
            self.current = job
            try:
                if job.listener.cancelled:
                    raise Cancelled("cancelled")
                with listening(job.listener):
                    rv = self.command.main(args=job.argv, prog_name="latent3d", standalone_mode=False)
                if isinstance(rv, int) and rv != 0:  # typer.Exit(code) inside a command
                    job.error = f"latent3d: error: the command ended with exit code {rv}"
            except Cancelled:
                job.cancelled = True
            except BaseException as e:  # noqa: BLE001 -- every failure ends the job with one line
                said = failure(e)
                if said is None:
                    traceback.print_exc()
                    said = (f"latent3d: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]}", 1)
                job.error = said[0]
            finally:
                job.done.set()
