"""``build_world`` and ``latent3d immersive --from``: every file written, consistent with the renderers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latent3d.cli import main
from latent3d.data.procedural.raycast import render_equirect
from latent3d.data.procedural.scenes import make_scene
from latent3d.io.depth import (
    depth_to_disparity,
    dequantize_depth,
    quantize_depth,
    read_depth_png16,
    write_depth_png16,
)
from latent3d.io.image import load_image, save_image
from latent3d.io.video import read_video
from latent3d.render.sphere import build_displaced_sphere
from latent3d.render.stereo import render_ods
from latent3d.systems.depthfusion.world import WorldConfig, build_world
from latent3d.systems.depthfusion.sources import load_depth_image
from tolerances import EPS32

SMALL = ["--resolution", "32", "--stereo-width", "128", "--tour-seconds", "0.2"]


@pytest.fixture(scope="module")
def beach_files(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The beach scene as an RGB PNG + 16-bit disparity PNG pair, like an LDM3D-pano output."""
    scene = make_scene("beach", seed=0)
    r = render_equirect(scene, scene.eye, 128, 64)
    folder = tmp_path_factory.mktemp("pano")
    save_image(folder / "rgb.png", r.rgb[0])
    d16 = quantize_depth(depth_to_disparity(r.distance[0])).numpy()
    write_depth_png16(folder / "depth.png", d16)
    return folder / "rgb.png", folder / "depth.png", load_image(folder / "rgb.png"), dequantize_depth(d16)


def test_build_world_writes_consistent_outputs(tmp_path, beach_files):
    _, _, rgb, disp = beach_files
    cfg = WorldConfig(sphere_lon=32, sphere_lat=16, stereo_width=128, view_size=32, tour_seconds=0.4, tour_fps=10)
    run = build_world(rgb, disp, tmp_path, cfg, progress=False)
    names = ["pano_rgb.png", "pano_depth.png", "world.glb", "stereo_tb.png", "anaglyph.png", "parallax.png",
             "tour.mp4", "run.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # nothing else (no temp files left)
    assert run["files"] == names and json.loads((tmp_path / "run.json").read_text())["config"]["sphere_lon"] == 32
    assert set(run["timings"]) >= {"sphere_s", "stereo_s", "parallax_s", "tour_s"}
    np.testing.assert_array_equal(load_image(tmp_path / "pano_rgb.png"), rgb)
    np.testing.assert_array_equal(read_depth_png16(tmp_path / "pano_depth.png"), quantize_depth(disp))
    # stereo_tb.png is the ODS pair of the same sphere, left eye on top
    tb = np.asarray(Image.open(tmp_path / "stereo_tb.png"))
    assert tb.shape == (128, 128, 3)
    sphere = build_displaced_sphere(torch.from_numpy(rgb), torch.from_numpy(disp), 32, 16)
    left, right = render_ods(sphere, 128, 64, cfg.ipd)
    for half, eye in ((tb[:64], left), (tb[64:], right)):
        # the same float32 render quantised to 8 bits by two code paths: a value within round-off of a .5 step may
        # round either way, so 1 level (of 255) is the bound; a different eye or sphere differs by tens of levels
        assert np.abs(half.astype(int) - (eye.numpy() * 255).round().astype(int)).max() <= 1
    assert not np.array_equal(tb[:64], tb[64:])  # the eyes really differ
    ana = np.asarray(Image.open(tmp_path / "anaglyph.png"))
    np.testing.assert_array_equal(ana[..., 1:], tb[64:, :, 1:])  # green/blue from the right eye
    # the parallax strip: left, centre, right views differ; the tour has 4 frames of 32^2 that move
    strip = np.asarray(Image.open(tmp_path / "parallax.png")).astype(int)
    cells = [strip[2:34, 2 + k * 34 : 34 + k * 34] for k in range(3)]
    # "differ" = a mean of more than 1 level of 255 (measured 12.9 and 11.2, identical on all kernel sets; equal views
    # differ by 0)
    assert np.abs(cells[0] - cells[1]).mean() > 1 and np.abs(cells[2] - cells[1]).mean() > 1
    frames = read_video(tmp_path / "tour.mp4")
    assert frames.shape == (4, 32, 32, 3) and np.abs(frames[1].astype(int) - frames[0]).mean() > 1  # measured 24.2


def test_cli_from_files(tmp_path, beach_files, capsys):
    rgb_path, depth_path, _, _ = beach_files
    out = tmp_path / "world"
    assert main(["immersive", "--from", str(rgb_path), str(depth_path), "--out", str(out), *SMALL]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["source"]["source"] == "files" and run["config"]["sphere_lat"] == 16
    assert run["stereo"]["eye_size"] == [128, 64]
    assert (out / "world.glb").stat().st_size > 1000 and "wrote" in capsys.readouterr().out
    # an 8-bit greyscale depth works too, and the same seed gives the same bytes
    Image.fromarray((np.asarray(Image.open(depth_path)) >> 8).astype(np.uint8)).save(tmp_path / "d8.png")
    for k in range(2):
        assert main(["immersive", "--from", str(rgb_path), str(tmp_path / "d8.png"), "--out",
                     str(tmp_path / f"w8_{k}"), *SMALL]) == 0
    assert (tmp_path / "w8_0/stereo_tb.png").read_bytes() == (tmp_path / "w8_1/stereo_tb.png").read_bytes()


def test_depth_image_formats(tmp_path):
    d = np.linspace(0, 1, 64 * 32).reshape(32, 64)
    write_depth_png16(tmp_path / "d16.png", quantize_depth(d))
    Image.fromarray((d * 255).round().astype(np.uint8)).save(tmp_path / "d8.png")
    Image.fromarray(np.repeat((d * 255).round().astype(np.uint8)[..., None], 3, -1)).save(tmp_path / "grey.png")
    u16 = quantize_depth(d).astype(np.int64)
    packed = np.stack([u16 * 0, u16 >> 8, u16 & 255], -1).astype(np.uint8)  # LDM3D's RGB packing
    Image.fromarray(packed).save(tmp_path / "packed.png")
    # quantisation to 16 bits: |d - q / 65535| <= 0.5 / 65535 (measured exactly that), plus float32 rounding
    assert np.abs(load_depth_image(tmp_path / "d16.png") - d).max() < 0.5 / 65535 + 2 * EPS32
    assert np.abs(load_depth_image(tmp_path / "packed.png") - d).max() < 0.5 / 65535 + 2 * EPS32
    for name in ("d8.png", "grey.png"):  # 8 bits: <= 0.5 / 255
        assert np.abs(load_depth_image(tmp_path / name) - d).max() < 0.5 / 255 + 2 * EPS32


@pytest.mark.parametrize("argv, needle", [
    (["immersive", "a beach at sunset", "--model", "/no/such/model"], "neither a folder"),
    (["immersive"], "--from"),
    (["immersive", "--from", "/no/rgb.png", "/no/depth.png"], "not found"),
    (["immersive", "--from", "RGB", "DEPTH", "--strength", "1.5"], "--strength"),
    (["immersive", "--from", "RGB", "DEPTH", "--resolution", "7"], "--resolution"),
    (["immersive", "--from", "RGB", "SQUARE"], "2:1"),
    (["immersive", "--from", "SQUARE", "DEPTH"], "twice as wide"),
    (["immersive", "--from", "RGB", "RGB"], "colour image"),
    (["view", "/no/such/folder"], "not a folder"),
    (["view", "EMPTY"], "nothing to view"),
])  # fmt: skip
def test_user_errors_are_one_line(tmp_path, beach_files, capsys, argv, needle):
    rgb_path, depth_path, _, _ = beach_files
    Image.new("L", (40, 40)).save(tmp_path / "square.png")
    (tmp_path / "empty").mkdir()
    subs = {"RGB": str(rgb_path), "DEPTH": str(depth_path), "SQUARE": str(tmp_path / "square.png"),
            "EMPTY": str(tmp_path / "empty")}
    code = main([subs.get(a, a) for a in argv] + ["--out", str(tmp_path / "o")] * (argv[0] == "immersive"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing half-written
