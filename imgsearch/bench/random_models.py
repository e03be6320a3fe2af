"""Random-initialised open_clip models saved in open_clip's local-dir layout, loaded through the
real spec "openclip:local-dir:PATH": the compute and preprocessing of a trained model with no
download. Speed does not need trained weights.
"""

from __future__ import annotations

import json
import os

import open_clip
import torch

from ..models import resolve

BENCH_ARCH = "ViT-B-32"
RSS_PROBE_CFG = {  # ViT-B-32's input size and embedding width, almost none of its compute
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def save_random_openclip(folder: str, arch: str, seed: int = 0) -> str:
    """A random-initialised open_clip `arch` in local-dir layout; its canonical spec."""
    cfg = open_clip.get_model_config(arch)
    return _save_openclip(os.path.join(folder, f"{arch}-random-{seed}"), cfg, seed)


def save_probe_openclip(folder: str) -> str:
    return _save_openclip(os.path.join(folder, "rss-probe"), RSS_PROBE_CFG, seed=0)


def _save_openclip(folder: str, model_cfg: dict, seed: int) -> str:
    config_path = os.path.join(folder, "open_clip_config.json")
    if not os.path.exists(config_path):
        os.makedirs(folder, exist_ok=True)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = open_clip.CLIP(**model_cfg)
        weights = os.path.join(folder, "open_clip_pytorch_model.bin")
        torch.save(model.state_dict(), weights + ".part")
        os.replace(weights + ".part", weights)
        preprocess = {k: list(v) if isinstance(v, tuple) else v
                      for k, v in open_clip.get_model_preprocess_cfg(model).items()}
        with open(config_path + ".part", "w") as f:
            json.dump({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, f)
        os.replace(config_path + ".part", config_path)  # last: a folder with a config is complete
    return resolve("openclip:local-dir:" + folder)
