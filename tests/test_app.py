"""``latent3d app`` served for real: driven over HTTP by gradio_client (files equal to the CLI's, the CLI's error
lines, cancel, loopback only) and opened in headless Chromium (every tab renders, a 3D view is not blank, nothing
is fetched from the internet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_viewer import CHROMIUM, CHROMIUM_ARGS, free_port, serving

pytest.importorskip("gradio", reason="gradio is not installed: pip install -e .[app]")
gradio_client = pytest.importorskip("gradio_client")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
TIMING_KEYS = {"timings", "started_at", "threads_mean"}  # measurements of the run, beside keys ending in _s, _mb


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``latent3d app`` in a subprocess on a free port; yields (url, out folder, port)."""
    out = tmp_path_factory.mktemp("app") / "out"
    port = free_port()
    args = ["app", "--port", str(port), "--out", str(out), "--max-upload-mb", "1"]
    with serving(args, "latent3d app:", timeout=90) as line:
        assert line.startswith("latent3d app: http://127.0.0.1:"), f"the app did not start: {line!r}"
        yield line.split()[2], out, port


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    """A client that downloads every returned file over HTTP."""
    return gradio_client.Client(server[0], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def cli(args: list[str], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latent3d.cli", *args, "--out", str(out)], env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def without_timings(x):
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if k not in TIMING_KEYS and not k.endswith(("_s", "_mb"))}
    return [without_timings(v) for v in x] if isinstance(x, list) else x


def assert_same_file(a: Path, b: Path) -> None:
    """Byte-identical; run.json equal but for its timings."""
    if a.name == "run.json":
        assert without_timings(json.loads(a.read_bytes())) == without_timings(json.loads(b.read_bytes()))
    else:
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between the app and the CLI"


def assert_same_run(app_folder: Path, cli_folder: Path, downloads: list[str]) -> list[str]:
    """The app's run folder equals the CLI's file for file, and so does every file the page returned (downloaded
    over HTTP); returns the names compared."""
    names = sorted(str(p.relative_to(app_folder)) for p in app_folder.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(cli_folder)) for p in cli_folder.rglob("*") if p.is_file())
    for name in names:
        assert_same_file(app_folder / name, cli_folder / name)
    by_name = {Path(n).name: n for n in names}
    for d in downloads:
        assert_same_file(Path(d), cli_folder / by_name[Path(d).name])
    return names


def folder_of(status: str) -> Path:
    assert status.startswith("**done**"), status
    return Path(status.split("`")[1])


def test_listens_on_loopback_only(server):
    port = server[2]
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            rows += [r.split() for r in Path(table).read_text().splitlines()[1:]]
    listening = [r[1] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == port]
    assert listening and all(addr.split(":")[0] in ("0100007F", "00000000000000000000000001000000")
                             for addr in listening), listening  # fmt: skip


def test_rgbd_over_http_equals_the_cli(client, tmp_path):
    args = ["rgbd", "a red snowman on a blue floor", "--steps", "4", "--seed", "3"]
    res = client.predict("a red snowman on a blue floor", "", "4", "", "", 3, api_name="/rgbd")
    folder = folder_of(res[0])
    assert folder.name.startswith("rgbd-") and "snowman" not in str(folder)
    assert {Path(p).name for p in res[4]} == {"rgb.png", "depth.png", "depth_preview.png", "points.ply", "run.json"}
    assert Path(res[3]).suffix == ".glb"  # the point cloud's 3D view
    assert cli(args, tmp_path / "cli").returncode == 0
    assert_same_run(folder, tmp_path / "cli", [*res[4], res[1], res[2]])


def test_tiny_dream_over_http_equals_the_cli_and_shows_previews(client, tmp_path):
    job = client.submit("a red snowman", "ism", "20", "", "", "", 5, api_name="/dream")
    lines, previews = [], []
    while not job.done():
        line, image = client.predict(api_name="/progress")
        lines.append(line)
        if image is not None:
            previews.append(image)
        time.sleep(0.2)
    res = job.result(timeout=600)
    assert any("dream (ism): " in line and "/20" in line for line in lines), lines[-5:]
    assert previews, "no live preview of the views reached the page"
    folder = folder_of(res[0])
    assert Path(res[2]).name == "gaussians.ply" and Path(res[3]).name == "mesh.glb"
    done = cli(["dream", "a red snowman", "--method", "ism", "--iters", "20", "--seed", "5"], tmp_path / "cli")
    assert done.returncode == 0, done.stderr
    assert "gaussians.ply" in assert_same_run(folder, tmp_path / "cli", [*res[5], res[2], res[3], res[4]])


def test_errors_are_the_cli_lines_and_cancel_stops_a_job(client, server, tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    res = client.predict("a cat", str(bad), "2", "", "", 0, api_name="/rgbd")
    line = cli(["rgbd", "a cat", "--model", str(bad), "--steps", "2", "--seed", "0"], tmp_path / "c").stderr.strip()
    assert line.startswith("latent3d: error:") and res[0] == f"**error**: `{line}`"
    junk = tmp_path / "pano.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    upload = gradio_client.handle_file(str(junk))
    res = client.predict("", upload, upload, "", "", "", 0, api_name="/world")
    assert res[0].startswith("**error**: `latent3d: error:") and "pano.png" in res[0], res[0]
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1_200_000))  # over the server's 1 MB upload cap
    with pytest.raises(Exception, match="(?i)size|large|exceed"):
        client.predict("", gradio_client.handle_file(str(big)), upload, "", "", "", 0, api_name="/world")
    assert not any(p.name.startswith("big") for p in Path(server[1]).rglob("*"))
    job = client.submit("a red snowman", "ism", "1000", "", "", "", 0, api_name="/dream")
    end = time.monotonic() + 120
    while time.monotonic() < end and "dream (ism): " not in client.predict(api_name="/progress")[0]:
        time.sleep(0.2)
    client.predict(api_name="/dream_cancel")
    t0 = time.monotonic()
    while not job.done() and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    assert job.done() and time.monotonic() - t0 < 30, "cancel did not stop the dream"
    res = client.predict("a red snowman on a blue floor", "", "2", "", "", 0, api_name="/rgbd")  # the queue goes on
    assert res[0].startswith("**done**")


TABS = {"RGBD": "rgbd", "360° world": "world", "Text to 3D": "dream", "Objects": "object", "Scenes": "scene"}


def canvas_pixels(page, selector: str) -> np.ndarray:  # -> [H, W, 3] uint8
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"))


def test_every_tab_renders_in_chromium_and_a_3d_view_is_not_blank(server, tmp_path):
    """Every tab shows its form; an RGBD run started from the page fills the point-cloud view; the page asks
    nothing of the internet (offline: no fonts, analytics or scripts from elsewhere)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install the Debian package `chromium` (.ci/run does)")
    sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[dev]")
    url = server[0]
    outside = []
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                    else outside.append(r.url))  # fmt: skip
            page.goto(url, wait_until="load", timeout=60_000)
            for label, kind in [*list(TABS.items())[1:], ("RGBD", "rgbd")]:
                page.get_by_role("tab", name=label).click()
                page.locator(f"#{kind}-run").wait_for(state="visible", timeout=30_000)
            page.screenshot(path=str(tmp_path / "rgbd-tab.png"))
            page.locator("#rgbd-run").click()
            page.locator("#rgbd-status", has_text="done").or_(page.locator("#rgbd-status", has_text="error")).wait_for(
                timeout=180_000)
            status = page.locator("#rgbd-status").inner_text()
            assert status.startswith("done"), status
            canvas = "#rgbd-3d canvas"
            page.locator(canvas).first.wait_for(state="visible", timeout=30_000)
            end, img = time.monotonic() + 60, None
            while time.monotonic() < end:
                img = canvas_pixels(page, canvas)
                if img.reshape(-1, 3).std(axis=0).mean() > 8:
                    break
                time.sleep(0.5)
            page.screenshot(path=str(tmp_path / "rgbd-done.png"))
        finally:
            browser.close()
    assert img is not None and img.reshape(-1, 3).std(axis=0).mean() > 8, "the point cloud view is blank"
    colours = img.reshape(-1, 3).astype(int)
    assert (np.abs(colours - np.median(colours, axis=0)).sum(-1) > 60).mean() > 0.002, "no points drawn"
    assert outside == [], f"the page fetched from outside this machine: {outside[:5]}"
