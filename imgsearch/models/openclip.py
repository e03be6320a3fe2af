"""OpenCLIP family: any architecture + pretrained tag open_clip knows, or a local checkpoint.

Spec grammar (after the "openclip:" prefix):
  ARCH/TAG            a built-in architecture and pretrained tag   ViT-B-32/openai
  ARCH//abs/ckpt.pt   a built-in architecture and a local weights file
  local-dir:/path     a folder with open_clip_config.json and weights (open_clip's own schema)
  hf-hub:org/repo     an open_clip model on the Hugging Face hub
"""

from __future__ import annotations

import logging
import os
import warnings

import open_clip
import torch
from huggingface_hub import try_to_load_from_cache
from PIL import Image

from ..errors import ModelUnavailable, UsageError
from .base import EmbeddingModel, cast

FAMILY = "openclip"
SCHEMAS = ("local-dir:", "hf-hub:")


def split(name: str) -> tuple[str, str | None]:
    """'ViT-B-32/openai' -> ('ViT-B-32', 'openai'); schema names have no separate tag."""
    if name.startswith(SCHEMAS):
        return name, None
    arch, sep, tag = name.partition("/")
    return arch, (tag or None) if sep else None


def canonical(name: str) -> str:
    if name.startswith("local-dir:"):
        path = name[len("local-dir:"):]
        return "local-dir:" + os.path.abspath(os.path.expanduser(path))
    if name.startswith("hf-hub:"):
        return name
    arch, tag = split(name)
    if arch not in open_clip.list_models():
        raise UsageError(f"unknown open_clip architecture {arch!r} (see: imgsearch models --all)")
    if tag is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UsageError(
            f"openclip:{arch} needs a pretrained tag or checkpoint, e.g. openclip:{arch}/{tags[0] if tags else 'TAG'}"
        )
    if _is_path(tag):
        return f"{arch}/{os.path.abspath(os.path.expanduser(tag))}"
    if tag not in open_clip.list_pretrained_tags_by_model(arch):
        known = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise UsageError(f"unknown pretrained tag {tag!r} for {arch} (known: {known})")
    return f"{arch}/{tag}"


def _is_path(tag: str) -> bool:
    return tag.startswith(("/", ".", "~")) or os.path.exists(tag)


def weights_local(name: str) -> bool:
    """True when loading needs no download: a local file/dir, or a tag already in the HF cache."""
    arch, tag = split(name)
    if name.startswith("local-dir:"):
        return _has_weights(name[len("local-dir:"):])
    if name.startswith("hf-hub:"):
        return _hf_cached(name[len("hf-hub:"):], "open_clip_pytorch_model.bin")
    if tag and _is_path(tag):
        return os.path.isfile(tag)
    cfg = open_clip.get_pretrained_cfg(arch, tag or "") or {}
    hub = cfg.get("hf_hub", "").rstrip("/")
    if not hub:
        return False
    filename = cfg.get("hf_weights_file") or "open_clip_pytorch_model.bin"
    return _hf_cached(hub, filename) or _hf_cached(hub, "open_clip_model.safetensors")


def _has_weights(folder: str) -> bool:
    return os.path.isdir(folder) and any(
        n.endswith((".safetensors", ".bin", ".pth")) for n in os.listdir(folder)
    )


def _hf_cached(repo: str, filename: str) -> bool:
    found = try_to_load_from_cache(repo, filename)
    return isinstance(found, str)


def info(name: str) -> dict:
    arch, _tag = split(name)
    cfg = open_clip.get_model_config(arch) if not name.startswith(SCHEMAS) else None
    return {"dim": cfg.get("embed_dim") if cfg else None, "offline": False}


def quick_gelu_for(arch: str, tag: str | None) -> bool:
    """OpenAI weights were trained with QuickGELU; a plain config silently degrades them."""
    if not tag or _is_path(tag):
        return False
    return bool((open_clip.get_pretrained_cfg(arch, tag) or {}).get("quick_gelu"))


def load(name: str, device: str, precision: str) -> "OpenClipModel":
    return OpenClipModel(name, device, precision)


class OpenClipModel(EmbeddingModel):
    family = FAMILY

    def __init__(self, name: str, device: str = "cpu", precision: str = "fp32"):
        self.spec = f"{FAMILY}:{name}"
        self.device, self.precision = device, precision
        arch, tag = split(name)
        if name.startswith("local-dir:") and not _has_weights(name[len("local-dir:"):]):
            # open_clip would only log a warning and hand back a random-initialised model.
            raise ModelUnavailable(f"cannot load weights for {self.spec}: no weights file "
                                   "(*.safetensors, *.bin, *.pth) in that folder")
        try:
            with warnings.catch_warnings(), _quiet_logging():
                warnings.simplefilter("ignore")
                model, _, preprocess = open_clip.create_model_and_transforms(
                    arch, pretrained=tag, device=device, force_quick_gelu=quick_gelu_for(arch, tag)
                )
                self._tokenizer = open_clip.get_tokenizer(arch)
        except (RuntimeError, OSError, ValueError) as e:
            raise ModelUnavailable(
                f"cannot load weights for {self.spec}: {_first_line(e)}. Offline? Download once with "
                f"internet, or pass a local checkpoint: openclip:{arch}//path/to/weights.bin "
                "or openclip:local-dir:/path/to/folder"
            ) from None
        self._model = cast(model, precision, device)
        self._preprocess = preprocess
        self._preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
        self.dim = int(self.embed_query("a").shape[0])

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def preprocess_config(self) -> dict:
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in self._preprocess_cfg.items()}
        return {"library": "open_clip", **cfg}

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        dtype = next(self._model.parameters()).dtype
        return self._model.encode_image(batch.to(dtype))

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self._tokenizer(texts).to(self.device)
        return self._model.encode_text(tokens)

    def versions(self) -> dict:
        return {**super().versions(), "open_clip": open_clip.__version__}


class _quiet_logging:
    """open_clip logs an ERROR line before raising; the user gets our one line instead."""

    def __enter__(self):
        self._level = logging.root.manager.disable
        logging.disable(logging.CRITICAL)

    def __exit__(self, *exc):
        logging.disable(self._level)


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [e.__class__.__name__])[0][:300]
