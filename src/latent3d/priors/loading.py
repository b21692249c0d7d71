"""Resolve ``--prior`` (bundled name, local folder or hub id) to a loaded prior."""

from __future__ import annotations

from pathlib import Path

import torch

from latent3d.errors import UserError
from latent3d.weights import bundled_checkpoints

DEFAULT_PRIOR = "object-prior"  # the bundled text-conditioned prior over procedural objects


def resolve_prior_path(spec: str | Path | None) -> tuple[str | Path, bool]:
    """``(what to load, is_local)``: a folder, a bundled checkpoint, or an ``org/name`` hub id."""
    spec = DEFAULT_PRIOR if spec in (None, "", "bundled") else spec
    path = Path(spec).expanduser()
    if path.is_dir():
        return path, True
    bundled = {c.name: c.path for c in bundled_checkpoints()}
    if str(spec) in bundled:
        return bundled[str(spec)], True
    if str(spec).count("/") == 1 and not path.exists() and not str(spec).startswith((".", "/", "~")):
        return str(spec), False
    raise UserError(
        f"prior {str(spec)!r} is neither a folder, a bundled checkpoint ({', '.join(bundled) or 'none shipped'}) "
        "nor a hub id like org/name"
    )


def load_prior(
    spec: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    option: str = "--prior",
):
    """Load a :class:`~latent3d.priors.diffusers_prior.DiffusersPrior`; hub ids honour ``HF_HUB_OFFLINE``.
    ``option`` is the command-line option that error messages name."""
    from latent3d.priors.diffusers_prior import DiffusersPrior

    target, local = resolve_prior_path(spec)
    from latent3d.runtime import hub_offline

    offline = local or hub_offline()
    return DiffusersPrior.from_pretrained(target, device=device, dtype=dtype, local_files_only=offline, option=option)
