"""Figures measured over interleaved rounds: which arm runs when, and each figure's median and
spread over the rounds.

Every round runs every arm once, so a busy moment on shared cores falls on all arms alike
instead of on whichever ran then; the order rotates from round to round, so no arm always
runs first (cold caches) or last. A ratio is taken within each round, between figures measured
minutes apart, and then summarised like any other figure.
"""

from __future__ import annotations

import numbers
import statistics
from collections.abc import Sequence

MIN_ROUNDS = 3  # a median and a spread of fewer rounds say nothing


def rotated(arms: Sequence, round_index: int) -> list:
    """The arms in round round_index's order: the list rotated by the round number."""
    shift = round_index % len(arms)
    return list(arms[shift:]) + list(arms[:shift])


def figure_summary(values: Sequence[float]) -> dict:
    """{"median", "min", "max", "spread", "n"} of one figure's per-round values; spread is
    (max - min) / median, the range relative to the figure (None when the median is 0)."""
    if not values:
        raise ValueError("figure_summary needs at least one value")
    median = statistics.median(values)
    low, high = min(values), max(values)
    return {"median": median, "min": low, "max": high, "spread": (high - low) / median if median else None,
            "n": len(values)}


def summarise(rounds: Sequence[dict]) -> dict:
    """Each numeric figure that every round's dict holds -> its figure_summary (None where a round
    has no value for it); keys that are not numbers (flags, labels) are left out."""
    keys = [key for key, value in rounds[0].items() if _is_figure(value) or value is None]
    out = {}
    for key in keys:
        values = [r.get(key) for r in rounds]
        out[key] = figure_summary(values) if all(_is_figure(v) for v in values) else None
    return out


def _is_figure(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
