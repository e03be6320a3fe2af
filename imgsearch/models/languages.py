"""Which query languages a model claims to understand, as ISO 639-1 codes (None: not stated).

A claim is what the model's authors trained for, not a measurement: `imgsearch eval --lang`
measures. Dataset codes such as tuxpaint's "pt_BR" or "ca@valencia" match on their base code.
"""

from __future__ import annotations

ENGLISH = ("en",)

# Google's multilingual Universal Sentence Encoder v3 (its model card's 16 languages; zh-cn and
# zh-tw are both "zh" here).
USE_M3 = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")

# The CC-100 languages XLM-RoBERTa was trained on (its paper's table), which multilingual-e5
# and open_clip's xlm-roberta text towers inherit. Romanised variants share their base code.
XLM_R = (
    "af", "am", "ar", "as", "az", "be", "bg", "bn", "br", "bs", "ca", "cs", "cy", "da", "de", "el",
    "en", "eo", "es", "et", "eu", "fa", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi",
    "hr", "hu", "hy", "id", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "ku", "ky", "la",
    "lo", "lt", "lv", "mg", "mk", "ml", "mn", "mr", "ms", "my", "ne", "nl", "no", "om", "or", "pa",
    "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si", "sk", "sl", "so", "sq", "sr", "su", "sv", "sw",
    "ta", "te", "th", "tl", "tr", "ug", "uk", "ur", "uz", "vi", "xh", "yi", "zh",
)


def base_code(code: str) -> str:
    """"pt_BR" -> "pt", "ca@valencia" -> "ca", "zh-TW" -> "zh"."""
    for sep in ("@", "_", "-", "."):
        code = code.split(sep)[0]
    return code.lower()


def claims(languages: tuple[str, ...] | list[str] | None, code: str) -> bool | None:
    """Whether a model that claims `languages` claims `code`; None when it states no list."""
    if languages is None:
        return None
    return base_code(code) in languages


def describe(languages: tuple[str, ...] | list[str] | None) -> str:
    """Short text for `imgsearch models`."""
    if languages is None:
        return "multilingual (list not stated)"
    if len(languages) > 20:
        return f"{len(languages)} languages"
    return " ".join(languages)


# Markers in checkpoint names of multilingual image-text models whose language list is not a
# fixed published one (SigLIP i18n / SigLIP 2 on WebLI, NLLB-CLIP, AltCLIP-m9/m18, M-CLIP).
_MULTILINGUAL_MARKERS = ("i18n", "siglip2", "nllb", "multilingual", "altclip-m", "m-clip", "mclip")


def from_checkpoint_name(name: str, local: bool) -> tuple[str, ...] | None:
    """The claim read off a published checkpoint's name: XLM-R text towers claim XLM-R's
    languages, other multilingual markers claim an unstated list, anything else English
    (CLIP-family checkpoints are trained on English captions unless named otherwise). A local
    checkpoint's name says nothing: None."""
    lowered = name.lower()
    if "xlm-roberta" in lowered or "xlm_roberta" in lowered:
        return XLM_R
    if any(marker in lowered for marker in _MULTILINGUAL_MARKERS) or local:
        return None
    return ENGLISH
