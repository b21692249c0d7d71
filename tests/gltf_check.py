"""The Khronos glTF validator (tools/validate_gltf.mjs on node, installed by `npm ci --prefix tools`) for tests.

Import as ``from gltf_check import ...`` (pytest puts ``tests/`` on ``sys.path``, as for ``tolerances``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def gltf_validator() -> list[str] | None:
    """The command that validates glTF/GLB files, or None when node or the validator package is missing."""
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "gltf-validator").is_dir():
        return None
    return [node, str(TOOLS / "validate_gltf.mjs")]


def validate_gltf(path: str | os.PathLike, cmd: list[str]) -> tuple[int, dict]:
    """Run the validator ``cmd`` on one file: (exit code, its JSON report with numErrors, numWarnings, messages)."""
    proc = subprocess.run(cmd + [str(path)], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"the glTF validator printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode, json.loads(lines[-1])
