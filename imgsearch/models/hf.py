"""Hugging Face transformers family: image-text dual encoders from the hub or a local folder.

Spec grammar (after the "hf:" prefix):
  org/name            a hub id, loaded from the HF cache or downloaded    google/siglip-base-patch16-224
  /abs/dir            a folder written by save_pretrained: config.json, weights, tokenizer and
                      image-processor files (the tokenizer may come from another checkpoint)

The adapter follows config.model_type:
  clip, align         get_image_features / get_text_features
  siglip              the same; texts padded to the full 64 positions (SigLIP pools the last one).
                      Fixed-resolution SigLIP2 checkpoints are model_type "siglip" too.
  siglip2             NaFlex SigLIP2: patches + mask + spatial shape, packed into one tensor
  blip                BlipForImageTextRetrieval's ITC heads: vision CLS -> vision_proj,
                      text CLS -> text_proj (256-d). The ITM head is a cross-encoder, not indexable.
  blip-2              Blip2ForImageTextRetrieval's ITC heads. BLIP-2 gives an image one vector per
                      query token (32) and scores a text by the MAX cosine over them; an index
                      holds one vector per image, so we store the mean of the L2-normalised query
                      vectors. Its dot product with a text is the MEAN cosine: an approximation
                      of BLIP-2's own ranking, close but not identical.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import transformers
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id
from PIL import Image
from transformers import (
    AlignModel,
    AutoImageProcessor,
    AutoTokenizer,
    Blip2ForImageTextRetrieval,
    BlipForImageTextRetrieval,
    CLIPModel,
    PretrainedConfig,
    Siglip2Model,
    SiglipModel,
)

from ..errors import ModelUnavailable, UsageError, first_line
from . import languages
from .base import EmbeddingModel, ModelFamily, cast, files_digest, torch_dtype

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# What decides the pixels, when the processor has it.
PIXEL_KEYS = (
    "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
    "do_normalize", "image_mean", "image_std", "do_pad", "patch_size", "max_num_patches",
)  # fmt: skip


# Dimensions of hub checkpoints whose config may not be downloaded yet, for `imgsearch models`;
# a config on disk wins. Every BLIP retrieval checkpoint has a 256-d ITC projection.
KNOWN_DIMS = {
    "Salesforce/blip-itm-base-coco": 256,
    "Salesforce/blip-itm-base-flickr": 256,
    "Salesforce/blip-itm-large-coco": 256,
    "Salesforce/blip-itm-large-flickr": 256,
    "google/siglip-base-patch16-256-multilingual": 768,
}


class HfFamily(ModelFamily):
    name = "hf"

    def canonical(self, name: str) -> str:
        name = name.strip()
        if _is_local(name):
            return os.path.abspath(os.path.expanduser(name))
        try:
            validate_repo_id(name)
        except HFValidationError:
            raise UsageError(
                f"hf:{name} is neither a hub id (org/name) nor a local folder (hf:/path/to/dir)"
            ) from None
        return name

    def info(self, name: str) -> dict:
        """The dimension from the config when it is on disk already; never touches the network."""
        try:
            config = _read_config(name, local_files_only=True)
            dim = _adapter_for(name, config)[1].config_dim(config)
        except (OSError, ValueError, UsageError):
            dim = KNOWN_DIMS.get(name)
        return {"dim": dim, "offline": False, "languages": languages.from_checkpoint_name(name, _is_local(name))}

    def weights_local(self, name: str) -> bool:
        """A saved folder, or a hub id already in the HF cache."""
        if _is_local(name):
            return os.path.isfile(os.path.join(name, "config.json"))
        return _hf_cached(name, "config.json") and any(_hf_cached(name, f) for f in WEIGHT_FILES)

    def load(self, name: str, device: str, precision: str) -> "HfModel":
        if _is_local(name) and not os.path.isdir(name):
            raise _unavailable(name, "no such folder")
        if _is_local(name) and not os.path.isfile(os.path.join(name, "config.json")):
            raise _unavailable(name, "no config.json in that folder")
        try:
            config = _read_config(name)
            model_class, adapter = _adapter_for(name, config)
            model = model_class.from_pretrained(name, config=config)
            tokenizer = AutoTokenizer.from_pretrained(name)
            processor = AutoImageProcessor.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise _unavailable(name, first_line(e)) from None
        return adapter(name, config, model, tokenizer, processor, device, precision)


def _is_local(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or os.path.isdir(name)


def _hf_cached(repo: str, filename: str) -> bool:
    return isinstance(try_to_load_from_cache(repo, filename), str)


def _read_config(name: str, local_files_only: bool = False) -> PretrainedConfig:
    # The raw dict first: an unsupported model_type is a usage error, not a failed download.
    raw, _ = PretrainedConfig.get_config_dict(name, local_files_only=local_files_only)
    model_type = raw.get("model_type")
    if model_type not in ADAPTERS:
        raise UsageError(
            f"hf:{name} is a {model_type or 'untyped'} model; supported model types: {', '.join(ADAPTERS)}"
        )
    return ADAPTERS[model_type][0].config_class.from_dict(raw)


def _adapter_for(name: str, config: PretrainedConfig) -> tuple[type, type["HfModel"]]:
    model_class, adapter = ADAPTERS[config.model_type]
    # BLIP and BLIP-2 captioning/VQA checkpoints share the model_type but lack the contrastive
    # heads: loading them would fill the projections with random weights, silently.
    saved = config.architectures or []
    if config.model_type in ("blip", "blip-2") and saved and model_class.__name__ not in saved:
        raise UsageError(
            f"hf:{name} is a {saved[0]} checkpoint with no image-text retrieval (ITC) heads; "
            f"use a {model_class.__name__} checkpoint, e.g. hf:Salesforce/blip-itm-base-coco"
        )
    return model_class, adapter


def _unavailable(name: str, reason: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"cannot load hf:{name}: {reason.rstrip('.')}. Offline? Download it once with internet, or pass a "
        "folder saved with save_pretrained: hf:/path/to/dir"
    )


class HfModel(EmbeddingModel):
    """What every transformers adapter shares: loading, casting, tokenising, preprocessing."""

    family = HfFamily.name
    padding: bool | str = True
    keep_fp32: tuple[str, ...] = ()  # Linear layers int8 leaves alone
    text_inputs = ("input_ids", "attention_mask")

    def __init__(self, name, config, model, tokenizer, processor, device="cpu", precision="fp32"):
        self.spec = f"{self.family}:{name}"
        self.device, self.precision = device, precision
        self.dim = self.config_dim(config)
        self._model = cast(model, precision, device, self.keep_fp32)
        self._dtype = torch_dtype(precision)
        self._tokenizer = tokenizer
        self._processor = processor
        self._fingerprint = self._weights_fingerprint(name)  # now, while the files are the ones loaded
        self._max_length = min(_text_config(config).max_position_embeddings, tokenizer.model_max_length)

    @staticmethod
    def config_dim(config: PretrainedConfig) -> int:
        return config.projection_dim

    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self._processor(images=image, return_tensors="pt")["pixel_values"][0]

    def preprocess_config(self) -> dict:
        cfg = {"library": "transformers", "processor": type(self._processor).__name__}
        for key, value in self._processor.to_dict().items():
            if key in PIXEL_KEYS:
                cfg[key] = _jsonable(key, value)
        return cfg

    def _tokens(self, texts: list[str]) -> dict:
        tokens = self._tokenizer(
            texts, padding=self.padding, truncation=True, max_length=self._max_length, return_tensors="pt"
        )
        return {k: tokens[k].to(self.device) for k in self.text_inputs if k in tokens}

    def versions(self) -> dict:
        return {**super().versions(), "transformers": transformers.__version__}

    def fingerprint(self) -> str:
        return self._fingerprint

    @staticmethod
    def _weights_fingerprint(name: str) -> str:
        if _is_local(name):
            return files_digest(os.path.join(name, n) for n in os.listdir(name)
                                if n in WEIGHT_FILES or n == "config.json" or n.endswith((".safetensors", ".bin")))
        return f"transformers {transformers.__version__}: {name}"


def _text_config(config: PretrainedConfig) -> PretrainedConfig:
    return getattr(config, "qformer_config", None) or config.text_config


def _jsonable(key: str, value):
    if key == "resample" and value is not None:
        return Image.Resampling(int(value)).name.lower()
    return list(value) if isinstance(value, tuple) else value


def _pooled(out) -> torch.Tensor:
    """get_*_features return a tensor in transformers 4.x, a model output (pooler_output) in 5.x."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class DualEncoder(HfModel):
    """CLIP: the checkpoint's own projected features."""

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        return _pooled(self._model.get_image_features(pixel_values=batch.to(self._dtype)))

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        return _pooled(self._model.get_text_features(**self._tokens(texts)))


class AlignEncoder(DualEncoder):
    # BERT text tower: segment ids as the tokenizer gives them; padding=True gives the same CLS
    # vector as the processor's pad-to-64, because padded positions are masked out.
    text_inputs = ("input_ids", "attention_mask", "token_type_ids")


class SiglipEncoder(DualEncoder):
    # SigLIP pools the LAST position and was trained on texts padded to max length (64 in every
    # released checkpoint) with no attention mask: shorter padding or a mask changes the vector.
    padding = "max_length"
    text_inputs = ("input_ids",)

    @staticmethod
    def config_dim(config: PretrainedConfig) -> int:
        return config.vision_config.hidden_size


class NaflexEncoder(SiglipEncoder):
    """NaFlex SigLIP2: an image is (patches, patch mask, grid shape) at its own aspect ratio.

    preprocess packs the three into one (max_num_patches, patch_dim + 3) tensor so that images
    stack into a batch like every other model's CHW tensors: the last three columns hold the
    mask and the (rows, cols) grid.
    """

    # transformers reads this Linear's weight dtype, a method once quantised; it is a sliver
    # of the compute.
    keep_fp32 = ("vision_model.embeddings.patch_embedding",)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        out = self._processor(images=image, return_tensors="pt")
        patches, mask, grid = out["pixel_values"][0], out["pixel_attention_mask"][0], out["spatial_shapes"][0]
        extra = torch.cat([mask[:, None], grid.expand(len(mask), 2)], dim=1).to(patches.dtype)
        return torch.cat([patches, extra], dim=1)

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        patches, mask, grid = batch[..., :-3], batch[..., -3].long(), batch[:, 0, -2:].long()
        out = self._model.get_image_features(
            pixel_values=patches.to(self._dtype), pixel_attention_mask=mask, spatial_shapes=grid
        )
        return _pooled(out)


class BlipItc(HfModel):
    """BLIP retrieval checkpoints: the contrastive (ITC) projections of the CLS tokens."""

    @staticmethod
    def config_dim(config: PretrainedConfig) -> int:
        return config.image_text_hidden_size

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        hidden = self._model.vision_model(pixel_values=batch.to(self._dtype)).last_hidden_state
        return self._model.vision_proj(hidden[:, 0, :])

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        hidden = self._model.text_encoder(**self._tokens(texts)).last_hidden_state
        return self._model.text_proj(hidden[:, 0, :])


class Blip2Itc(BlipItc):
    """BLIP-2 retrieval checkpoints: Q-Former query vectors, averaged (see the module docstring)."""

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        m = self._model
        patches = m.vision_model(pixel_values=batch.to(self._dtype)).last_hidden_state
        patch_mask = torch.ones(patches.shape[:-1], dtype=torch.long, device=patches.device)
        queries = m.qformer(
            query_embeds=m.query_tokens.expand(len(patches), -1, -1),
            encoder_hidden_states=patches,
            encoder_attention_mask=patch_mask,
        ).last_hidden_state
        # One vector per image: the mean of the unit query vectors (mean cosine, not max).
        return F.normalize(m.vision_projection(queries), dim=-1).mean(dim=1)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        m, tokens = self._model, self._tokens(texts)
        hidden = m.qformer(
            query_embeds=m.embeddings(input_ids=tokens["input_ids"]),
            query_length=0,
            attention_mask=tokens["attention_mask"],
        ).last_hidden_state
        return m.text_projection(hidden[:, 0, :])


# model_type -> (transformers class, adapter)
ADAPTERS = {
    "clip": (CLIPModel, DualEncoder),
    "align": (AlignModel, AlignEncoder),
    "siglip": (SiglipModel, SiglipEncoder),
    "siglip2": (Siglip2Model, NaflexEncoder),
    "blip": (BlipForImageTextRetrieval, BlipItc),
    "blip-2": (Blip2ForImageTextRetrieval, Blip2Itc),
}
