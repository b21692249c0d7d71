"""What ``latent3d info`` reports: versions, device, bundled checkpoints."""

from __future__ import annotations

import importlib.metadata as md
import platform

from typing import Annotated

import typer

import latent3d
from latent3d.options import DeviceOpt, SeedOpt

_OPTIONAL = ("diffusers", "transformers", "accelerate", "gsplat", "trimesh", "plyfile", "imageio-ffmpeg")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def collect_info(device: str = "auto", seed: int = 0) -> dict:
    """A JSON-serialisable report (optional packages are not imported: their versions come from package metadata)."""
    import torch

    from latent3d.runtime import resolve_device
    from latent3d.weights import bundled_checkpoints

    dev = resolve_device(device)
    cuda = torch.cuda.is_available()
    return {
        "latent3d": latent3d.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "packages": {name: _version(name) for name in _OPTIONAL},
        "bundled_checkpoints": [
            {"name": c.name, "path": str(c.path), "size_mb": round(c.size_bytes / 2**20, 2), "model_card": c.has_card}
            for c in bundled_checkpoints()
        ],
    }


def format_info(r: dict) -> str:
    lines = [
        f"latent3d {r['latent3d']}  (python {r['python']}, {r['platform']})",
        f"torch {r['torch']}  cuda: {'yes, ' + r['gpu'] if r['cuda_available'] else 'no'}  threads: {r['threads']}",
        f"device: {r['device']}",
        "packages: " + ", ".join(f"{k} {v or '-'}" for k, v in r["packages"].items()),
    ]
    ckpts = r["bundled_checkpoints"]
    if ckpts:
        lines.append(f"bundled checkpoints ({sum(c['size_mb'] for c in ckpts):.1f} MB):")
        lines += [f"  {c['name']:<24} {c['size_mb']:>7.2f} MB  {c['path']}" for c in ckpts]
    else:
        lines.append("bundled checkpoints: none yet")
    return "\n".join(lines)


def info(
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Versions, the device latent3d would use, and the bundled checkpoints found."""
    report = collect_info(device, seed)
    if json_out:
        import json

        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(format_info(report))
