"""How a command that failed ends: one line (``latent3d: error: ...``) and an exit code, for the command line
(:func:`latent3d.cli.main`) and for ``latent3d app``'s page alike."""

from __future__ import annotations

import typer

from latent3d.errors import UserError

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


def failure(e: BaseException) -> tuple[str, int] | None:
    """The one line (``latent3d: error: ...``, or ``latent3d: interrupted``) and exit code that the command line
    shows for ``e``; None for a bug (the traceback is shown). ``latent3d app`` shows the same line in the page."""
    if isinstance(e, _UsageError):
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `latent3d` / `latent3d train` alone
            return ctx.get_help(), 2
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return f"latent3d: error: {' '.join(e.format_message().split())}{where}", 2
    if isinstance(e, _ClickException):
        return f"latent3d: error: {' '.join(e.format_message().split())}", e.exit_code
    if isinstance(e, UserError):
        return f"latent3d: error: {' '.join(str(e).split())}", e.exit_code
    if isinstance(e, (MemoryError, RuntimeError)) and _out_of_memory(e):  # the last resort behind latent3d.memory
        return (f"latent3d: error: out of memory ({_allocator_line(e)}); lower the sizes or counts of the options, or "
                "free memory"), 2  # fmt: skip
    if isinstance(e, (typer.Abort, KeyboardInterrupt)):
        return "latent3d: interrupted", 130
    return None
