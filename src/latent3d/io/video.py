"""Videos: H.264 MP4 through the ffmpeg binary imageio-ffmpeg ships, with an animated-GIF fallback; atomic."""

from __future__ import annotations

import os
import subprocess
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from latent3d.io.atomic import atomic_path
from latent3d.io.image import _to_numpy, to_uint8_image


def _ffmpeg_exe() -> str:
    """Path of a usable ffmpeg binary (imageio-ffmpeg's bundled one, or $IMAGEIO_FFMPEG_EXE); raises if none."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _frames_uint8(frames: Any) -> np.ndarray:  # -> [T, H, W, 3] uint8
    if isinstance(frames, (list, tuple)):
        items = list(frames)
    else:
        arr, _ = _to_numpy(frames)
        if arr.ndim != 4:
            raise ValueError(f"write_video: frames must be [T, H, W, 3] (or a list of images), got {arr.shape}")
        items = list(frames)  # keeps torch tensors as tensors so CHW detection works per frame
    if not items:
        raise ValueError("write_video: no frames")
    out = [to_uint8_image(f) for f in items]
    out = [np.repeat(f, 3, axis=-1) if f.shape[-1] == 1 else f[..., :3] for f in out]
    if len({f.shape for f in out}) != 1:
        raise ValueError(f"write_video: all frames must have the same size, got {sorted({f.shape for f in out})}")
    return np.stack(out)


def _pad_even(frames: np.ndarray) -> np.ndarray:  # [T, H, W, 3] -> [T, H', W', 3], H' and W' even
    """yuv420p needs even sizes: replicate the last row / column where H or W is odd."""
    _, h, w, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_mp4(tmp: Path, frames: np.ndarray, fps: float) -> None:  # frames: [T, H, W, 3] uint8, H and W even
    """Pipe raw RGB frames into ffmpeg (libx264, yuv420p, CRF 18); raise RuntimeError if ffmpeg fails."""
    _, h, w, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    cmd = [_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(rate), "-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18",
           "-movflags", "+faststart", str(tmp)]
    try:
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    except OSError as e:  # the binary cannot be started
        raise RuntimeError(f"cannot run ffmpeg: {e}") from e
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"ffmpeg exited with {proc.returncode}: {err[-1] if err else 'no message'}")


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    duration = max(20, int(round(1000.0 / fps)))  # ms; most viewers clamp anything shorter than 20 ms
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def write_video(path: str | os.PathLike,
                frames: Any,  # [T, H, W, 3] uint8 (or float in [0, 1]; or a list of images, HWC or CHW)
                fps: float = 24) -> Path:
    """Write frames as an H.264 MP4 (libx264, yuv420p; odd sizes padded to even), or a GIF for a ``.gif`` path.

    If ffmpeg is not usable, writes ``<path>.gif`` instead and warns (``RuntimeWarning``, one line). GIFs are
    palette-quantised and Pillow merges identical consecutive frames. Returns the path actually written.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"write_video: fps must be positive, got {fps}")
    video = _frames_uint8(frames)
    if path.suffix.lower() == ".gif":
        _write_gif(path, video, fps)
        return path
    try:
        with atomic_path(path) as tmp:
            _write_mp4(tmp, _pad_even(video), fps)
        return path
    except (ImportError, RuntimeError) as e:  # no ffmpeg, or it failed (e.g. built without libx264)
        gif = path.with_suffix(".gif")
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"ffmpeg not usable ({reason}); wrote GIF {gif} instead of {path}", RuntimeWarning,
                      stacklevel=2)
        _write_gif(gif, video, fps)
        return gif


def read_video(path: str | os.PathLike) -> np.ndarray:  # -> [T, H, W, 3] uint8
    """Read all frames of an MP4 (through imageio-ffmpeg) or a GIF (through Pillow), for tests and previews."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)
