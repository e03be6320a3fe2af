"""Duplicates benchmark: what separates copies of a picture from distinct pictures best?

The collection: the 785 captioned tuxpaint stamps (distinct pictures; files with the same
bytes count as one picture) plus, for a seeded sample of them, copies made here (COPY_KINDS):
JPEG re-encodes at quality 60 / 75 / 90, a 50% resize, a mirror image, a +15% brightness edit
and a 5% crop on every side.

Chosen on one half, reported on the other: the pictures are split at random (seeded) into a
"choose" half and a "report" half, each with its copies, each indexed with every model through
the real indexer into its own index dir. On the choose half each method's threshold is the one
with the best pairwise F1 (a pair of images is a copy pair when both show the same picture),
and the default method is the one whose chosen threshold scores best there. Every figure
reported comes from the report half, which nothing was chosen on:
  pairwise  AUC (a copy pair scores above a distinct pair), and precision / recall / F1 at the
            threshold chosen on the other half, each with a 95% percentile bootstrap interval
            over pictures (a resample draws pictures with replacement; a pair weighs the
            product of its two pictures' draw counts);
  groups    the real `find_duplicates` at that threshold (and at a sweep of thresholds): the
            share of copies of each kind in their original's group, and the groups that mix
            distinct stamps, also counted without the symbols category, whose glyphs include
            mirror-image pairs (b/d, p/q, < >) that no mirror-aware method can tell apart.
Methods: the perceptual hash, each model's vectors, and each model's vectors together with the
hash ("and": both must agree; "or": either suffices; pairwise figures only, since
`find_duplicates` uses one or the other).

Result (json.dumps works): {"config", "machine", "collection", "methods": [{"method", "model",
"chosen": {"threshold", "f1"}, "report": {"auc", "auc_ci95", "auc_without_symbols", "precision",
"precision_ci95", "recall", "recall_ci95", "f1", "f1_ci95", "groups", "hardest_distinct"},
"sweep": [{"threshold", ...groups}]}], "default", "total_s"}
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..datasets import TUXPAINT_STAMPS, load_dataset
from ..decode import to_rgb
from ..duplicates import DEFAULT_PHASH_BITS, MAX_PHASH_BITS, PHASH_BITS, find_duplicates, phash_codes
from ..indexer import index_folder
from ..models import resolve
from ..stats import percentile_interval
from ..store import Store
from .machine import finish, machine_facts
from .summary import machine_line

DEFAULT_MODELS = ("bridge:lite0", "bridge:lite2")
DEFAULT_RESAMPLES = 1000
PHASH_SWEEP = tuple(range(0, 13))
COSINE_SWEEP = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)
COSINE_GRID = np.round(np.arange(0.5, 1.0 + 1e-9, 0.001), 3)  # cosine thresholds tried on the choose half
BOTH_PHASH_GRID = tuple(range(0, 17))
BOTH_COSINE_GRID = np.round(np.arange(0.8, 1.0 + 1e-9, 0.005), 3)
HARDEST = 10
MIXED_SHOWN = 20
SYMBOLS = os.sep + "symbols" + os.sep
HALVES = ("choose", "report")


def _jpeg(quality: int):
    return lambda image, stem: (to_rgb(image), f"{stem}.jpg", {"quality": quality})


def _crop(image: Image.Image, stem: str):
    w, h = image.size
    return to_rgb(image).crop((w // 20, h // 20, w - w // 20, h - h // 20)), f"{stem}.jpg", {"quality": 90}


# name -> image, stem -> (copy, file name, save options)
COPY_KINDS = {
    "jpeg60": _jpeg(60),
    "jpeg75": _jpeg(75),
    "jpeg90": _jpeg(90),
    "resized50": lambda image, stem: (image.resize((max(1, image.width // 2), max(1, image.height // 2)),
                                                   Image.LANCZOS), f"{stem}.png", {}),
    "mirrored": lambda image, stem: (ImageOps.mirror(image), f"{stem}.png", {}),
    "brightened": lambda image, stem: (ImageEnhance.Brightness(to_rgb(image)).enhance(1.15), f"{stem}.jpg",
                                       {"quality": 90}),
    "cropped": _crop,
}


def write_copies(originals: list[str], folder: str, kinds=tuple(COPY_KINDS)) -> dict[str, tuple[str, str]]:
    """Copies of each original, one sub-folder per kind; copy path -> (original, kind)."""
    made = {}
    for kind in kinds:
        os.makedirs(os.path.join(folder, kind), exist_ok=True)
    for number, original in enumerate(originals):
        with Image.open(original) as image:
            image.load()
            stem = f"{number:04d}-{os.path.splitext(os.path.basename(original))[0]}"
            for kind in kinds:
                copy, name, options = COPY_KINDS[kind](image, stem)
                path = os.path.join(folder, kind, name)
                copy.save(path, **options)
                made[path] = (original, kind)
    return made


def split_pictures(paths: list[str], seed: int) -> tuple[list[str], list[str]]:
    """The paths in two halves at random, files with the same bytes always in the same half."""
    by_bytes: dict[str, list[str]] = {}
    for path in paths:
        with open(path, "rb") as f:
            by_bytes.setdefault(hashlib.sha256(f.read()).hexdigest(), []).append(path)
    pictures = sorted(by_bytes.values())
    order = np.random.default_rng(seed).permutation(len(pictures))
    half = len(pictures) // 2
    return ([p for i in order[:half] for p in pictures[i]], [p for i in order[half:] for p in pictures[i]])


def run_duplicates_bench(models=DEFAULT_MODELS, copies_of: int = 200, seed: int = 0,
                         n_resamples: int = DEFAULT_RESAMPLES, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda line: None)
    machine = machine_facts()
    started = time.perf_counter()
    specs = [resolve(m) for m in models]
    originals = load_dataset("tuxpaint").images
    halves = dict(zip(HALVES, split_pictures(originals, seed)))
    rng = np.random.default_rng(seed + 1)
    sample = set(originals[i] for i in rng.choice(len(originals), min(copies_of, len(originals)), replace=False))
    with tempfile.TemporaryDirectory(prefix="imgsearch-dup-bench-") as scratch:
        data, collection = {}, {}
        for name, members in halves.items():
            t0 = time.perf_counter()
            made = write_copies([p for p in members if p in sample], os.path.join(scratch, f"copies-{name}"))
            index_dir = os.path.join(scratch, f"index-{name}")
            index_folder(TUXPAINT_STAMPS, specs, index_dir, include=set(members).__contains__)
            index_folder(os.path.join(scratch, f"copies-{name}"), specs, index_dir)
            truth = _truth(index_dir, made)
            data[name] = {"index_dir": index_dir, "truth": truth, "pairs": _pairs(index_dir, truth, specs)}
            collection[name] = {"originals": len(members), "copies": len(made),
                                "pictures": len(set(truth["picture"].values()))}
            say(f"{name} half: indexed {len(members)} stamps and {len(made)} copies with {', '.join(specs)} "
                f"in {time.perf_counter() - t0:.0f} s")
        methods = [_measure(data, "phash", None, n_resamples, seed, say)]
        for spec in specs:
            methods.append(_measure(data, "vectors", spec, n_resamples, seed, say))
            methods += [_measure(data, f"phash {rule} vectors", spec, n_resamples, seed, say) for rule in ("and", "or")]
    best_f1 = max(methods, key=lambda m: (m["chosen"]["f1"], m["method"] == "phash"))
    # The default: of the methods `find_duplicates` offers, the one whose pure threshold (no group of
    # the choose half mixing distinct stamps) catches the most copies there.
    pure = [m for m in methods if m.get("pure")]
    best = max(pure, key=lambda m: (m["pure"]["choose_groups"]["caught_all"], m["method"] == "phash")) if pure else None
    default = {"method": best["method"] if best else None, "model": best["model"] if best else None,
               "threshold": best["pure"]["threshold"] if best else None,
               "rule": "loosest threshold calling no two distinct stamps of the choose half copies (symbols aside); "
                       "of those, the method catching the most copies there",
               "best_f1": {"method": best_f1["method"], "model": best_f1["model"],
                           "threshold": best_f1["chosen"]["threshold"], "f1_choose": best_f1["chosen"]["f1"]},
               "chosen_on": "choose half", "reported_on": "report half",
               "phash_default_in_code": DEFAULT_PHASH_BITS}
    return {"config": {"models": specs, "copies_of": copies_of, "seed": seed, "kinds": list(COPY_KINDS),
                       "n_resamples": n_resamples, "interval": "95% percentile bootstrap over pictures"},
            "collection": collection, "methods": methods, "default": default,
            "machine": finish(machine), "total_s": time.perf_counter() - started}


def _truth(index_dir: str, made: dict[str, tuple[str, str]]) -> dict:
    """Per image id: its picture (originals with the same bytes are one), kind, and symbol-ness."""
    store = Store(index_dir, create=False)
    try:
        hashes = {i: h for i, h in store.image_hashes(("ok",)).items() if h}
        rows = store.images(sorted(hashes))
    finally:
        store.close()
    by_path = {row["path"]: image_id for image_id, row in rows.items()}
    picture, kind = {}, {}
    for image_id, row in rows.items():
        if row["path"] not in made:
            picture[image_id], kind[image_id] = hashes[image_id], "original"
    for path, (original, copy_kind) in made.items():
        if path in by_path and original in by_path:
            picture[by_path[path]], kind[by_path[path]] = hashes[by_path[original]], copy_kind
    originals = {picture[i]: i for i, k in kind.items() if k == "original"}
    symbol = {i: SYMBOLS in rows[originals[picture[i]]]["path"] for i in picture}
    return {"picture": picture, "kind": kind, "symbol": symbol, "paths": {i: rows[i]["path"] for i in picture}}


def _pairs(index_dir: str, truth: dict, specs: list[str]) -> dict:
    """Every pair of images of one half: its two pictures (as unit numbers), whether they are the
    same, whether a symbol is involved, and its similarity by each method."""
    ids = np.array(sorted(truth["picture"]), dtype=np.int64)
    pictures = sorted(set(truth["picture"].values()))
    unit = np.array([pictures.index(truth["picture"][int(i)]) for i in ids])
    symbol = np.array([truth["symbol"][int(i)] for i in ids])
    original = np.array([truth["kind"][int(i)] == "original" for i in ids])
    a, b = np.triu_indices(len(ids), 1)
    out = {"ids": ids, "a": a, "b": b, "unit_a": unit[a], "unit_b": unit[b], "units": len(pictures),
           "same": unit[a] == unit[b], "plain": ~(symbol[a] | symbol[b]), "originals": original[a] & original[b],
           "score": {}}
    out["score"]["phash"] = _similarity(index_dir, ids, "phash", None)[a, b]
    for spec in specs:
        out["score"][spec] = _similarity(index_dir, ids, "vectors", spec)[a, b]
    return out


def _similarity(index_dir: str, ids: np.ndarray, method: str, spec: str | None) -> np.ndarray:
    """Pairwise similarity in the method's own unit: bits in common (64 - distance) or cosine."""
    store = Store(index_dir, create=False)
    try:
        if method == "phash":
            hashes = store.image_hashes(("ok",))
            kept, codes, _ = phash_codes(store, ids, hashes)
            if len(kept) != len(ids):
                raise ValueError(f"{len(ids) - len(kept)} indexed images could not be hashed")
            bits = np.unpackbits(codes, axis=2).reshape(len(ids), 2, PHASH_BITS).astype(np.int32)
            plain, mirrored = bits[:, 0], bits[:, 1]
            distance = np.minimum(_hamming(plain, plain), _hamming(plain, mirrored))
            distance = np.minimum(distance, distance.T)
            return PHASH_BITS - distance.astype(np.float64)
        row = store.model(spec)
        found, vectors = store.embeddings_for(row.id, row.dim, ids.tolist())
        if not np.array_equal(found, ids):
            raise ValueError(f"{len(ids) - len(found)} indexed images have no {spec} vector")
        v = vectors.astype(np.float64)
        return v @ v.T
    finally:
        store.close()


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ (1 - b).T + (1 - a) @ b.T


# -- rules: a method and a threshold say which pairs are copies ------------------------------
def _candidates(method: str, spec: str | None) -> list:
    if method == "phash":
        return list(range(0, MAX_PHASH_BITS + 1))
    if method == "vectors":
        return [float(t) for t in COSINE_GRID]
    return [(bits, float(c)) for bits in BOTH_PHASH_GRID for c in BOTH_COSINE_GRID]


def _called(pairs: dict, method: str, spec: str | None, threshold) -> np.ndarray:
    """Which pairs the method calls copies at this threshold."""
    if method == "phash":
        return pairs["score"]["phash"] >= PHASH_BITS - threshold
    if method == "vectors":
        return pairs["score"][spec] >= threshold - 1e-9
    by_hash = pairs["score"]["phash"] >= PHASH_BITS - threshold[0]
    by_vectors = pairs["score"][spec] >= threshold[1] - 1e-9
    return by_hash & by_vectors if method == "phash and vectors" else by_hash | by_vectors


def _f1(called: np.ndarray, same: np.ndarray) -> float:
    tp = int(np.count_nonzero(called & same))
    return 2 * tp / (2 * tp + int(np.count_nonzero(called ^ same))) if tp else 0.0


def _measure(data: dict, method: str, spec: str | None, n_resamples: int, seed: int, say) -> dict:
    choose, report = data["choose"]["pairs"], data["report"]["pairs"]
    scored = [(_f1(_called(choose, method, spec, t), choose["same"]), t) for t in _candidates(method, spec)]
    best_f1 = max(f for f, _ in scored)
    # ties: the strictest threshold that reaches the best F1 (fewest distinct pictures put together)
    threshold = next(t for f, t in (reversed(scored) if method != "phash" else scored) if f == best_f1)
    entry = {"method": method, "model": spec, "chosen": {"threshold": threshold, "f1": best_f1}}
    called = _called(report, method, spec, threshold)
    figures = _pairwise(report, called, n_resamples, seed)
    if method in ("phash", "vectors"):
        score = report["score"]["phash" if method == "phash" else spec]
        figures.update(_auc_figures(report, score, n_resamples, seed))
        figures["hardest_distinct"] = _hardest(data["report"], score)
        figures["groups"] = _grouping(data["report"], method, spec, threshold)
        sweep = PHASH_SWEEP if method == "phash" else COSINE_SWEEP
        entry["sweep"] = [{"threshold": t, **_grouping(data["report"], method, spec, t)} for t in sweep]
        entry["choose_sweep"] = [{"threshold": t, **_grouping(data["choose"], method, spec, t)} for t in sweep]
        entry["pure"] = _pure(data, entry, method, spec, n_resamples, seed)
    entry["report"] = figures
    auc = f", AUC {figures['auc']:.4f}" if "auc" in figures else ""
    say(f"{method}{' ' + spec if spec else ''}: threshold {threshold} chosen (F1 {best_f1:.3f} on the choose half); "
        f"report half F1 {figures['f1']:.3f} [{figures['f1_ci95'][0]:.3f}, {figures['f1_ci95'][1]:.3f}]{auc}")
    return entry


def _pure(data: dict, entry: dict, method: str, spec: str | None, n_resamples: int, seed: int) -> dict | None:
    """The purity rule: the loosest threshold that calls no two distinct stamps of the choose half
    copies (its stamps as shipped, symbols aside), with its report-half figures; None when none does."""
    choose = data["choose"]["pairs"]
    score = choose["score"]["phash" if method == "phash" else spec]
    distinct = ~choose["same"] & choose["plain"] & choose["originals"]
    closest = float(score[distinct].max())
    if method == "phash":
        threshold = int(PHASH_BITS - closest) - 1  # one bit closer than the closest distinct stamps
        if threshold < 0:
            return None
    else:
        above = [float(t) for t in COSINE_GRID if t > closest + 1e-9]
        if not above:
            return None
        threshold = above[0]
    pairs = distinct & (score >= score[distinct].max() - 1e-9)
    closest_pair = [os.path.basename(data["choose"]["truth"]["paths"][int(choose["ids"][choose[k][np.flatnonzero(pairs)[0]]])])
                    for k in ("a", "b")]
    report = data["report"]["pairs"]
    return {"threshold": threshold, "closest_distinct": {"pair": closest_pair, "similarity": closest},
            "choose_groups": _grouping(data["choose"], method, spec, threshold),
            "report": {**_pairwise(report, _called(report, method, spec, threshold), n_resamples, seed),
                       "groups": _grouping(data["report"], method, spec, threshold)}}


def _draws(units: int, n_resamples: int, seed: int):
    """Per resample, how often each picture was drawn (seeded: every method sees the same draws)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        yield np.bincount(rng.integers(0, units, units), minlength=units).astype(np.float64)


def _pairwise(pairs: dict, called: np.ndarray, n_resamples: int, seed: int) -> dict:
    same = pairs["same"]
    tp_units = pairs["unit_a"][called & same]
    fn_units = pairs["unit_a"][~called & same]
    fp_a, fp_b = pairs["unit_a"][called & ~same], pairs["unit_b"][called & ~same]
    samples = []
    for w in _draws(pairs["units"], n_resamples, seed):
        samples.append(_ratios(w[tp_units].sum(), w[fn_units].sum(), (w[fp_a] * w[fp_b]).sum()))
    point = _ratios(len(tp_units), len(fn_units), len(fp_a))
    low_high = percentile_interval(np.array(samples))
    out = {"copy_pairs": int(same.sum()), "distinct_pairs": int((~same).sum()),
           "false_pairs": int(len(fp_a)), "missed_pairs": int(len(fn_units))}
    for k, name in enumerate(("precision", "recall", "f1")):
        out[name], out[f"{name}_ci95"] = point[k], low_high[k].tolist()
    return out


def _ratios(tp: float, fn: float, fp: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, (2 * tp / (2 * tp + fp + fn) if tp else 0.0)


def _auc_figures(pairs: dict, score: np.ndarray, n_resamples: int, seed: int) -> dict:
    same = pairs["same"]
    negatives = np.argsort(score[~same], kind="stable")
    neg_score = score[~same][negatives]
    neg_a, neg_b = pairs["unit_a"][~same][negatives], pairs["unit_b"][~same][negatives]
    pos_score, pos_unit = score[same], pairs["unit_a"][same]
    left = np.searchsorted(neg_score, pos_score, side="left")
    right = np.searchsorted(neg_score, pos_score, side="right")

    def auc(w: np.ndarray) -> float:
        below = np.concatenate([[0.0], np.cumsum(w[neg_a] * w[neg_b])])
        wp = w[pos_unit]
        return float((wp * (below[left] + 0.5 * (below[right] - below[left]))).sum() / (wp.sum() * below[-1]))

    samples = [auc(w) for w in _draws(pairs["units"], n_resamples, seed)]
    plain = pairs["plain"]
    return {"auc": auc(np.ones(pairs["units"])), "auc_ci95": percentile_interval(np.array(samples)).tolist(),
            "auc_without_symbols": _plain_auc(score[same & plain], score[~same & plain])}


def _plain_auc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """P(a copy pair scores above a distinct pair), ties counting one half."""
    if not len(positives) or not len(negatives):
        return None
    negatives = np.sort(negatives)
    below = np.searchsorted(negatives, positives, side="left")
    ties = np.searchsorted(negatives, positives, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(positives) * len(negatives)))


def _hardest(half: dict, score: np.ndarray) -> list[dict]:
    pairs, paths = half["pairs"], half["truth"]["paths"]
    order = np.argsort(-np.where(pairs["same"], -np.inf, score))[:HARDEST]
    return [{"a": paths[int(pairs["ids"][pairs["a"][p]])], "b": paths[int(pairs["ids"][pairs["b"][p]])],
             "similarity": float(score[p])} for p in order]


def _grouping(half: dict, method: str, spec: str | None, threshold) -> dict:
    """The real find_duplicates on the half's index: copies caught per kind, groups mixing stamps."""
    truth = half["truth"]
    groups = find_duplicates(half["index_dir"], method, threshold, spec).groups
    group_of = {m["id"]: g for g, group in enumerate(groups) for m in group["images"]}
    originals = {truth["picture"][i]: i for i, k in truth["kind"].items() if k == "original"}
    caught: dict[str, list[bool]] = {}
    for image_id, kind in truth["kind"].items():
        if kind != "original":
            mine, theirs = group_of.get(image_id), group_of.get(originals[truth["picture"][image_id]])
            caught.setdefault(kind, []).append(mine is not None and mine == theirs)
    mixed, shown = {"all": [0, 0], "without_symbols": [0, 0]}, []
    for group in groups:
        known = [m for m in group["images"] if m["id"] in truth["picture"]]
        pictures = {truth["picture"][m["id"]] for m in known}
        plain = {truth["picture"][m["id"]] for m in known if not truth["symbol"][m["id"]]}
        for key, found in (("all", pictures), ("without_symbols", plain)):
            if len(found) > 1:
                mixed[key][0] += 1
                mixed[key][1] += len(found)
        if len(pictures) > 1 and len(shown) < MIXED_SHOWN:
            shown.append(sorted({os.path.basename(truth["paths"][originals[p]]) for p in pictures}))
    return {"caught": {kind: float(np.mean(v)) for kind, v in caught.items()},
            "caught_all": float(np.mean([x for v in caught.values() for x in v])) if caught else 0.0,
            "mixed_groups": mixed["all"][0], "mixed_stamps": mixed["all"][1],
            "mixed_groups_without_symbols": mixed["without_symbols"][0],
            "mixed_stamps_without_symbols": mixed["without_symbols"][1], "mixed_shown": shown}


# -- text ----------------------------------------------------------------------------------
def _name(m: dict) -> str:
    if m["method"] == "phash":
        return "phash (64-bit, mirror-aware)"
    return m["model"] if m["method"] == "vectors" else f"{m['method'].replace('vectors', m['model'])}"


def _ci(figures: dict, key: str) -> str:
    low, high = figures[f"{key}_ci95"]
    return f"{figures[key]:.3f} [{low:.3f}, {high:.3f}]"


def duplicates_lines(result: dict) -> list[str]:
    kinds = result["config"]["kinds"]
    c = result["collection"]
    lines = [machine_line(result["machine"])]
    lines += [f"{name} half: {h['originals']} stamps ({h['pictures']} pictures) + {h['copies']} copies"
              for name, h in c.items()]
    lines += ["thresholds chosen on the choose half (best pairwise F1); every figure below from the report half, "
              f"95% bootstrap intervals over pictures ({result['config']['n_resamples']} resamples)",
              f"{'method':<36} {'threshold':>12} {'AUC':>24} {'precision':>20} {'recall':>20} {'F1':>20}"]
    for m in result["methods"]:
        r = m["report"]
        auc = _ci(r, "auc") if "auc" in r else ""
        lines.append(f"{_name(m)[:36]:<36} {str(m['chosen']['threshold']):>12} {auc:>24} {_ci(r, 'precision'):>20} "
                     f"{_ci(r, 'recall'):>20} {_ci(r, 'f1'):>20}")
    lines += ["", "groups by find_duplicates on the report half: share of copies in their original's group; "
              "groups mixing distinct stamps (without symbols)",
              f"{'method':<36} {'threshold':>9} " + " ".join(f"{k:>10}" for k in kinds) + f" {'all':>6}  mixed"]
    for m in result["methods"]:
        if "sweep" not in m:
            continue
        rows = [("*", m["chosen"]["threshold"], m["report"]["groups"])] + [("", t["threshold"], t) for t in m["sweep"]]
        for mark, threshold, t in rows:
            lines.append(f"{(_name(m) + ' ' + mark).strip()[:36]:<36} {threshold:>9g} "
                         + " ".join(f"{t['caught'].get(k, 0):>10.2f}" for k in kinds)
                         + f" {t['caught_all']:>6.3f}  {t['mixed_groups']} ({t['mixed_groups_without_symbols']})")
        lines.append(f"{'':<36} most similar distinct: " + ", ".join(
            f"{os.path.basename(h['a'])} ~ {os.path.basename(h['b'])} {h['similarity']:.3g}"
            for h in m["report"]["hardest_distinct"][:3]))
        if m["report"]["groups"]["mixed_shown"]:
            lines.append(f"{'':<36} mixed at the chosen threshold: " + "; ".join(
                " + ".join(g) for g in m["report"]["groups"]["mixed_shown"][:8]))
    lines += ["", "purity rule, chosen on the choose half: the loosest threshold calling no two distinct stamps copies "
              "(symbols aside); report-half figures",
              f"{'method':<36} {'threshold':>9} {'precision':>20} {'recall':>20} {'F1':>20}  copies caught  mixed"]
    for m in result["methods"]:
        if "pure" not in m:
            continue
        if m["pure"] is None:
            lines.append(f"{_name(m)[:36]:<36} {'none':>9}")
            continue
        r, g = m["pure"]["report"], m["pure"]["report"]["groups"]
        lines.append(f"{_name(m)[:36]:<36} {m['pure']['threshold']:>9g} {_ci(r, 'precision'):>20} {_ci(r, 'recall'):>20} "
                     f"{_ci(r, 'f1'):>20}  {g['caught_all']:>13.3f}  {g['mixed_groups']} ({g['mixed_groups_without_symbols']})"
                     f"  [closest distinct on the choose half: {' ~ '.join(m['pure']['closest_distinct']['pair'])}]")
        lines.append(f"{'':<36} per kind: " + ", ".join(f"{k} {g['caught'].get(k, 0):.2f}" for k in kinds)
                     + ("; mixed: " + "; ".join(" + ".join(x) for x in g["mixed_shown"][:6]) if g["mixed_shown"] else ""))
    d = result["default"]
    b = d["best_f1"]
    lines.append(f"default (purity rule): {d['method']}{' ' + d['model'] if d['model'] else ''} at {d['threshold']}; "
                 f"best pairwise F1 on the choose half: {b['method']}{' ' + b['model'] if b['model'] else ''} at "
                 f"{b['threshold']} (the code's perceptual hash default: {d['phash_default_in_code']} bits)")
    return lines
