"""`import latent3d` (and every module of it) stays light: heavy libraries are imported lazily."""

import subprocess
import sys

HEAVY = ("diffusers", "transformers", "accelerate", "trimesh", "imageio", "plyfile", "skimage", "gsplat", "PIL")

CODE = """
import pkgutil, importlib, sys
import latent3d
for m in pkgutil.walk_packages(latent3d.__path__, "latent3d."):
    importlib.import_module(m.name)
print(" ".join(sorted({n.split(".")[0] for n in sys.modules})))
"""


def test_importing_every_module_is_light():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "torch" in loaded  # sanity: the walk really imported the package
    assert not loaded & set(HEAVY), f"heavy modules imported at import time: {sorted(loaded & set(HEAVY))}"
