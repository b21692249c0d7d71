"""``latent3d view``: the world opens in a real headless Chromium (WebGL through SwiftShader) and is not blank."""

from __future__ import annotations

import contextlib
import io
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from latent3d.errors import UserError
from latent3d.render.sphere import build_displaced_sphere, export_world_glb

CHROMIUM = os.environ.get("LATENT3D_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
VIEWPORT = (800, 600)


def two_tone_world(folder: Path) -> Path:
    """A world whose upper half is blue sky with white stripes and lower half orange ground with dark stripes, so a
    correct view from the centre (looking at the horizon) is blue on top and orange below."""
    h, w = 64, 128
    lon = torch.linspace(0, 16 * math.pi, w)
    stripes = (torch.sin(lon) > 0).float()[None, :, None]  # [1, W, 1]
    sky = torch.tensor([0.15, 0.35, 0.95]) * (1 - stripes) + stripes
    ground = torch.tensor([0.95, 0.55, 0.1]) * (1 - 0.7 * stripes)
    rgb = torch.cat([sky.expand(h // 2, w, 3), ground.expand(h // 2, w, 3)], dim=0)
    depth = torch.linspace(0.0, 1.0, h)[:, None].expand(h, w)  # the ground comes nearer towards the feet
    return export_world_glb(folder / "world.glb", build_displaced_sphere(rgb, depth, 64, 32))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(args: list[str], banner: str, timeout: float = 60.0):
    """``python -m latent3d.cli ARGS`` in a subprocess (one thread); yields the first stdout line starting with
    ``banner`` ("" if none came within ``timeout``) and stops the process on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "latent3d.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                     "GRADIO_ANALYTICS_ENABLED": "False"})  # fmt: skip
    try:
        line, end = "", time.monotonic() + timeout
        while not line.startswith(banner) and time.monotonic() < end and proc.poll() is None:
            line = proc.stdout.readline()
        yield line if line.startswith(banner) else ""
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def screenshot_until(url: str, ready, timeout: float = 60.0) -> np.ndarray:  # -> [H, W, 3] uint8
    """Open ``url`` in headless Chromium and take screenshots until ``ready(image)`` or the timeout."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]})
            page.goto(url, wait_until="load", timeout=int(timeout * 1000))
            page.wait_for_selector("canvas", timeout=int(timeout * 1000))
            end = time.monotonic() + timeout
            while True:
                img = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
                if ready(img) or time.monotonic() > end:
                    return img
                time.sleep(0.5)
        finally:
            browser.close()


def regions(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two patches of the canvas clear of viser's panels (control panel top right, notices top left, axes bottom
    left): above the horizon (rows 30-45 %) and below it (rows 62-90 %), columns 8-55 %."""
    h, w, _ = img.shape
    cols = slice(int(0.08 * w), int(0.55 * w))
    return (img[int(0.30 * h) : int(0.45 * h), cols].astype(float),
            img[int(0.62 * h) : int(0.90 * h), cols].astype(float))


def world_visible(img: np.ndarray) -> bool:
    top, bottom = regions(img)
    sky = top[..., 2].mean() > top[..., 0].mean() + 40  # blue above the horizon
    ground = bottom[..., 0].mean() > bottom[..., 2].mean() + 40  # orange below it
    return bool(sky and ground and top.std() > 10 and bottom.std() > 10)


def test_view_serves_world_to_real_chromium(tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install the Debian package `chromium` (.ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[dev]")
    pytest.importorskip("viser", reason="viser is not installed: pip install -e .")
    two_tone_world(tmp_path)
    port = free_port()
    with serving(["view", str(tmp_path), "--port", str(port)], "latent3d view:") as line:
        assert "http://127.0.0.1:" in line, f"viewer did not start: {line!r}"
        url = line[line.index("http://") :].split()[0].rstrip(";")
        assert url.startswith("http://127.0.0.1:")  # bound to the loopback interface only
        img = screenshot_until(url, world_visible)
    top, bottom = regions(img)
    pixels = np.concatenate([top.reshape(-1, 3), bottom.reshape(-1, 3)])
    assert pixels.std(axis=0).mean() > 20, "the canvas is blank"
    assert world_visible(img), (top.mean(axis=(0, 1)), bottom.mean(axis=(0, 1)), top.std(), bottom.std())


def test_viewer_loads_splats_and_meshes_without_a_browser(tmp_path):
    """gaussians.ply and mesh.glb are served too (no browser needed); covariances follow the PLY's scales."""
    pytest.importorskip("viser", reason="viser is not installed: pip install -e .")
    from latent3d.io.mesh import export_mesh
    from latent3d.io.ply import GaussianPLY, write_gaussian_ply
    from latent3d.viewer import find_assets, gaussian_splat_arrays, start_viewer

    with pytest.raises(UserError, match="nothing to view"):
        find_assets(tmp_path)
    n = 5
    quats = np.tile([[math.cos(math.pi / 8), 0.0, 0.0, math.sin(math.pi / 8)]], (n, 1))  # 45 deg about z
    g = GaussianPLY(means=np.random.default_rng(0).normal(size=(n, 3)), sh=np.zeros((n, 1, 3)),
                    opacity_logits=np.zeros(n), log_scales=np.log(np.tile([[0.2, 0.1, 0.05]], (n, 1))), quats=quats)
    write_gaussian_ply(tmp_path / "gaussians.ply", g)
    export_mesh(tmp_path / "mesh.glb", np.eye(3), np.array([[0, 1, 2]]), vertex_colors=np.eye(3))
    arrays = gaussian_splat_arrays(tmp_path / "gaussians.ply")
    c = arrays["covariances"][0]
    assert np.allclose(np.linalg.eigvalsh(c), sorted([0.05**2, 0.1**2, 0.2**2]), atol=1e-6)
    axis = np.linalg.eigh(c)[1][:, -1]  # the long axis (scale 0.2 along local x) turned 45 deg about z
    assert abs(abs(axis @ np.array([1.0, 1.0, 0.0]) / math.sqrt(2)) - 1.0) < 1e-5
    assert np.allclose(arrays["rgbs"], 0.5) and np.allclose(arrays["opacities"], 0.5)
    assert find_assets(tmp_path).names == ["mesh.glb", "gaussians.ply"]
    server = start_viewer(tmp_path, port=free_port())
    try:
        assert server.get_port() > 0
    finally:
        server.stop()
