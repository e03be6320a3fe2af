"""One evaluation across several query languages: the same images, every model, one report.

Each language is a full evaluate() run over the same collection (datasets.load_languages gives
every language the same images; a language's queries are the captions it has), through the
same indexes, which the first run builds and the others find up to date. The first language's
run is the report's main body (per-query records, latency, cost); every language adds one row
per model to results["languages"]: recall@k with its 95% interval, query count, encode p50,
whether the model claims that language, and the best model for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import stats
from .datasets import EvalSet
from .errors import UsageError
from .evaluate import ALPHA, DEFAULT_KS, evaluate
from .models import claimed_languages, languages
from .progress import NullProgress


def evaluate_languages(
    datasets: list[EvalSet],
    model_specs: list[str],
    index_dir: str | None = None,
    *,
    ks: tuple[int, ...] = DEFAULT_KS,
    factory: str | None = None,
    precisions: Sequence[str] = ("auto",),
    resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
    isolated_cost: bool = True,
    progress=NullProgress,
    status: Callable[[str], None] = lambda line: None,
) -> dict:
    if not datasets:
        raise UsageError("name at least one language")
    if len({tuple(d.images) for d in datasets}) != 1:
        raise UsageError("the languages' datasets must share one collection of images")
    results, rows = None, []
    for n, dataset in enumerate(datasets):
        status(f"language {dataset.lang} ({n + 1} of {len(datasets)}): {len(dataset.queries)} queries")
        run = evaluate(dataset, model_specs, index_dir, ks=ks, factory=factory, precisions=precisions,
                       resamples=resamples, seed=seed, isolated_cost=isolated_cost and n == 0,
                       progress=progress, status=status)
        rows.append(language_row(dataset.lang, run))
        if results is None:
            results = run
    results["dataset"]["lang"] = ", ".join(d.lang for d in datasets)
    results["languages"] = {
        "codes": [d.lang for d in datasets],
        "images": len(datasets[0].images),
        "main": datasets[0].lang,
        "rule": "every language searches the same images through the same indexes; a language's queries are "
                "the captions it has; `claimed` is the model's stated language list (None: not stated)",
        "per_language": rows,
    }
    return results


def language_row(lang: str, run: dict) -> dict:
    """One language's figures per model, and the best model for it by mean recall@k (with the
    models a paired test cannot tell apart from it)."""
    models = []
    for model in run["models"]:
        t2i = model["t2i"]
        models.append({
            "label": model["label"],
            "spec": model["spec"],
            "claimed": languages.claims(claimed_languages(model["spec"]), lang),
            "t2i": {key: t2i[key] for key in t2i if key.startswith("recall@") or key in ("mean_recall@k", "mrr")},
            "t2i_ci95": {key: value for key, value in model["t2i_ci95"].items() if key.startswith("recall@")
                         or key == "mean_recall@k"},
            "encode_p50_ms": model["latency_ms"]["encode"]["p50"],
        })
    best = max(models, key=lambda m: m["t2i"]["mean_recall@k"])
    tied = [m["label"] for m in models if m is not best and _p_value(run["comparisons"], best["label"], m["label"])
            >= ALPHA]
    return {
        "lang": lang,
        "queries": run["query_set"]["measured"],
        "left_out": run["query_set"]["left_out"],
        "models": models,
        "best": best["label"],
        "indistinguishable_from_best": tied,
    }


def _p_value(comparisons: list[dict], a: str, b: str) -> float:
    for c in comparisons:
        if c["metric"] == "mean_recall@k" and {c["a"], c["b"]} == {a, b}:
            return c["p_value"]
    return 0.0
