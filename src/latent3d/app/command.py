"""``latent3d app``: the local web page (gradio, ``pip install latent3d[app]``) over every system's command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from latent3d.errors import UserError
from latent3d.options import DeviceOpt, OutOpt, SeedOpt
from latent3d.ranges import Range

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def app_cmd(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", callback=Range(0, 65535), help="TCP port (0: the first free one from 7860).")] = 7860,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but 127.0.0.1 lets other machines on your network use this app (one warning line).")] = "127.0.0.1",
    out: OutOpt = Path("out/app"),
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", callback=Range(1, 4096), help="Uploads larger than this many MB are refused by the server before any reader sees them.")] = 64,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in your browser.")] = False,
) -> None:
    """Serve one web page to run every system (RGBD, 360° world, Text to 3D, Objects, Scenes) with live progress,
    cancel and 3D previews; each run writes the same folder as its command under --out."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("latent3d app needs gradio: pip install 'latent3d[app]'") from None
    if host not in LOOPBACK:
        print(f"latent3d app: warning: listening on {host}: other machines can reach this app and run jobs on it",
              file=sys.stderr)  # fmt: skip
    from latent3d.app.jobs import JobRunner
    from latent3d.app.ui import build, theme
    from latent3d.runtime import resolve_device

    resolve_device(device)  # a device this machine lacks is one line now, not an error in every job
    runner = JobRunner(ctx.find_root().command, out)
    demo = build(runner, seed=seed, device=device)
    demo.queue(default_concurrency_limit=1, max_size=32)
    try:
        _, url, _ = demo.launch(server_name=host, server_port=port or None, share=False, inbrowser=open_browser,
                                prevent_thread_lock=True, quiet=True, allowed_paths=[str(Path(out).resolve())],
                                max_file_size=f"{max_upload_mb}mb", theme=theme(), ssr_mode=False,
                                footer_links=["api", "settings"], mcp_server=False)  # fmt: skip
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({' '.join(str(e).split())}); choose another --port") from None
    print(f"latent3d app: {url} (runs under {Path(out).resolve()}; Ctrl+C stops)", flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()
