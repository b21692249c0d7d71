"""Pickle-free training checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a folder ``step_XXXXXXXX/`` holding ``model.safetensors``, ``ema.safetensors`` (optional),
``optimizer.safetensors`` + the optimizer's non-tensor state in ``trainer_state.json``. It is assembled in a
temporary sibling folder and renamed into place, so a crash (even SIGKILL) never leaves a partial checkpoint under
a final name; :func:`latest_checkpoint` only considers complete folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

_PREFIX = "step_"
_STATE = "trainer_state.json"


class CheckpointError(Exception):
    """A checkpoint folder that cannot be read back as it was written (its message names the file and the fault)."""


def _digest(path: Path) -> dict:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def optimizer_to_flat(opt_sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into flat tensors (``state.<param>.<name>``) and a JSON-able rest."""
    tensors, scalars = {}, {}
    for pid, st in opt_sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{name}"] = v
            else:
                scalars[f"{pid}.{name}"] = v
    return tensors, {"param_groups": opt_sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`optimizer_to_flat`."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    root: Path,
    step: int,
    model_sd: dict[str, torch.Tensor],
    optimizer_sd: dict | None,
    ema_sd: dict[str, torch.Tensor] | None,
    extra: dict,
    keep: int = 2,
) -> Path:
    """Write ``root/step_<step>/`` atomically and delete all but the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        save_file(_contiguous(model_sd), str(tmp / "model.safetensors"))
        meta = {"step": step, **extra}
        if ema_sd is not None:
            save_file(_contiguous(ema_sd), str(tmp / "ema.safetensors"))
        if optimizer_sd is not None:
            opt_tensors, meta["optimizer"] = optimizer_to_flat(optimizer_sd)
            save_file(_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
        meta["files"] = {f.name: _digest(f) for f in sorted(tmp.glob("*.safetensors"))}
        (tmp / _STATE).write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    done = [p for p in root.glob(f"{_PREFIX}*") if p.is_dir() and (p / _STATE).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(_PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def _verify(path: Path, files: dict) -> None:
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{name} is missing")
        size = f.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(f"{name} is {'truncated' if size < want['bytes'] else 'too long'} "
                                  f"({size} of {want['bytes']} bytes)")  # fmt: skip
        if _digest(f)["sha256"] != want["sha256"]:
            raise CheckpointError(f"{name} is damaged (its SHA-256 differs from the one recorded when it was written)")


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint folder: ``{"step", "model", "ema", "optimizer", "extra"}`` (tensors on CPU).

    Raises :class:`CheckpointError` (one line: which file, what is wrong) when the folder is unreadable, damaged or
    incomplete."""
    try:
        meta = json.loads((path / _STATE).read_text())
        _verify(path, meta.pop("files", {}))  # checkpoints of older versions carry no digests
        out = {"step": int(meta.pop("step")), "model": load_file(str(path / "model.safetensors")), "ema": None,
               "optimizer": None}  # fmt: skip
        if (path / "ema.safetensors").is_file():
            out["ema"] = load_file(str(path / "ema.safetensors"))
        opt_meta = meta.pop("optimizer", None)
        if opt_meta is not None:
            out["optimizer"] = optimizer_from_flat(load_file(str(path / "optimizer.safetensors")), opt_meta)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as e:
        raise CheckpointError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r}") from e
    out["extra"] = meta
    return out
