"""Bad command lines (issue 13), table-driven: each exits 2 with exactly one `latent3d: error:` line on stderr (so no
traceback and no weight-loading progress bar before it) and writes nothing under --out."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latent3d.cli import main


def _ply(path, n=3, nan=False):
    from latent3d.io.ply import GaussianPLY, write_gaussian_ply

    g = GaussianPLY(means=np.zeros((n, 3), np.float32), sh=np.full((n, 1, 3), 0.5, np.float32),
                    opacity_logits=np.zeros(n, np.float32), log_scales=np.full((n, 3), -3.0, np.float32),
                    quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)))  # fmt: skip
    if nan:
        g.means[-1] = np.nan
    return str(write_gaussian_ply(path, g))


def _png(path, h, w):
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    return str(path)


def _broken_prior(tmp, tiny_sd_dir):
    import shutil

    dst = tmp / "broken_prior"
    shutil.copytree(tiny_sd_dir, dst)
    for f in (dst / "unet").glob("*.safetensors"):
        f.unlink()
    return str(dst)


# (name, argv builder(tmp, out) -> argv, what the error line must mention)
CASES = [
    ("seed_2_70", lambda t, o: ["dream", "a red snowman", "--out", o, "--seed", str(2**70)], "--seed"),
    ("seed_negative", lambda t, o: ["sample", "a red snowman", "--out", o, "--seed", "-1"], "--seed"),
    ("out_is_a_file", lambda t, o: ["sample", "a red snowman", "--out", _png(t / "f.png", 2, 2)], "not a folder"),
    ("out_in_proc", lambda t, o: ["rgbd", "a blue sphere", "--out", "/proc/latent3d_x"], "cannot be written"),
    ("out_in_sys", lambda t, o: ["dream", "a red snowman", "--out", "/sys/kernel/latent3d_x"], "cannot be written"),
    ("guidance_nan", lambda t, o: ["dream", "a red snowman", "--out", o, "--guidance", "nan"], "--guidance"),
    ("guidance_inf", lambda t, o: ["sample", "a red snowman", "--out", o, "--guidance", "inf"], "--guidance"),
    ("guidance_negative", lambda t, o: ["rgbd", "a blue sphere", "--out", o, "--guidance", "-5"], "--guidance"),
    ("ipd_nan", lambda t, o: ["immersive", "a beach", "--out", o, "--ipd", "nan"], "--ipd"),
    ("unknown_option", lambda t, o: ["dream", "a red snowman", "--out", o, "--bogus"], "--bogus"),
    ("init_empty_ply", lambda t, o: ["dream", "a red snowman", "--out", o, "--init", _ply(t / "e.ply", 0)], "0 Gaussians"),
    ("init_nan_ply", lambda t, o: ["dream", "a red snowman", "--out", o, "--init", _ply(t / "n.ply", nan=True)], "NaN"),
    ("pano_1x2", lambda t, o: ["immersive", "--out", o, "--from", _png(t / "r.png", 1, 2), _png(t / "d.png", 1, 2)],
     "too small"),
    ("sample_huge_size", lambda t, o: ["sample", "a red snowman", "--out", o, "--size", "262144"], "--size"),
    ("sample_huge_batch", lambda t, o: ["sample", "a red snowman", "--out", o, "--size", "4096", "--n", "1024"],
     "GB free"),
    ("rgbd_huge_size", lambda t, o: ["rgbd", "a blue sphere", "--out", o, "--size", "99996x99996", "--steps", "1"],
     "GB free"),
]


@pytest.mark.parametrize("name,build,mention", CASES, ids=[c[0] for c in CASES])
def test_bad_command_line_is_one_error_line_and_writes_nothing(tmp_path, capsys, name, build, mention):
    out = tmp_path / "out"
    argv = build(tmp_path, str(out))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("latent3d: error: "), err
    assert mention in lines[0] and "Traceback" not in err
    assert not out.exists()


def test_a_broken_local_prior_folder_is_one_line_about_the_folder(tmp_path, capsys, tiny_sd_dir):
    folder = _broken_prior(tmp_path, tiny_sd_dir)
    assert main(["sample", "a red snowman", "--out", str(tmp_path / "o"), "--prior", folder, "--n", "1"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("latent3d: error: ") and folder in last and "hf download" not in last
    assert "Traceback" not in err and not (tmp_path / "o").exists(), err


def test_a_decompression_bomb_panorama_is_refused_from_its_header(tmp_path, capsys, monkeypatch):
    import latent3d.io.image as image_io

    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 64 * 32 - 1)  # stands in for a 20000x10000 file
    argv = ["immersive", "--out", str(tmp_path / "o"), "--from", _png(tmp_path / "r.png", 32, 64),
            _png(tmp_path / "d.png", 32, 64)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "more than latent3d reads" in err[0] and not (tmp_path / "o").exists()
