"""Seconds from starting ``latent3d app`` to its first page served (HTTP 200 on ``/``), and to the page's
configuration (``/config``, what the browser asks next), over several cold starts; the issue's target is 10 s on a
2-core CPU.

    python benchmarks/app_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def one_start(timeout: float = 60.0) -> tuple[float, float]:
    """(seconds to ``/``, seconds to ``/config``) of one cold start in a new process."""
    port = free_port()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "latent3d.cli", "app", "--port", str(port), "--out", out],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})  # fmt: skip
        try:
            first = config = None
            while time.perf_counter() - t0 < timeout and config is None:
                if first is None and served(f"http://127.0.0.1:{port}/"):
                    first = time.perf_counter() - t0
                if first is not None and served(f"http://127.0.0.1:{port}/config"):
                    config = time.perf_counter() - t0
                time.sleep(0.05)
            if first is None or config is None:
                raise SystemExit(f"the app did not serve its page within {timeout:.0f} s")
            return first, config
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    runs = [one_start() for _ in range(args.runs)]
    for name, k in (("first page (/)", 0), ("page config (/config)", 1)):
        xs = [r[k] for r in runs]
        print(f"{name:24s} min {min(xs):5.2f} s  median {statistics.median(xs):5.2f} s  max {max(xs):5.2f} s  "
              f"(n={len(xs)}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
