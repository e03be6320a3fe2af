"""Real photos that ship inside installed packages, with captions this project wrote for them.

The demo's collection on a machine without the tuxpaint stamps, and the tests' photos.
"""

from __future__ import annotations

import json
import os
import shutil

import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image
from sklearn.datasets import load_sample_image

# file name -> (loader, captions)
SAMPLES = {
    "cat.png": (skimage.data.chelsea, ["a cat", "a ginger tabby cat lying down"]),
    "astronaut.png": (skimage.data.astronaut, ["an astronaut", "a smiling astronaut in a spacesuit"]),
    "coffee.png": (skimage.data.coffee, ["a cup of coffee", "coffee in a cup on a saucer"]),
    "rocket.png": (skimage.data.rocket, ["a rocket", "a space rocket on the launch pad"]),
    "camera.png": (skimage.data.camera, ["a photographer with a camera", "a man with a camera on a tripod"]),
    "coins.png": (skimage.data.coins, ["coins", "old coins on a dark background"]),
    "grace_hopper.jpg": (None, ["a woman in a naval uniform", "portrait of an officer in uniform"]),
    "clock.png": (skimage.data.clock, ["a clock", "a wall clock"]),
    "moon.png": (skimage.data.moon, ["the moon", "the cratered surface of the moon"]),
    "hubble.png": (skimage.data.hubble_deep_field, ["galaxies in deep space", "a telescope image of stars"]),
    "brick.png": (skimage.data.brick, ["a brick wall", "bricks"]),
    "page.png": (skimage.data.page, ["a page of text", "printed text"]),
    "horse.png": (skimage.data.horse, ["a horse", "the silhouette of a horse"]),
    "china.jpg": ("china.jpg", ["a chinese temple", "a pagoda among trees"]),
    "flower.jpg": ("flower.jpg", ["a flower", "a close-up of a flower"]),
}


def write_samples(folder: str, names: list[str] | None = None, captions_file: str | None = None) -> dict[str, str]:
    """Write the sample photos (all, or names) into folder; name -> path.

    With captions_file, also write a captions JSONL beside them (imgsearch eval's format).
    """
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name in names or list(SAMPLES):
        loader, _ = SAMPLES[name]
        path = os.path.join(folder, name)
        paths[name] = path
        if os.path.exists(path):
            continue
        if loader is None:
            shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), path)
        elif isinstance(loader, str):
            Image.fromarray(load_sample_image(loader)).save(path, quality=92)
        else:
            Image.fromarray(np.asarray(loader())).save(path)
    if captions_file:
        with open(os.path.join(folder, captions_file), "w") as f:
            for name in paths:
                f.write(json.dumps({"image": name, "captions": SAMPLES[name][1]}) + "\n")
    return paths
