"""The page of ``latent3d app`` (gradio): one tab per system, each a form that becomes the argument list of the
matching ``latent3d`` command (:mod:`latent3d.app.jobs` runs it), and the command's files shown and offered for
download. Nothing here computes: what a tab shows is what the command wrote.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from latent3d.app.jobs import Job, JobRunner

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # a font name here fetches nothing (no Google Fonts)
MONO_FONTS = ["ui-monospace", "monospace"]
JOB_SLOT = "latent3d-job"  # every tab's run shares one queue slot: one job at a time


def gradio():
    """gradio, imported on first use (importing latent3d stays light) with its analytics and version check off."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    return gr


def theme():
    """gradio's default look with the system's fonts (its own theme would load Google Fonts)."""
    return gradio().themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def _opt(flag: str, value) -> list[str]:
    """``["--flag", "value"]``, or nothing for an empty field (the command's default then holds)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, float) and value.is_integer() and flag in INT_FLAGS:
        value = int(value)
    return [flag, str(value).strip()]


INT_FLAGS = {"--seed", "--steps", "--iters", "--n", "--frames"}


def rgbd_args(prompt: str, model: str, steps, guidance, negative: str, seed, device: str) -> list[str]:
    return ["rgbd", prompt, *_opt("--model", model), *_opt("--steps", steps), *_opt("--guidance", guidance),
            *_opt("--negative", negative), *_opt("--seed", seed), *_opt("--device", device)]


def world_args(prompt: str, rgb: str | None, depth: str | None, model: str, steps, guidance, seed,
               device: str) -> list[str]:  # fmt: skip
    source = ["--from", rgb or "", depth or ""] if rgb or depth else [prompt]  # one upload alone: the reader says
    return ["immersive", *source, *_opt("--model", model), *_opt("--steps", steps), *_opt("--guidance", guidance),
            *_opt("--seed", seed), *_opt("--device", device)]


def dream_args(prompt: str, method: str, iters, guidance, negative: str, prior: str, seed, device: str) -> list[str]:
    return ["dream", prompt, *_opt("--method", method), *_opt("--iters", iters), *_opt("--guidance", guidance),
            *_opt("--negative", negative), *_opt("--prior", prior), *_opt("--seed", seed), *_opt("--device", device)]


def object_args(prompt: str, model: str, n, steps, guidance, seed, device: str) -> list[str]:
    return ["object", prompt, *_opt("--model", model), *_opt("--n", n), *_opt("--steps", steps),
            *_opt("--guidance", guidance), *_opt("--seed", seed), *_opt("--device", device)]


def scene_args(model: str, n, steps, frames, seed, device: str) -> list[str]:
    return ["scene", *_opt("--model", model), *_opt("--n", n), *_opt("--steps", steps), *_opt("--frames", frames),
            *_opt("--seed", seed), *_opt("--device", device)]


def files_of(folder: Path) -> list[str]:
    """Every file a run wrote, for the download list (sorted, run.json first)."""
    files = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [str(p) for p in sorted(files, key=lambda p: (p.name != "run.json", str(p)))]


def point_cloud_glb(ply: Path, scratch: Path) -> str:
    """The RGBD tab's 3D view: points.ply as a glTF point cloud (gradio's 3D view reads any .ply as splats)."""
    import numpy as np
    import trimesh
    from plyfile import PlyData

    v = PlyData.read(str(ply))["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], -1)
    rgb = np.stack([v["red"], v["green"], v["blue"]], -1)
    out = scratch / f"{ply.parent.name}-points.glb"
    trimesh.PointCloud(xyz, colors=np.concatenate([rgb, np.full_like(rgb[:, :1], 255)], -1)).export(str(out))
    return str(out)


class Page:
    """The page's handlers and tabs over one :class:`JobRunner`; ``seed`` and ``device`` are the forms' defaults."""

    def __init__(self, runner: JobRunner, seed: int = 0, device: str = "auto"):
        self.runner, self.seed, self.device = runner, seed, device
        self.scratch = Path(tempfile.mkdtemp(prefix="latent3d-app-"))  # the point clouds' glTF copies
        self.gr = gradio()

    def run_job(self, kind: str, args: list[str], show: Callable[[Path], list], n_out: int, progress) -> list:
        """A tab's handler: run the job, its bars as the page's progress bar, then show its files; a mistake is
        the command's own error line. (A plain function, not a generator: gradio 6 leaves a 3D view that a
        generator fills blank; the live views come by the timer, :meth:`tick`.)"""
        job: Job = self.runner.start(kind, args)
        try:
            for snap in job.watch():
                if snap.total:
                    progress((min(snap.n, snap.total), snap.total), desc=snap.line())
        finally:
            if not job.done.is_set():
                job.cancel()  # the page went away or the event was cancelled
        if job.cancelled:
            return ["**cancelled**", *[None] * n_out]
        if job.error:
            return [f"**error**: `{job.error}`", *[None] * n_out]
        return [f"**done**: `{job.folder}`", *show(job.folder)]

    def tick(self):
        """The running job in one line and its newest preview (every second, for every tab)."""
        job = self.runner.current
        if job is None or job.done.is_set():
            return "no job running", self.gr.skip()
        snap = job.listener.snapshot()
        line = f"**running** `{job.argv[0]}` in `{job.folder.name}`: {snap.line()}"
        return line, (snap.preview if snap.preview is not None and job.kind == "dream" else self.gr.skip())

    def controls(self, kind: str, inputs: list, outputs: list, make_args: Callable, show: Callable[[Path], list]):
        """A tab's status line, Run and Cancel; Run is the API endpoint ``/<kind>``, Cancel ``/<kind>_cancel``."""
        gr = self.gr
        status = gr.Markdown("ready", elem_id=f"{kind}-status")
        with gr.Row():
            go = gr.Button("Run", variant="primary", elem_id=f"{kind}-run")
            stop = gr.Button("Cancel", variant="stop", elem_id=f"{kind}-cancel")

        def handler(*values, progress=gr.Progress()):
            return self.run_job(kind, make_args(*values, self.device), show, len(outputs), progress)

        handler.__name__ = kind
        ev = go.click(handler, inputs, [status, *outputs], api_name=kind, concurrency_id=JOB_SLOT,
                      concurrency_limit=1, show_progress_on=[status])  # fmt: skip
        stop.click(self.runner.cancel_current, None, None, cancels=[ev], api_name=f"{kind}_cancel")

    def seed_box(self):
        return self.gr.Number(label="Seed", precision=0, value=self.seed)

    def rgbd_tab(self) -> None:
        gr = self.gr
        with gr.Row():
            with gr.Column():
                inputs = [gr.Textbox(label="Prompt", value="a red snowman on a blue floor"),
                          gr.Textbox(label="Model", placeholder="ldm3d-tiny, a folder or a hub id (Intel/ldm3d)"),
                          gr.Textbox(label="Steps (empty: the model's)"),
                          gr.Textbox(label="Guidance (empty: the model's)"), gr.Textbox(label="Negative prompt"),
                          self.seed_box()]  # fmt: skip
            with gr.Column():
                outputs = [gr.Image(height=256, label="RGB"), gr.Image(height=256, label="Depth (bright = near)"),
                           gr.Model3D(height=360, label="Point cloud", elem_id="rgbd-3d"),
                           gr.File(label="Files (depth.png is 16-bit)", file_count="multiple")]  # fmt: skip
        self.controls("rgbd", inputs, outputs, rgbd_args,
                      lambda f: [str(f / "rgb.png"), str(f / "depth_preview.png"),
                                 point_cloud_glb(f / "points.ply", self.scratch), files_of(f)])  # fmt: skip

    def world_tab(self) -> None:
        gr = self.gr
        with gr.Row():
            with gr.Column():
                inputs = [gr.Textbox(label="Prompt (or upload a panorama below)", value="a sunny beach"),
                          gr.File(label="Panorama RGB (equirect)", file_types=["image"], type="filepath"),
                          gr.File(label="Panorama depth (bright = near)", file_types=["image"], type="filepath"),
                          gr.Textbox(label="Model", placeholder="ldm3d-pano-tiny, a folder or Intel/ldm3d-pano"),
                          gr.Textbox(label="Steps (empty: the model's)"),
                          gr.Textbox(label="Guidance (empty: the model's)"), self.seed_box()]  # fmt: skip
            with gr.Column():
                outputs = [gr.Image(height=256, label="Panorama"),
                           gr.Model3D(height=360, label="world.glb", elem_id="world-3d"),
                           gr.Image(height=256, label="Stereo (top-bottom)"), gr.Image(height=256, label="Anaglyph"),
                           gr.Video(height=256, label="Tour"), gr.File(label="Files", file_count="multiple")]
        self.controls("world", inputs, outputs, world_args,
                      lambda f: [str(f / "pano_rgb.png"), str(f / "world.glb"), str(f / "stereo_tb.png"),
                                 str(f / "anaglyph.png"), str(f / "tour.mp4"), files_of(f)])  # fmt: skip

    def dream_tab(self):
        """Text to 3D; returns the image that shows the current views while a dream runs."""
        gr = self.gr
        with gr.Row():
            with gr.Column():
                inputs = [gr.Textbox(label="Prompt", value="a red snowman"),
                          gr.Radio(["ism", "sds"], value="ism", label="Method"),
                          gr.Textbox(label="Iterations (empty: the recipe's)"),
                          gr.Textbox(label="Guidance (empty: the method's)"), gr.Textbox(label="Negative prompt"),
                          gr.Textbox(label="Prior", placeholder="object-prior, a diffusers folder or a hub id"),
                          self.seed_box()]  # fmt: skip
            with gr.Column():
                live = gr.Image(height=256, label="Current views")
                outputs = [live, gr.Model3D(height=360, label="gaussians.ply", elem_id="dream-splats"),
                           gr.Model3D(height=360, label="mesh.glb", elem_id="dream-mesh"),
                           gr.Video(height=256, label="Turntable"), gr.File(label="Files", file_count="multiple")]
        self.controls("dream", inputs, outputs, dream_args,
                      lambda f: [str(f / "grid.png"), str(f / "gaussians.ply"), str(f / "mesh.glb"),
                                 str(f / "turntable.mp4"), files_of(f)])  # fmt: skip
        return live

    def object_tab(self) -> None:
        gr = self.gr
        with gr.Row():
            with gr.Column():
                inputs = [gr.Textbox(label="Prompt", value="a red chair"),
                          gr.Textbox(label="Model", placeholder="object3d-tiny or a generator folder"),
                          gr.Number(label="Samples", precision=0, value=2),
                          gr.Textbox(label="Steps (empty: the default)"),
                          gr.Textbox(label="Guidance (empty: the default)"), self.seed_box()]  # fmt: skip
            with gr.Column():
                outputs = [gr.Image(height=256, label="Samples"),
                           gr.Model3D(height=360, label="sample_00/mesh.glb", elem_id="object-3d"),
                           gr.Video(height=256, label="sample_00 turntable"),
                           gr.File(label="Files", file_count="multiple")]  # fmt: skip
        self.controls("object", inputs, outputs, object_args,
                      lambda f: [str(f / "grid.png"), str(f / "sample_00" / "mesh.glb"),
                                 str(f / "sample_00" / "turntable.mp4"), files_of(f)])  # fmt: skip

    def scene_tab(self) -> None:
        gr = self.gr
        with gr.Row():
            with gr.Column():
                inputs = [gr.Textbox(label="Model", placeholder="scene-tiny, vizdoom-tiny or a packed folder"),
                          gr.Number(label="Scenes", precision=0, value=1),
                          gr.Textbox(label="Steps (empty: the model's)"),
                          gr.Textbox(label="Fly-through frames (empty: the default)"), self.seed_box()]
            with gr.Column():
                outputs = [gr.Video(height=256, label="sample_00 fly-through"),
                           gr.Image(height=256, label="sample_00 bird's-eye view"),
                           gr.Model3D(height=360, label="sample_00/mesh.glb", elem_id="scene-3d"),
                           gr.File(label="Files", file_count="multiple")]  # fmt: skip
        self.controls("scene", inputs, outputs, scene_args,
                      lambda f: [str(f / "sample_00" / "flythrough.mp4"), str(f / "sample_00" / "bev.png"),
                                 str(f / "sample_00" / "mesh.glb"), files_of(f)])  # fmt: skip


def build(runner: JobRunner, seed: int = 0, device: str = "auto"):  # -> gradio.Blocks
    """The page: five tabs (RGBD, 360° world, Text to 3D, Objects, Scenes) over one job queue, and a line that
    follows the running job (with Text to 3D's current views) every second."""
    page = Page(runner, seed, device)
    gr = page.gr
    with gr.Blocks(title="latent3d", analytics_enabled=False) as demo:
        gr.Markdown("# latent3d\nText to RGBD, 360° worlds, 3D splats, objects and scenes: the `latent3d` commands, "
                    f"run one at a time; every run writes its folder under `{runner.out}`.")  # fmt: skip
        job_line = gr.Markdown("no job running", elem_id="job-status")
        with gr.Tabs():
            with gr.Tab("RGBD", id="rgbd"):
                page.rgbd_tab()
            with gr.Tab("360° world", id="world"):
                page.world_tab()
            with gr.Tab("Text to 3D", id="dream"):
                live = page.dream_tab()
            with gr.Tab("Objects", id="object"):
                page.object_tab()
            with gr.Tab("Scenes", id="scene"):
                page.scene_tab()
        gr.Timer(1.0).tick(page.tick, None, [job_line, live], api_name="progress", concurrency_id="progress",
                           concurrency_limit=None, show_progress="hidden")  # fmt: skip
    return demo
