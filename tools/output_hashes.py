"""Byte-identity harness for refactors (issue 31): run every command at a tiny scale with fixed seeds, hash every file
it writes (timings removed: JSON ``*_s`` fields, model cards' wall times) and every command's ``--help``, and compare
with a hash file written by another checkout.

    python tools/output_hashes.py --out /tmp/base.json              # on the old code
    python tools/output_hashes.py --out /tmp/new.json --compare /tmp/base.json

Runs on the CPU with one thread (a few minutes); the command lines name the same paths (``--work``) in both runs, so
that the commands recorded in run.json and model cards agree.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import shutil
import sys
from pathlib import Path

PROMPT = "a red chair"


def untimed(value):
    """A JSON value without what the clock and the allocator decide: every ``*_s`` key (wall_s, train_s, eval_s,
    sampling_s, total_s), ``*s_per_*`` rates and ``*_mb`` memory peaks."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items()
                if not (k.endswith("_s") or k.endswith("_mb") or "s_per_" in k)}  # fmt: skip
    return [untimed(v) for v in value] if isinstance(value, list) else value


def comparable(path: Path) -> bytes | object:
    """What must not change between two runs of one command: the bytes, but for the documented timings."""
    data = path.read_bytes()
    if path.suffix == ".json":
        return untimed(json.loads(data))
    if path.suffix == ".jsonl":
        return [untimed(json.loads(ln)) for ln in data.splitlines()]
    if path.name in ("MODEL_CARD.md", "README.md"):
        return re.sub(rb"\d+(\.\d+)? (s|min)\b", b"_ s", data)
    return data


def commands(w: Path) -> list[list[str]]:
    d = ["--device", "cpu"]
    return [
        ["data", "objects", "--out", f"{w}/data", "--n-objects", "2", "--views", "4", "--size", "32", "--seed", "1"],
        ["train", "autodecoder", "--data", f"{w}/data", "--out", f"{w}/ad", "--steps", "4", "--embedding-dim", "16",
         "--latent-channels", "4", "--widths", "8", "--shuffle", "1", "--samples", "16", "--patch", "8",
         "--objects-per-step", "2", "--views-per-object", "2", "--holdout", "4", "--checkpoint-every", "2", *d],
        ["train", "object-diffusion", "--autodecoder", f"{w}/ad", "--out", f"{w}/od", "--steps", "3", "--batch-size",
         "2", "--model-channels", "8", "--channel-mult", "1", "--attention", "", "--checkpoint-every", "2", *d],
        ["object", PROMPT, "--model", f"{w}/od", "--out", f"{w}/obj", "--n", "2", "--steps", "2", "--size", "32",
         "--frames", "2", "--views", "2", "--seed", "3", *d],
        ["object", PROMPT, "--out", f"{w}/obj-bundled", "--n", "1", "--steps", "4", "--size", "32", "--frames", "2",
         "--views", "2", *d],
        ["dream", "a red snowman", "--out", f"{w}/dream", "--iters", "20", *d],
        ["dream", PROMPT, "--out", f"{w}/dream-object", "--iters", "20", "--init", "object", *d],
        ["rgbd", "a red snowman", "--out", f"{w}/rgbd", "--steps", "3", *d],
        ["immersive", "a sunny beach", "--out", f"{w}/immersive", "--steps", "3", "--resolution", "32",
         "--stereo-width", "64", "--tour-seconds", "0.4", *d],
        ["sample", "a red snowman", "--out", f"{w}/sample", "--n", "2", "--steps", "3", *d],
        ["train", "prior", "--out", f"{w}/prior", "--steps", "2", "--batch-size", "4", "--views", "1",
         "--warmup-steps", "1", "--checkpoint-every", "1", *d],
        ["train", "rgbd-vae", "--out", f"{w}/vae", "--steps", "2", "--batch-size", "2", "--n-images", "4", "--height",
         "32", "--checkpoint-every", "1", *d],
        ["train", "rgbd", "--vae", f"{w}/vae", "--out", f"{w}/ldm", "--steps", "2", "--batch-size", "2", "--n-images",
         "4", "--height", "32", "--checkpoint-every", "1", *d],
    ]  # fmt: skip


def helps() -> dict[str, str]:
    import typer.main

    from latent3d.cli import app, main

    out, stack = {}, [((), typer.main.get_command(app))]
    while stack:
        path, cmd = stack.pop()
        if hasattr(cmd, "commands"):
            stack += [((*path, n), c) for n, c in cmd.commands.items()]
            continue
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            main([*path, "--help"])
        out["help: " + " ".join(path)] = hashlib.sha256(buf.getvalue().encode()).hexdigest()
    return out


def run(work: Path) -> dict[str, str]:
    from latent3d.cli import main

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for argv in commands(work):
        print("latent3d", " ".join(argv), file=sys.stderr)
        rc = main(argv)
        if rc not in (0, None):
            raise SystemExit(f"failed ({rc}): latent3d {' '.join(argv)}")
    hashes = helps()
    for p in sorted(q for q in work.rglob("*") if q.is_file()):
        c = comparable(p)
        data = c if isinstance(c, bytes) else json.dumps(c, sort_keys=True).encode()
        hashes[str(p.relative_to(work))] = hashlib.sha256(data).hexdigest()
    return hashes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/latent3d-output-hashes"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    hashes = run(args.work)
    args.out.write_text(json.dumps(hashes, indent=1, sort_keys=True))
    print(f"{len(hashes)} hashes -> {args.out}")
    if args.compare:
        base = json.loads(args.compare.read_text())
        diff = sorted(k for k in base.keys() | hashes.keys() if base.get(k) != hashes.get(k))
        for k in diff:
            print(f"differs: {k}" if k in base and k in hashes else f"{'missing' if k in base else 'new'}: {k}")
        print(f"{len(diff)} of {len(base)} differ")
        raise SystemExit(1 if diff else 0)


if __name__ == "__main__":
    main()
