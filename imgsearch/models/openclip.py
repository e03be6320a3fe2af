"""OpenCLIP family: any architecture + pretrained tag open_clip knows, or a local checkpoint.

Spec grammar (after the "openclip:" prefix):
  ARCH/TAG            a built-in architecture and pretrained tag   ViT-B-32/openai
  ARCH//abs/ckpt.pt   a built-in architecture and a local weights file
  local-dir:/path     a folder with open_clip_config.json and weights (open_clip's own schema)
  hf-hub:org/repo     an open_clip model on the Hugging Face hub
"""

from __future__ import annotations

import json
import logging
import os
import warnings

import open_clip
import torch
import torch.nn.functional as F
from huggingface_hub import try_to_load_from_cache
from open_clip.transformer import (
    CustomResidualAttentionBlock,
    ResidualAttentionBlock,
    text_global_pool,
)
from PIL import Image
from torchvision import transforms

from ..errors import ModelUnavailable, UsageError, first_line
from . import languages
from .base import EmbeddingModel, ModelFamily, cast, files_digest

SCHEMAS = ("local-dir:", "hf-hub:")
CONFIG_FILE = "open_clip_config.json"  # open_clip's own schema: {"model_cfg": ..., "preprocess_cfg": ...}


class OpenClipFamily(ModelFamily):
    name = "openclip"

    def recognises(self, spec: str) -> bool:
        """A bare ARCH/TAG: open_clip's names are what users type most."""
        return split(spec)[0] in open_clip.list_models()

    def canonical(self, name: str) -> str:
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

    def info(self, name: str) -> dict:
        local = name.startswith("local-dir:") or _is_path(split(name)[1] or "")
        return {"dim": _embed_dim(name), "offline": False,
                "languages": languages.from_checkpoint_name(name, local)}

    def weights_local(self, name: str) -> bool:
        """A local file/dir, or a tag already in the HF cache."""
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

    def load(self, name: str, device: str, precision: str) -> "OpenClipModel":
        return OpenClipModel(name, device, precision)


def split(name: str) -> tuple[str, str | None]:
    """'ViT-B-32/openai' -> ('ViT-B-32', 'openai'); schema names have no separate tag."""
    if name.startswith(SCHEMAS):
        return name, None
    arch, sep, tag = name.partition("/")
    return arch, (tag or None) if sep else None


def _is_path(tag: str) -> bool:
    return tag.startswith(("/", ".", "~")) or os.path.exists(tag)


def _has_weights(folder: str) -> bool:
    return os.path.isdir(folder) and any(
        n.endswith((".safetensors", ".bin", ".pth")) for n in os.listdir(folder)
    )


def _hf_cached(repo: str, filename: str) -> bool:
    found = try_to_load_from_cache(repo, filename)
    return isinstance(found, str)


def _embed_dim(name: str) -> int | None:
    """A built-in architecture's config, else the saved config when it is on disk already."""
    if name.startswith("local-dir:"):
        path = os.path.join(name[len("local-dir:"):], CONFIG_FILE)
    elif name.startswith("hf-hub:"):
        path = try_to_load_from_cache(name[len("hf-hub:"):], CONFIG_FILE)
    else:
        cfg = open_clip.get_model_config(split(name)[0])
        return cfg.get("embed_dim") if cfg else None
    if not isinstance(path, str):
        return None  # not in the HF cache
    try:
        with open(path) as f:
            return int(json.load(f)["model_cfg"]["embed_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def quick_gelu_for(arch: str, tag: str | None) -> bool:
    """OpenAI weights were trained with QuickGELU; a plain config silently degrades them."""
    if not tag or _is_path(tag):
        return False
    return bool((open_clip.get_pretrained_cfg(arch, tag) or {}).get("quick_gelu"))


class OpenClipModel(EmbeddingModel):
    family = OpenClipFamily.name

    def __init__(self, name: str, device: str = "cpu", precision: str = "fp32"):
        self.spec = f"{self.family}:{name}"
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
                f"cannot load weights for {self.spec}: {first_line(e)}. Offline? Download once with "
                f"internet, or pass a local checkpoint: openclip:{arch}//path/to/weights.bin "
                "or openclip:local-dir:/path/to/folder"
            ) from None
        if precision == "int8":
            model = _attention_as_linears(model)
        self._model = cast(model, precision, device)
        if precision == "int8":
            for block in self._model.modules():
                if isinstance(block, (ResidualAttentionBlock, CustomResidualAttentionBlock)):
                    # open_clip reads a block's compute dtype from mlp.c_fc.weight, a method
                    # once quantised; this is the attribute it checks first.
                    block.mlp.c_fc.int8_original_dtype = torch.float32
        self._fingerprint = self._weights_fingerprint(name)  # now, while the files are the ones loaded
        self._preprocess = preprocess
        self._to_uint8, self._to_float = _split_at_to_tensor(preprocess)
        self._preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
        size = self._preprocess_cfg.get("size")
        self.input_side = (max(size) if isinstance(size, (tuple, list)) else size) or self.input_side
        self.dim = int(self.embed_query("a").shape[0])

    def pixels(self, image: Image.Image) -> torch.Tensor:
        if self._to_float is None:
            return self._preprocess(image)
        return transforms.functional.pil_to_tensor(self._to_uint8(image))

    def scale_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        return batch if self._to_float is None else self._to_float(batch.float().div(255))

    def preprocess_config(self) -> dict:
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in self._preprocess_cfg.items()}
        return {"library": "open_clip", **cfg}

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        dtype = next(self._model.parameters()).dtype
        return self._model.encode_image(batch.to(dtype))

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self._tokenizer(texts).to(self.device)
        if _truncatable(self._model):
            return _encode_text_to_eot(self._model, tokens)
        return self._model.encode_text(tokens)

    def versions(self) -> dict:
        return {**super().versions(), "open_clip": open_clip.__version__}

    def fingerprint(self) -> str:
        return self._fingerprint

    @staticmethod
    def _weights_fingerprint(name: str) -> str:
        arch, tag = split(name)
        if name.startswith("local-dir:"):
            folder = name[len("local-dir:"):]
            return files_digest(os.path.join(folder, n) for n in os.listdir(folder)
                                if n.endswith((".safetensors", ".bin", ".pth")) or n == CONFIG_FILE)
        if tag and _is_path(tag):
            return files_digest([tag])
        return f"open_clip {open_clip.__version__}: {name}"  # a published tag's weights do not change


class _SelfAttention(torch.nn.Module):
    """nn.MultiheadAttention's self-attention with its projections as nn.Linear layers, which
    dynamic int8 reaches (it skips MultiheadAttention). Quantising them as well took a short
    ViT-B-32 text query from 25 to 12 ms and its image tower from 20 to 24 img/s."""

    def __init__(self, mha: torch.nn.MultiheadAttention):
        super().__init__()
        width = mha.embed_dim
        self.heads, self.batch_first = mha.num_heads, mha.batch_first
        self.qkv = torch.nn.Linear(width, 3 * width, bias=mha.in_proj_bias is not None)
        self.qkv.weight = mha.in_proj_weight
        if mha.in_proj_bias is not None:
            self.qkv.bias = mha.in_proj_bias
        self.out = torch.nn.Linear(width, width, bias=mha.out_proj.bias is not None)
        self.out.weight, self.out.bias = mha.out_proj.weight, mha.out_proj.bias

    def forward(self, q, k, v, need_weights=False, attn_mask=None):
        x = q if self.batch_first else q.transpose(0, 1)
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        out = self.out(out.transpose(1, 2).reshape(batch, length, width))
        return (out if self.batch_first else out.transpose(0, 1)), None


def _attention_as_linears(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the self-attention of open_clip's standard blocks for _SelfAttention (same math)."""
    for block in model.modules():
        if (isinstance(block, ResidualAttentionBlock) and not hasattr(block, "ln_1_kv")
                and type(block.attn) is torch.nn.MultiheadAttention):
            block.attn = _SelfAttention(block.attn)
    return model


def _truncatable(model: torch.nn.Module) -> bool:
    """A CLIP text tower with a causal mask, read at the end-of-text token: the padding after
    it cannot change the output, so it need not be computed."""
    return (type(model) is open_clip.CLIP and model.text_pool_type == "argmax"
            and getattr(model, "attn_mask", None) is not None)


def _encode_text_to_eot(model: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text on tokens cut after the batch's last end-of-text token.

    A query of a few words is ~10 of the 77 context positions: ViT-B-32's text tower measured
    110 -> 35 ms on one thread, the same vector (max abs difference 3e-6)."""
    length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text id is the largest id
    tokens = tokens[:, :length]
    dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(dtype) + model.positional_embedding[:length].to(dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection


class _quiet_logging:
    """open_clip logs an ERROR line before raising; the user gets our one line instead."""

    def __enter__(self):
        self._level = logging.root.manager.disable
        logging.disable(logging.CRITICAL)

    def __exit__(self, *exc):
        logging.disable(self._level)


def _split_at_to_tensor(transform) -> tuple:
    """open_clip's Compose [PIL steps..., to-tensor, Normalize] -> (the PIL steps, Normalize),
    so that decode workers stop at uint8 pixels; (None, None) for any other shape. to_tensor's
    own float(x) / 255 is redone on the batch: the same float32 operations, the same bits."""
    steps = list(getattr(transform, "transforms", []))
    names = [type(t).__name__ for t in steps]
    if len(names) < 2 or names[-2] not in ("MaybeToTensor", "ToTensor") or names[-1] != "Normalize":
        return None, None
    return transforms.Compose(steps[:-2]), steps[-1]
