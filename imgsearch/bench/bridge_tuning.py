"""The offline bridge's settings chosen on one split of a captioned set, reported on another.

The bridge models (models/bridge.py) have four settings that were once picked by looking at
all 785 tuxpaint stamps, the set their figures were then reported on: the resize (fit and pad
on white, or squash to a square), the softmax temperature T, how many top classes are kept,
and the prompt template(s) each ImageNet class name is embedded with. This bench splits the
set in two, seeded, by caption group (images linked by a shared caption, compared after
case-folding and dropping a final full stop, always fall in the same half, so "A flower." on
six stamps cannot be learnt on one half and scored on the other), grid-searches the settings
on the tuning half and reports the chosen settings, and today's defaults, on the held-out
half with percentile-bootstrap intervals and a paired test (imgsearch.stats).

Each half is its own collection: its captions are queried against its own images only, with
CLIP_benchmark's relevance rule (a caption is relevant to the image it was written for) and
ties counted against the model, as `imgsearch eval` does. Figures on a half of the stamps are
therefore higher than on all of them (fewer distractors); compare the halves with each other.

What costs time is computed once: the classifier's class probabilities per image and resize,
each caption through the model's own query path (embed_query, batch 1, as eval does), and the
class-prompt matrix per template. A grid point is then matrix arithmetic. The image vector of
a setting is models.bridge.class_mixture of the log-probabilities (a per-image constant away
from the logits, which softmax ignores), so the default setting reproduces the real model's
vectors to float rounding.

Settings are ranked by mean recall@k over the report's k on the tuning half; ties go to
today's defaults, then to the first in grid order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.models import ResNet50_Weights

from ..config import cache_dir
from ..datasets import EvalSet, load_dataset
from ..decode import read_and_decode
from ..errors import UsageError
from ..models import get_model
from ..models.bridge import PROMPTS, VARIANTS, class_mixture
from ..stats import DEFAULT_RESAMPLES, DEFAULT_SEED, INTERVAL_METHOD, TEST_METHOD, bootstrap_interval, paired_comparison
from .machine import finish, machine_facts

KS = (1, 5, 10)
RESIZES = ("pad", "squash")
TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0)
TOP_KS = (5, 10, 20, 50, 0)  # 0: all 1000 classes
PROMPT_SETS = {
    "photo": ("a photo of a {}.",),
    "bare": ("{}",),
    "drawing": ("a drawing of a {}.",),
    "ensemble": ("a photo of a {}.", "a drawing of a {}.", "a cartoon of a {}.", "an illustration of a {}."),
}
DEFAULT_VARIANTS = ("lite0", "lite2")
HELD_OUT_FRACTION = 0.5
SPLIT_SEED = 0
CHUNK = 64  # images per classifier batch


def run_bridge_tuning(
    dataset: str = "tuxpaint",
    variants: Sequence[str] = DEFAULT_VARIANTS,
    seed: int = SPLIT_SEED,
    held_out_fraction: float = HELD_OUT_FRACTION,
    resamples: int = DEFAULT_RESAMPLES,
    progress: Callable[[str], None] | None = None,
    *,
    resizes: Sequence[str] = RESIZES,
    temperatures: Sequence[float] = TEMPERATURES,
    top_ks: Sequence[int] = TOP_KS,
    prompt_sets: dict[str, tuple[str, ...]] | None = None,
    limit: int | None = None,
) -> dict:
    """Tune each bridge variant on one split of `dataset`, report it on the other; see the module
    docstring. limit keeps the first `limit` images of the set (for tests). Plain data out."""
    prompt_sets = dict(PROMPT_SETS if prompt_sets is None else prompt_sets)
    _check(variants, held_out_fraction, resizes, temperatures, top_ks, prompt_sets)
    say = progress or (lambda line: None)
    started = time.perf_counter()
    machine = machine_facts()
    evalset = load_dataset(dataset)  # own-image relevance, the default
    if limit is not None:
        evalset = first_images(evalset, limit)
    image_of_query = own_images(evalset)
    tuning, held_out, groups = split_by_caption_group(evalset, image_of_query, seed, held_out_fraction)
    say(f"{evalset.name}: {len(evalset.images)} images in {groups} caption groups; tuning "
        f"{len(tuning[0])} images / {len(tuning[1])} queries, held out {len(held_out[0])} / {len(held_out[1])}")

    models = {name: get_model(f"bridge:{name}", precision="fp32") for name in variants}
    t0 = time.perf_counter()
    log_probs, cached = class_log_probabilities(models, evalset.images, [*dict.fromkeys([*resizes, "pad"])])
    image_s = time.perf_counter() - t0
    say(f"class probabilities of {len(evalset.images)} images, {len(models)} variants x "
        f"{len(resizes)} resizes in {image_s:.1f} s" + (" (cached)" if cached else ""))
    out = {}
    for name, model in models.items():
        out[name] = _tune_variant(model, name, log_probs[name], evalset, image_of_query, tuning, held_out, resizes,
                                  temperatures, top_ks, prompt_sets, resamples, say)
    return {
        "config": {
            "dataset": evalset.name, "relevance": evalset.relevance, "variants": list(variants), "seed": seed,
            "held_out_fraction": held_out_fraction, "ks": list(KS), "limit": limit,
            "grid": {"resize": list(resizes), "temperature": list(temperatures), "top_k": list(top_ks),
                     "prompts": {k: list(v) for k, v in prompt_sets.items()}},
            "selection": "highest mean recall@1/5/10 on the tuning split; ties: the default, then grid order",
            "gallery": "each split is its own collection (its captions against its own images)",
            "interval_method": INTERVAL_METHOD, "test_method": TEST_METHOD, "resamples": resamples,
            "bootstrap_seed": DEFAULT_SEED,
        },
        "machine": finish(machine),
        "split": {"groups": groups,
                  "tuning": {"images": len(tuning[0]), "queries": len(tuning[1])},
                  "held_out": {"images": len(held_out[0]), "queries": len(held_out[1])}},
        "variants": out,
        "image_side_s": round(image_s, 2),
        "image_side_cached": cached,
        "total_s": round(time.perf_counter() - started, 2),
    }


def default_settings(variant: str) -> dict:
    """Today's settings of a bridge variant, as models/bridge.py holds them."""
    v = VARIANTS[variant]
    return {"resize": "pad", "temperature": float(v.temperature), "top_k": int(v.top_k), "prompts": list(PROMPTS)}


# -- the split ------------------------------------------------------------------------------

def caption_key(text: str) -> str:
    return text.strip().casefold().rstrip(".").strip()


def split_by_caption_group(evalset: EvalSet, image_of_query: list[int], seed: int,
                           held_out_fraction: float) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]], int]:
    """((tuning image indices, their query indices), (held-out ...), number of groups).

    Images linked by a shared caption key form one group (union-find); the groups, in order of
    their smallest image index, are shuffled with numpy.random.default_rng(seed) and dealt to
    the held-out split until it holds at least held_out_fraction of the images."""
    parent = list(range(len(evalset.images)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_key: dict[str, int] = {}
    for q, query in enumerate(evalset.queries):
        image = image_of_query[q]
        other = first_with_key.setdefault(caption_key(query.text), image)
        parent[root(image)] = root(other)
    members: dict[int, list[int]] = {}
    for i in range(len(evalset.images)):
        members.setdefault(root(i), []).append(i)
    groups = sorted(members.values(), key=min)
    order = np.random.default_rng(seed).permutation(len(groups))
    held, target = set(), held_out_fraction * len(evalset.images)
    for g in order:
        if len(held) >= target:
            break
        held.update(groups[g])
    tuning_images = [i for i in range(len(evalset.images)) if i not in held]
    held_images = sorted(held)

    def queries_of(images: list[int]) -> list[int]:
        chosen = set(images)
        return [q for q, image in enumerate(image_of_query) if image in chosen]

    return (tuning_images, queries_of(tuning_images)), (held_images, queries_of(held_images)), len(groups)


# -- one variant ----------------------------------------------------------------------------

def _tune_variant(model, name, log_probs, evalset, image_of_query, tuning, held_out, resizes, temperatures, top_ks,
                  prompt_sets, resamples, say) -> dict:
    default = default_settings(name)
    if tuple(default["prompts"]) not in {tuple(p) for p in prompt_sets.values()}:
        prompt_sets = {"default": tuple(default["prompts"]), **prompt_sets}

    t0 = time.perf_counter()
    queries = np.stack([model.embed_query(q.text) for q in evalset.queries])
    classes = ResNet50_Weights.DEFAULT.meta["categories"]
    per_template = {t: model.embed_documents([t.format(c) for c in classes])
                    for t in dict.fromkeys(t for templates in prompt_sets.values() for t in templates)}
    class_matrices = {label: prompt_matrix([per_template[t] for t in templates])
                      for label, templates in prompt_sets.items()}
    text_s = time.perf_counter() - t0
    say(f"bridge:{name}: {len(queries)} queries and {len(prompt_sets)} prompt sets embedded in {text_s:.1f} s")

    def hits(settings: dict, split) -> np.ndarray:
        label = next(k for k, v in prompt_sets.items() if list(v) == settings["prompts"])
        vectors = image_vectors(log_probs[settings["resize"]], class_matrices[label], settings["temperature"],
                                settings["top_k"])
        return split_hits(vectors, queries, image_of_query, split)

    t0 = time.perf_counter()
    grid = []
    for resize, temperature, top_k, label in itertools.product(resizes, temperatures, top_ks, prompt_sets):
        settings = {"resize": resize, "temperature": float(temperature), "top_k": int(top_k),
                    "prompts": list(prompt_sets[label])}
        grid.append({"settings": settings, "prompt_set": label, "tuning": recall_figures(hits(settings, tuning))})
    grid_s = time.perf_counter() - t0
    best = max(range(len(grid)), key=lambda i: (grid[i]["tuning"]["mean_recall"],
                                                grid[i]["settings"] == default, -i))
    chosen = grid[best]["settings"]
    chosen_hits, default_hits = hits(chosen, held_out), hits(default, held_out)
    reported = {"chosen": recall_figures(chosen_hits, resamples), "default": recall_figures(default_hits, resamples)}
    result = {
        "chosen": chosen, "default": default, "chosen_is_default": chosen == default,
        "tuning": {"chosen": grid[best]["tuning"], "default": recall_figures(hits(default, tuning))},
        "held_out": reported,
        "held_out_chosen_minus_default": {
            f"recall@{k}": paired_comparison(chosen_hits[:, j], default_hits[:, j], resamples, DEFAULT_SEED)
            for j, k in enumerate(KS)},
    }
    say(f"bridge:{name}: {len(grid)} settings in {grid_s:.1f} s; chosen {_describe(chosen)}; held-out R@10 "
        f"{reported['chosen']['recall@10']:.3f}")
    result["grid"] = grid
    result["timings_s"] = {"text": round(text_s, 2), "grid": round(grid_s, 2)}
    return result


def class_log_probabilities(models: dict, paths: list[str], resizes: Sequence[str]) -> tuple[dict, bool]:
    """{variant: {resize: n x 1000 log softmax of the classifier's logits}} and whether it came
    from the cache. Each image is decoded once, as the indexer decodes it, for every variant and
    resize; "squash" hands a model a size x size image, which its fit-and-pad leaves as it is.
    Cached under the imgsearch cache dir by the files' paths, sizes and mtimes and the models'
    versions, since this is the slow part (minutes on 2 shared cores) and the grid is not."""
    path = os.path.join(cache_dir(), "bridge-tuning", _cache_key(models, paths, resizes) + ".npz")
    try:
        with np.load(path) as stored:
            return {name: {r: torch.from_numpy(stored[f"{name}/{r}"]) for r in resizes} for name in models}, True
    except (OSError, KeyError, ValueError):
        pass  # not computed yet, or unreadable: compute it
    rows = {(name, r): [] for name in models for r in resizes}
    for start in range(0, len(paths), CHUNK):
        images = [read_and_decode(p).image for p in paths[start:start + CHUNK]]
        for name, model in models.items():
            size = VARIANTS[name].size
            for r in resizes:
                batch = images if r == "pad" else [img.resize((size, size), Image.BICUBIC) for img in images]
                rows[(name, r)].append(model.class_probabilities(batch))
    tiny = np.finfo(np.float32).tiny
    arrays = {f"{name}/{r}": np.log(np.maximum(np.concatenate(chunks), tiny)) for (name, r), chunks in rows.items()}
    save_quietly(path, arrays)
    return {name: {r: torch.from_numpy(arrays[f"{name}/{r}"]) for r in resizes} for name in models}, False


def _cache_key(models: dict, paths: list[str], resizes: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name, model in sorted(models.items()):
        digest.update(json.dumps([name, model.versions(), model.preprocess_config()], sort_keys=True).encode())
    digest.update(json.dumps(list(resizes)).encode())
    for p in paths:
        st = os.stat(p)
        digest.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def save_quietly(path: str, arrays: dict) -> None:
    """Via a temporary name, so a concurrent reader never sees half a file; a read-only cache
    dir costs the next run its minutes, not this one its result."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(partial, **arrays)
        os.replace(partial, path)
    except OSError:
        pass


def prompt_matrix(per_template: list[np.ndarray]) -> torch.Tensor:
    """Per class, the mean of its prompts' unit embeddings, renormalised (as the bridge builds it)."""
    mean = np.mean(per_template, axis=0)
    return torch.from_numpy((mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32))


def image_vectors(log_probs: torch.Tensor, class_matrix: torch.Tensor, temperature: float, top_k: int) -> np.ndarray:
    mixed = class_mixture(log_probs, class_matrix, temperature, top_k)
    return (mixed / mixed.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy()


def split_hits(vectors: np.ndarray, queries: np.ndarray, image_of_query: list[int],
               split: tuple[list[int], list[int]]) -> np.ndarray:
    """(queries of the split) x len(KS) 0/1 hits: the own image's rank among the split's images,
    ties counted against the model, at most k. Scores are float64 sums rounded to float32."""
    return hits_of_scores(split_scores(vectors, queries, split).astype(np.float32), image_of_query, split)


def split_scores(vectors: np.ndarray, queries: np.ndarray, split: tuple[list[int], list[int]]) -> np.ndarray:
    """(queries of the split) x (images of the split) inner products, summed in float64."""
    images, query_ids = split
    return queries[query_ids].astype(np.float64) @ vectors[images].astype(np.float64).T


def hits_of_scores(scores: np.ndarray, image_of_query: list[int], split: tuple[list[int], list[int]]) -> np.ndarray:
    """split_hits from the split's score matrix (rows: its queries, columns: its images)."""
    images, query_ids = split
    position = {image: j for j, image in enumerate(images)}
    own = np.array([position[image_of_query[q]] for q in query_ids])
    own_scores = scores[np.arange(len(query_ids)), own]
    ranks = (scores >= own_scores[:, None]).sum(axis=1)  # the own image counts itself once
    return np.stack([(ranks <= k) for k in KS], axis=1).astype(np.float64)


def recall_figures(hits: np.ndarray, resamples: int | None = None) -> dict:
    figures = {f"recall@{k}": float(hits[:, j].mean()) for j, k in enumerate(KS)}
    figures["mean_recall"] = float(hits.mean())
    figures["queries"] = len(hits)
    if resamples:
        intervals = bootstrap_interval(hits, resamples, DEFAULT_SEED)
        figures["ci95"] = {f"recall@{k}": intervals[j].tolist() for j, k in enumerate(KS)}
    return figures


def own_images(evalset: EvalSet) -> list[int]:
    position = {path: i for i, path in enumerate(evalset.images)}
    own = []
    for query in evalset.queries:
        if len(query.relevant) != 1:
            raise UsageError(f"{evalset.name}: bridge tuning needs one image per caption (own-image relevance)")
        own.append(position[query.relevant[0]])
    return own


def first_images(evalset: EvalSet, limit: int) -> EvalSet:
    kept = set(evalset.images[:limit])
    queries = [q for q in evalset.queries if set(q.relevant) <= kept]
    return EvalSet(evalset.name, evalset.format, evalset.root, evalset.images[:limit], queries,
                   {p: c for p, c in evalset.captions_per_image.items() if p in kept}, lang=evalset.lang,
                   relevance=evalset.relevance)


def _check(variants, held_out_fraction, resizes, temperatures, top_ks, prompt_sets) -> None:
    unknown = [v for v in variants if v not in VARIANTS]
    bad = (not variants or unknown or not 0 < held_out_fraction < 1 or not resizes or set(resizes) - set(RESIZES)
           or not temperatures or min(temperatures) <= 0 or not top_ks or min(top_ks) < 0 or not prompt_sets
           or any(not t or any("{}" not in s for s in t) for t in prompt_sets.values()))
    if bad:
        raise UsageError(f"bridge tuning needs variants from {', '.join(VARIANTS)}, a held-out fraction in (0, 1), "
                         f"resizes from {', '.join(RESIZES)}, temperatures > 0, top-k >= 0 and templates with "
                         f"'{{}}'; got variants {list(variants)}, fraction {held_out_fraction}")


def _describe(settings: dict) -> str:
    top = settings["top_k"] or "all"
    return (f"{settings['resize']}, T={settings['temperature']:g}, top-{top}, "
            f"prompts {' | '.join(settings['prompts'])}")


def bridge_tuning_lines(result: dict):
    """What `imgsearch bench bridge-tuning` prints."""
    machine, split, config = result["machine"], result["split"], result["config"]
    yield (f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, flags {' '.join(machine['cpu_flags'])}; "
           f"load {machine['load_average_start'][0]:.1f} -> {machine['load_average_end'][0]:.1f}")
    yield (f"{config['dataset']}: {split['groups']} caption groups, split seed {config['seed']}: tuning "
           f"{split['tuning']['images']} images / {split['tuning']['queries']} queries, held out "
           f"{split['held_out']['images']} / {split['held_out']['queries']} (each split its own collection)")
    for name, v in result["variants"].items():
        for label in ("chosen", "default"):
            if label == "default" and v["chosen_is_default"]:
                continue
            tuned, held = v["tuning"][label], v["held_out"][label]
            yield f"bridge:{name} {label}: {_describe(v[label])}"
            yield "  tuning split:   " + "  ".join(f"R@{k} {tuned[f'recall@{k}']:.3f}" for k in KS)
            yield "  held-out split: " + "  ".join(
                f"R@{k} {held[f'recall@{k}']:.3f} [{held['ci95'][f'recall@{k}'][0]:.3f},"
                f"{held['ci95'][f'recall@{k}'][1]:.3f}]" for k in KS)
        diff = v["held_out_chosen_minus_default"]
        if not v["chosen_is_default"]:
            yield "  held out, chosen - default: " + "  ".join(
                f"R@{k} {d['difference']:+.3f} [{d['ci95'][0]:+.3f},{d['ci95'][1]:+.3f}] p={d['p_value']:.3g}"
                for k, d in zip(KS, diff.values()))
    yield f"{config['interval_method']}, {config['resamples']} resamples, seed {config['bootstrap_seed']}"
