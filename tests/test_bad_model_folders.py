"""A damaged local --prior/--model folder gets one line about the folder (no download advice), and pickled .bin
weights are never unpickled (issue 13)."""

import shutil

import pytest

from latent3d.errors import UserError
from latent3d.priors import load_prior


def _copy(tiny_sd_dir, tmp_path):
    dst = tmp_path / "pipe"
    shutil.copytree(tiny_sd_dir, dst)
    return dst


@pytest.mark.parametrize("damage", ["no_unet_weights", "bad_model_index", "no_scheduler", "pickle_only"])
def test_a_damaged_local_folder_is_one_error_about_the_folder(tiny_sd_dir, tmp_path, damage):
    folder = _copy(tiny_sd_dir, tmp_path)
    if damage == "no_unet_weights":
        for f in (folder / "unet").glob("*.safetensors"):
            f.unlink()
    elif damage == "bad_model_index":
        (folder / "model_index.json").write_text("{not json")
    elif damage == "no_scheduler":
        shutil.rmtree(folder / "scheduler")
    else:  # the same UNet saved as a pickle (.bin): refused, not loaded
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(folder / "unet")
        shutil.rmtree(folder / "unet")
        unet.save_pretrained(folder / "unet", safe_serialization=False)
        assert list((folder / "unet").glob("*.bin"))
    with pytest.raises(UserError) as e:
        load_prior(folder)
    msg = str(e.value)
    assert "\n" not in msg and "hf download" not in msg and str(folder) in msg
