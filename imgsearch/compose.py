"""Compositional queries: several texts and images, added and subtracted, as one query vector.

The arithmetic, the same for every model: each term's vector is L2-normalised (the models
already return unit vectors; normalising again keeps the rule true for any input), multiplied
by its weight (negative for a minus term), the products are summed, and the sum is normalised
again, so that scores stay cosine similarities and comparable with a plain query's:

    q = normalise( sum_i w_i * normalise(v_i) )

"beach" minus "people" is normalise(v_beach - v_people); a photo "at night" is
normalise(w_image * v_photo + w_text * v_at_night). Terms that cancel (the same text added and
subtracted at equal weight) leave no direction to search in: an error, not a random ranking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

KINDS = ("text", "image")
CANCELLED_NORM = 1e-6


@dataclass(frozen=True)
class Term:
    kind: str  # "text" | "image"
    value: str  # the text, or the image's path
    weight: float  # negative: subtracted

    def label(self) -> str:
        shown = self.value if self.kind == "text" else f"[image {self.value}]"
        return shown if abs(self.weight) == 1 else f"{shown}*{abs(self.weight):g}"


def check_weight(weight: float, name: str = "weight") -> float:
    if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise UsageError(f"bad {name} {weight!r}: give a positive number (a minus term's sign is its own)")
    return float(weight)


def query_terms(text: str | None = None, image: str | None = None, plus=(), minus=(), *,
                text_weight: float = 1.0, image_weight: float = 1.0, plus_weight: float = 1.0,
                minus_weight: float = 1.0) -> list[Term]:
    """The terms of `search [TEXT] [--image PATH] --plus T ... --minus T ...`, weights checked."""
    weights = {"text weight": text_weight, "image weight": image_weight, "plus weight": plus_weight,
               "minus weight": minus_weight}
    for name, weight in weights.items():
        check_weight(weight, name)
    terms = []
    if image is not None:
        terms.append(Term("image", image, float(image_weight)))
    if text is not None:
        terms.append(Term("text", text, float(text_weight)))
    terms += [Term("text", t, float(plus_weight)) for t in plus]
    terms += [Term("text", t, -float(minus_weight)) for t in minus]
    if not any(t.weight > 0 for t in terms):
        raise UsageError("a query needs a text or an image to search for, not only --minus terms")
    for t in terms:
        if t.kind == "text" and not t.value.strip():
            raise UsageError("empty query text")
    return terms


def combine(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """normalise(sum_i w_i * normalise(v_i)) as float32."""
    if not vectors or len(vectors) != len(weights):
        raise ValueError("need one weight per vector")
    total = np.zeros(np.asarray(vectors[0]).shape[-1], dtype=np.float64)
    for vector, weight in zip(vectors, weights):
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        norm = np.linalg.norm(v)
        if norm == 0:
            raise UsageError("a query term has a zero vector")
        total += weight * v / norm
    norm = np.linalg.norm(total)
    if norm < CANCELLED_NORM:
        raise UsageError("the query terms cancel each other out: nothing is left to search for")
    return (total / norm).astype(np.float32)


def describe(terms: list[Term]) -> str:
    """"beach - people", "[image a.jpg] + at night*0.5": how the query reads."""
    out = ""
    for i, term in enumerate(terms):
        sign = "-" if term.weight < 0 else "+"
        out += (("- " if sign == "-" else "") if i == 0 else f" {sign} ") + term.label()
    return out


def terms_to_dict(terms: list[Term]) -> list[dict]:
    return [{"kind": t.kind, "value": t.value, "weight": t.weight} for t in terms]
