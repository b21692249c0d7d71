"""`immersive --from`: every file problem is one UserError before anything is written, and every assumption made about
the depth image is a warning line recorded in the notes (issue 13)."""

import numpy as np
import pytest
from PIL import Image

from latent3d.errors import UserError
from latent3d.systems.depthfusion.sources import load_panorama


def _save(path, arr, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


def _pano(h=16):
    yy, xx = np.mgrid[0:h, 0 : 2 * h]
    rgb = np.stack([xx * 255 // (2 * h), yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
    depth = (yy * 65535 // (h - 1)).astype(np.uint16)  # a vertical ramp of disparity
    return rgb, depth


def test_a_16bit_png_pair_loads_without_notes(tmp_path):
    rgb, depth = _pano()
    r, d, notes = load_panorama(_save(tmp_path / "rgb.png", rgb), _save(tmp_path / "d.png", depth))
    assert notes == [] and np.array_equal((r * 255).round(), rgb) and np.array_equal((d * 65535).round(), depth)


def test_assumptions_become_one_warning_each(tmp_path, capsys):
    rgb, depth = _pano()
    rgb_p = _save(tmp_path / "rgb.png", rgb)
    d8 = (depth >> 8).astype(np.uint8)
    cases = {
        "8-bit": _save(tmp_path / "d8.png", d8),
        "JPEG": _save(tmp_path / "d.jpg", d8, quality=90),
        "constant": _save(tmp_path / "c.png", np.full_like(depth, 30000)),
        "resized": _save(tmp_path / "small.png", depth[::2, ::2].copy()),
    }
    for word, path in cases.items():
        _, d, notes = load_panorama(rgb_p, path)
        assert any(word in n for n in notes), (word, notes)
        assert d.shape == depth.shape and np.isfinite(d).all()
        err = capsys.readouterr().err
        assert err.count("latent3d: warning:") == len(notes) and word in err


@pytest.mark.parametrize("make", ["tiny", "not_2to1", "colour_depth", "garbage", "folder", "huge"])
def test_bad_panorama_files_are_one_user_error(tmp_path, monkeypatch, make):
    import latent3d.io.image as image_io

    rgb, depth = _pano()
    rgb_p, d_p = _save(tmp_path / "rgb.png", rgb), _save(tmp_path / "d.png", depth)
    if make == "tiny":  # 2x1: the case that used to fail inside the sphere builder
        rgb_p = _save(tmp_path / "t.png", rgb[:1, :2].copy())
    elif make == "not_2to1":
        rgb_p = _save(tmp_path / "sq.png", rgb[:, :16].copy())
    elif make == "colour_depth":
        d_p = _save(tmp_path / "cd.png", rgb)
    elif make == "garbage":
        d_p = tmp_path / "g.png"
        d_p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    elif make == "folder":
        d_p = tmp_path
    else:  # a decompression bomb: refused from the header, before decoding
        monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 16 * 16)
    with pytest.raises(UserError) as e:
        load_panorama(rgb_p, d_p)
    assert "\n" not in str(e.value)
