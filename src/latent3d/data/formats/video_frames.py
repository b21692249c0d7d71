"""Monocular videos as folders of frames, 3DVADER's articulated data (arXiv 2307.05445, Sec. 3):

    DIR/<video>/00000.png, 00001.png, ...   RGB frames (any size, the same for every frame), numbered
    DIR/<video>/masks/00000.png, ...        optional: the object's mask of each frame (white = object)
    DIR/<video>/caption.txt                 optional: what the video shows ("a blue desk lamp")
    DIR/<video>/eval/                       optional: ground truth kept aside for evaluation (never read here)

A real video becomes this layout with ``ffmpeg -i clip.mp4 DIR/clip/%05d.png``. The reader keeps every path inside
the dataset folder and turns each bad file (not an image, a frame of another size, a mask without its frame, a
caption that is not text) into one :class:`~latent3d.errors.UserError` naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latent3d.errors import UserError

FRAME = re.compile(r"^(\d{1,8})\.png$")
_LAYOUT = "a video folder holds numbered frames 00000.png, 00001.png, ... (optional masks/ with the same names)"


@dataclass
class VideoFrames:
    """One video: frames ``[F, H, W, 3]`` uint8, masks ``[F, H, W]`` bool or None, frame file names, caption."""

    folder: Path
    frames: np.ndarray
    masks: np.ndarray | None
    names: list[str]
    caption: str | None = None


def frame_names(folder: Path) -> list[str]:
    """The numbered PNG frames of ``folder`` in frame order (by number, not by text)."""
    found = [(int(m.group(1)), p.name) for p in folder.iterdir() if (m := FRAME.match(p.name))]
    return [name for _, name in sorted(found)]


def write_video_folder(folder: str | os.PathLike, frames: np.ndarray, masks: np.ndarray | None = None,
                       caption: str | None = None) -> Path:  # fmt: skip
    """Write ``frames`` [F, H, W, 3] uint8 (and ``masks`` [F, H, W] bool) in the layout above, atomically."""
    from latent3d.io.atomic import write_text
    from latent3d.io.image import save_image

    folder = Path(folder)
    for i, img in enumerate(frames):
        save_image(folder / f"{i:05d}.png", img)
        if masks is not None:
            save_image(folder / "masks" / f"{i:05d}.png", (masks[i].astype(np.uint8) * 255)[..., None].repeat(3, -1))
    if caption is not None:
        write_text(folder / "caption.txt", caption + "\n")
    return folder


def read_video_folder(folder: str | os.PathLike, root: str | os.PathLike | None = None) -> VideoFrames:
    """One video folder (layout above); links that leave ``root`` (default: the folder) are refused first."""
    from latent3d.io.files import read_regular_bytes, walk_inside
    from latent3d.io.image import read_pil_array

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; {_LAYOUT}")
    walk_inside(folder, root if root is not None else folder)
    names = frame_names(folder)
    if not names:
        raise UserError(f"{folder}: no numbered frames; {_LAYOUT}")
    frames = [read_pil_array(folder / n, "RGB", "video frame")[0] for n in names]
    shape = frames[0].shape
    for n, f in zip(names, frames):
        if f.shape != shape:
            raise UserError(f"{folder / n}: the frame is {f.shape[1]}x{f.shape[0]}, the video's first frame "
                            f"{shape[1]}x{shape[0]}; every frame of a video has one size")  # fmt: skip
    masks = None
    if (folder / "masks").is_dir():
        extra = sorted(set(frame_names(folder / "masks")) - set(names))
        if extra:
            raise UserError(f"{folder / 'masks' / extra[0]}: a mask without its frame {extra[0]} in {folder}")
        masks = []
        for n in names:
            if not (folder / "masks" / n).exists():
                raise UserError(f"{folder / 'masks' / n}: missing; masks/ holds one mask per frame, or none at all")
            m = read_pil_array(folder / "masks" / n, "L", "mask")[0]
            if m.shape != shape[:2]:
                raise UserError(f"{folder / 'masks' / n}: the mask is {m.shape[1]}x{m.shape[0]}, its frame "
                                f"{shape[1]}x{shape[0]}")  # fmt: skip
            masks.append(m >= 128)
    caption = None
    if (folder / "caption.txt").exists():
        raw = read_regular_bytes(folder / "caption.txt", "caption")
        try:
            caption = " ".join(raw.decode("utf-8").split()) or None
        except UnicodeDecodeError:
            raise UserError(f"{folder / 'caption.txt'}: not UTF-8 text; write the caption as plain text") from None
    return VideoFrames(folder, np.stack(frames), None if masks is None else np.stack(masks), names, caption)


def list_video_folders(root: str | os.PathLike) -> list[Path]:
    """The video folders of a dataset (sub-folders of ``root`` that hold numbered frames), sorted by name; a link
    that leads out of ``root`` is refused before anything behind it is listed."""
    from latent3d.io.files import walk_inside

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; pass a folder of video folders (DIR/<video>/00000.png ...)")
    walk_inside(root, root)
    if frame_names(root):
        raise UserError(f"{root} is a single video folder; pass the folder that holds the video folders")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and frame_names(p))
    if not folders:
        raise UserError(f"{root}: no video folders inside; {_LAYOUT}")
    return folders
