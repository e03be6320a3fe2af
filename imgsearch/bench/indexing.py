"""Indexing benchmark: the imgsearch pipeline against a naive loop and the model's own ceiling.

Three arms run on the same files (bench/corpus.py: camera-sized JPEGs with EXIF and small
PNGs made from real images):

  naive:    one image at a time: PIL open -> EXIF transpose -> RGB at full resolution -> the
            model's own preprocess -> fp32 forward at batch 1, no decode threads. The simplest
            correct loop, not rclip (rclip batches and decodes ahead); its fp32 vectors are the
            reference for every cosine.
  forward:  the model alone on pre-made tensors at the pipeline's batch size, for each
            precision, in a fresh child process like the pipeline's (bench/index_child.py):
            the compute ceiling the pipeline can at best reach. Each run times >= forward_min_s
            seconds of forward passes (cycling over FORWARD_BATCHES batches): three batches,
            under a second, read anywhere from 80 to 120 img/s on one shared machine. In the parent, beside the
            naive loop's decodes and a model per precision, one run measured bf16 at 7.4
            img/s while the whole pipeline in a child reached 22-33.
  pipeline: imgsearch.indexer.index_folder into a fresh index dir, for each precision, in a
            child process (bench/index_child.py) that loads and warms up the model first, so
            that its peak RSS is measured too; its vectors are read back from the store.

The arms are interleaved over `rounds` rounds (bench/rounds.py): every round runs each arm
once, in an order that rotates, and every ratio is taken within a round. Each figure is then
reported as the median and spread of its rounds, next to the rounds themselves. Every arm is
warmed up at the batch size it is timed at (naive: 1; forward and pipeline: batch_size).
Beside wall time, the forward and pipeline arms record their process's CPU time (all threads):
CPU ms per image, and pipeline_over_forward_cpu = forward's CPU ms per image over the
pipeline's, the ratio the two would reach with the cores to themselves and kept busy, which
moves less than wall time when other processes share the machine.

Whether peak RSS grows with the folder is measured on corpora of small PNGs of each size in
rss_images, one run each (a memory figure, not a timing), with a probe model
(random_models.RSS_PROBE_CFG: ViT-B-32's 224-px input and 512-d output, almost none of its
compute), so that 10,000 images take minutes, not hours. With a fast model, decoding is the
bottleneck and the look-ahead of decoded images stays near empty; the pipeline arm's peak,
with the real model, shows the look-ahead full.

The default model is a random-initialised open_clip ViT-B-32 (bench/random_models.py).

The returned dict holds plain numbers, strings, lists and dicts (json.dumps works). S below
is a figure over the rounds, {"median", "min", "max", "spread", "n"} (rounds.figure_summary):

    {"config":  every argument, the model spec and the corpus folder,
     "machine": bench/machine.py's facts (CPU model and flags, threads, libraries, load average
                at start and end),
     "corpus":  {"n_images", "camera_jpegs", "small_pngs", "camera_size", "bytes", "build_s"},
     "stages":  {"per_kind": {EXT: {"files", "decode_ms", "pixels_ms"}}, "per_image": {"decode_ms",
                 "pixels_ms"}}: CPU ms of the decode workers' two steps on one thread (stage_costs),
     "model":   {"spec", "dim", "weight_bytes"},
     "rounds":  [{"order": [arm, ...], "load_average",
                  "naive": {"images_per_s", "seconds"},
                  "forward": {PRECISION: {"images_per_s", "seconds", "batches", "cpu_seconds",
                                          "cpu_ms_per_image", "cores_busy"}},
                  "pipeline": {PRECISION: {"images_per_s", "seconds", "cpu_seconds", "cpu_ms_per_image",
                                           "cores_busy", "embedded", "skipped",
                                           "peak_rss_bytes", "rss_before_index_bytes",
                                           "peak_growth_bytes", "peak_reset", "index_bytes_per_image"}},
                  "ratios": {PRECISION: {"forward_over_naive", "pipeline_over_naive",
                                         "pipeline_over_forward", "pipeline_over_forward_cpu"}}}],
     "naive":   {"label", "batch_size", FIGURE: S, ..., "cosine_between_images"},
     "forward": {PRECISION: {"label", "batch_size", "screen_images_per_s", FIGURE: S, ..., "cosine_to_fp32"}},
     "pipeline": {PRECISION: {"label", FIGURE: S, ..., "peak_reset", "cosine_to_naive",
                              "cosine_to_pipeline_fp32"} | {"not_run": reason}},
     "ratios":  {PRECISION: {RATIO: S}},         # the medians of the per-round ratios
     "peak_rss": [{"n_images", "seconds", "cpu_seconds", "embedded", "skipped", "peak_rss_bytes",
                   "rss_before_index_bytes", "peak_growth_bytes", "peak_reset"}],
     "total_s"}

A ratio's S summarises the per-round ratios, so its median is not in general the ratio of the
medians. Cosines come from the first round; each is {"mean", "min", "n"} over images, both
vectors L2-normalised. The yardstick is naive.cosine_between_images, of each image with the
next, different one: 0.66 on average for the random ViT-B-32, so a cosine of 0.999 to the
reference is not a model blind to its input.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from ..config import cache_dir as default_cache_dir
from ..decode import read_and_decode
from ..errors import UsageError
from ..models import get_model, resolve
from ..models.base import CONCRETE_PRECISIONS, EmbeddingModel
from ..store import Store
from .corpus import CAMERA_EVERY, build_corpus, corpus_facts
from .machine import finish, load_average, machine_facts, run_module
from .random_models import BENCH_ARCH, RSS_PROBE_CFG, save_probe_openclip, save_random_openclip
from .rounds import MIN_ROUNDS, rotated, summarise

DEFAULT_IMAGES = 512
DEFAULT_BATCH = 32
DEFAULT_ROUNDS = MIN_ROUNDS
RSS_IMAGES = (1000, 10_000)
FORWARD_BATCHES = 3  # distinct batches of tensors the forward arm cycles over ...
FORWARD_MIN_S = 10.0  # ... until this many seconds of forward passes are timed ...
FORWARD_BUDGET_S = 30.0  # ... and never past this: one bf16 batch on a CPU without bf16
# units takes tens of seconds
SLOW_PRECISION = 2.0  # the pipeline does not run a precision whose forward is this much slower than fp32
INDEX_CHILD = "imgsearch.bench.index_child"

NAIVE_LABEL = ("naive loop: one image at a time, PIL open + EXIF transpose + RGB at full resolution, the "
               "model's own preprocess, fp32 forward at batch 1, no decode threads (not rclip: rclip batches "
               "and decodes ahead)")
FORWARD_LABEL = "the model alone on pre-made tensors, {precision}, batch {batch}: the ceiling the pipeline can reach"
PIPELINE_LABEL = ("imgsearch index_folder, {precision}, batch {batch}: decode threads with JPEG draft mode, "
                  "SQLite + FAISS writes, in a child process")


def run_indexing_bench(
    model_spec: str | None = None,
    n_images: int = DEFAULT_IMAGES,
    precisions: Sequence[str] = ("fp32", "bf16", "int8"),
    batch_size: int = DEFAULT_BATCH,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    rounds: int = DEFAULT_ROUNDS,
    pipeline_precisions: Sequence[str] | None = None,
    rss_images: Sequence[int] = RSS_IMAGES,
    cache_dir: str | None = None,
    forward_min_s: float = FORWARD_MIN_S,
) -> dict:
    """Measure the three arms over `rounds` interleaved rounds on one corpus of n_images; see
    the module docstring.

    model_spec: any imgsearch spec; default a random-initialised ViT-B-32 (BENCH_ARCH).
    pipeline_precisions: the precisions the pipeline arm runs with; default every precision
    of `precisions` whose forward pass, screened on one batch before the rounds, is at most
    SLOW_PRECISION times slower than fp32's (bf16 on a CPU without bf16 units runs ~10x
    slower, and nobody would index with it).
    rss_images: corpus sizes for the peak-RSS runs; empty to skip them.
    forward_min_s: seconds of forward passes each forward-arm run times at least.
    cache_dir: where corpora and the default model live; default the imgsearch cache dir.
    """
    unknown = [p for p in precisions if p not in CONCRETE_PRECISIONS]
    if n_images < 1 or batch_size < 1 or not precisions or unknown or rounds < MIN_ROUNDS:
        raise UsageError(f"need images and batch size >= 1, rounds >= {MIN_ROUNDS} and precisions from "
                         f"{', '.join(CONCRETE_PRECISIONS)}, got {n_images} images, batch {batch_size}, "
                         f"{rounds} rounds, precisions {list(precisions)}")
    if pipeline_precisions is not None and set(pipeline_precisions) - set(precisions):
        raise UsageError(f"pipeline precisions {list(pipeline_precisions)} must be among {list(precisions)}")
    say = progress or (lambda line: None)
    started = time.perf_counter()
    given_spec = resolve(model_spec) if model_spec else None  # a bad spec fails before the corpus is built
    root = os.path.join(cache_dir or default_cache_dir(), "bench-indexing")
    machine = machine_facts()

    say(f"corpus of {n_images} images")
    corpus_started = time.perf_counter()
    folder, paths = build_corpus(os.path.join(root, f"corpus-mixed-{n_images}"), n_images, CAMERA_EVERY)
    corpus = corpus_facts(paths, time.perf_counter() - corpus_started)
    spec = given_spec or save_random_openclip(os.path.join(root, "models"), BENCH_ARCH)
    fp32_model = get_model(spec, precision="fp32")
    stages = stage_costs(fp32_model, paths)
    work = tempfile.TemporaryDirectory(prefix="imgsearch-bench-tensors-")
    tensors_file = os.path.join(work.name, "tensors.pt")
    torch.save(pipeline_tensors(fp32_model, paths, batch_size * FORWARD_BATCHES), tensors_file)
    screen = {}
    for precision in precisions:
        say(f"screen, forward {precision}")
        screen[precision] = forward_screen(tensors_file, spec, precision, batch_size)
    fp32_model.encode_pixels(torch.load(tensors_file, weights_only=True)[:1])  # the naive arm's warm-up, batch 1
    chosen = list(pipeline_precisions) if pipeline_precisions is not None else fast_precisions(screen)
    arms = [("naive", None), *(("forward", p) for p in precisions),
            *(("pipeline", p) for p in precisions if p in chosen)]

    measured, first = [], {}
    for r in range(rounds):
        order = rotated(arms, r)
        entry = {"order": [_arm_name(arm) for arm in order], "load_average": load_average(),
                 "naive": None, "forward": {}, "pipeline": {}}
        for kind, precision in order:
            say(f"round {r + 1}/{rounds}: {_arm_name((kind, precision))}")
            if kind == "naive":
                entry["naive"], vectors = naive_loop(fp32_model, paths)
            elif kind == "forward":
                entry["forward"][precision], vectors = forward_run(tensors_file, spec, precision, batch_size,
                                                                   forward_min_s)
            else:
                entry["pipeline"][precision], vectors = pipeline_run(
                    folder, spec, precision, batch_size, workers, len(paths), read_vectors=r == 0)
            if r == 0:
                first[(kind, precision)] = vectors
        entry["ratios"] = round_ratios(entry)
        measured.append(entry)
    work.cleanup()

    naive_vectors = first[("naive", None)]
    naive = {"label": NAIVE_LABEL, "batch_size": 1, **summarise([m["naive"] for m in measured]),
             "cosine_between_images": between_images([naive_vectors[p] for p in paths])}
    forward = {}
    for precision in precisions:
        vectors, reference = first[("forward", precision)], first.get(("forward", "fp32"))
        forward[precision] = {
            "label": FORWARD_LABEL.format(precision=precision, batch=batch_size), "batch_size": batch_size,
            "screen_images_per_s": screen[precision],
            **summarise([m["forward"][precision] for m in measured]),
            # the same tensors in the same order; a slow precision may time fewer batches
            "cosine_to_fp32": None if reference is None else cosine_summary(
                vectors[:min(len(vectors), len(reference))], reference[:min(len(vectors), len(reference))]),
        }
    pipeline = {}
    for precision in precisions:
        if precision not in chosen:
            pipeline[precision] = {"not_run": _slow_reason(screen, precision) if pipeline_precisions is None
                                   else "not in pipeline_precisions"}
            continue
        runs = [m["pipeline"][precision] for m in measured]
        vectors, fp32_vectors = first[("pipeline", precision)], first.get(("pipeline", "fp32"))
        pipeline[precision] = {
            "label": PIPELINE_LABEL.format(precision=precision, batch=batch_size), **summarise(runs),
            "peak_reset": all(run["peak_reset"] for run in runs),
            "cosine_to_naive": cosine_by_path(vectors, naive_vectors),
            "cosine_to_pipeline_fp32": None if fp32_vectors is None else cosine_by_path(vectors, fp32_vectors),
        }
    ratios = {p: summarise([m["ratios"][p] for m in measured]) for p in precisions}

    peak_rss = []
    if rss_images:
        probe = save_probe_openclip(os.path.join(root, "models"))
        for n in rss_images:
            say(f"peak RSS, {n} small images")
            rss_folder, _ = build_corpus(os.path.join(root, f"corpus-small-{n}"), n, camera_every=0)
            peak_rss.append({"n_images": n, **peak_rss_of_indexing(rss_folder, probe, batch_size, workers)})

    return {
        "config": {"model_spec": model_spec, "spec": spec, "n_images": n_images, "precisions": list(precisions),
                   "pipeline_precisions": chosen, "batch_size": batch_size, "workers": workers, "rounds": rounds,
                   "forward_batches": FORWARD_BATCHES, "forward_min_s": forward_min_s,
                   "forward_budget_s": FORWARD_BUDGET_S,
                   "rss_images": list(rss_images), "rss_model": "probe: " + json.dumps(RSS_PROBE_CFG["vision_cfg"]),
                   "corpus_folder": folder},
        "machine": finish(machine),
        "corpus": corpus,
        "stages": stages,
        "model": {"spec": spec, "dim": fp32_model.dim, "weight_bytes": weight_bytes(fp32_model)},
        "rounds": measured,
        "naive": naive,
        "forward": forward,
        "pipeline": pipeline,
        "ratios": ratios,
        "peak_rss": peak_rss,
        "total_s": round(time.perf_counter() - started, 2),
    }


def _arm_name(arm: tuple[str, str | None]) -> str:
    kind, precision = arm
    return kind if precision is None else f"{kind} {precision}"


def round_ratios(entry: dict) -> dict:
    """One round's ratios, from that round's figures only."""
    naive = entry["naive"]["images_per_s"]
    out = {}
    for precision, forward in entry["forward"].items():
        ratios = {"forward_over_naive": _ratio(forward["images_per_s"], naive)}
        if precision in entry["pipeline"]:
            pipeline = entry["pipeline"][precision]
            ratios |= {"pipeline_over_naive": _ratio(pipeline["images_per_s"], naive),
                       "pipeline_over_forward": _ratio(pipeline["images_per_s"], forward["images_per_s"]),
                       "pipeline_over_forward_cpu": _ratio(forward["cpu_ms_per_image"],
                                                           pipeline["cpu_ms_per_image"])}
        out[precision] = ratios
    return out


def weight_bytes(model: EmbeddingModel) -> int | None:
    module = getattr(model, "_model", None)
    if not isinstance(module, torch.nn.Module):
        return None
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


# -- the three arms -------------------------------------------------------------------------

def naive_loop(model: EmbeddingModel, paths: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """One image at a time, full-resolution decode, the model's own preprocess, fp32."""
    vectors = {}
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
        vectors[path] = model.encode_pixels(model.preprocess(rgb)[None])[0]
    seconds = time.perf_counter() - started
    return {"images_per_s": _rate(len(paths), seconds), "seconds": seconds}, vectors


def stage_costs(model: EmbeddingModel, paths: list[str]) -> dict:
    """CPU ms per file of the two steps decode workers run, on this thread alone: read, hash and
    decode at the model's side, then the model's pixels() (resize, crop, uint8); per kind of
    file and per image of the corpus. What the pipeline can hide beside the forward pass is
    bounded by them."""
    kinds: dict[str, dict] = {}
    for path in paths:
        begun = time.thread_time()
        image = read_and_decode(path, model.input_side).image
        decoded = time.thread_time()
        model.pixels(image)
        done = time.thread_time()
        kind = kinds.setdefault(os.path.splitext(path)[1].lstrip("."), {"files": 0, "decode_ms": 0.0, "pixels_ms": 0.0})
        kind["files"] += 1
        kind["decode_ms"] += 1000 * (decoded - begun)
        kind["pixels_ms"] += 1000 * (done - decoded)
    total = {key: sum(k[key] for k in kinds.values()) / len(paths) for key in ("decode_ms", "pixels_ms")}
    for kind in kinds.values():
        kind["decode_ms"] /= kind["files"]
        kind["pixels_ms"] /= kind["files"]
    return {"per_kind": kinds, "per_image": total}


def pipeline_tensors(model: EmbeddingModel, paths: list[str], n: int) -> torch.Tensor:
    """n preprocessed images, decoded as the indexer decodes them (cycling when n > len(paths))."""
    return torch.stack([model.preprocess(read_and_decode(paths[i % len(paths)]).image) for i in range(n)])


def forward_screen(tensors_file: str, spec: str, precision: str, batch_size: int) -> float:
    """images/s of one batch after the warm-up batch, in a child: enough to tell a precision
    10x slower than fp32."""
    figures, _ = forward_run(tensors_file, spec, precision, batch_size, min_s=0.0, budget_s=0.0)
    return figures["images_per_s"]


def forward_run(tensors_file: str, spec: str, precision: str, batch_size: int, min_s: float = FORWARD_MIN_S,
                budget_s: float = FORWARD_BUDGET_S) -> tuple[dict, np.ndarray]:
    """The model alone on the saved tensors, in a fresh child process (bench/index_child.py),
    warmed up at batch_size, timed over >= min_s seconds; the vectors of one pass."""
    with tempfile.TemporaryDirectory(prefix="imgsearch-bench-forward-") as folder:
        vectors_file = os.path.join(folder, "vectors.npy")
        child = run_module(INDEX_CHILD, ["forward", tensors_file, spec, precision, batch_size, min_s, budget_s,
                                         vectors_file])
        vectors = np.load(vectors_file)
    return {"images_per_s": _rate(child["images"], child["seconds"]), "seconds": child["seconds"],
            "batches": child["batches"], "cpu_seconds": child["cpu_seconds"], **_cpu_figures(child, child["images"])}, vectors


def pipeline_run(folder: str, spec: str, precision: str, batch_size: int, workers: int | None,
                 n_images: int, read_vectors: bool = True) -> tuple[dict, dict[str, np.ndarray] | None]:
    """index_folder into a fresh index dir; its vectors read back from the store, by path."""
    with tempfile.TemporaryDirectory(prefix="imgsearch-bench-") as index_dir:
        child = index_in_child(folder, spec, index_dir, precision, batch_size, workers)
        vectors = stored_vectors(index_dir, spec) if read_vectors else None
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(index_dir) for f in files)
    return {"images_per_s": _rate(child["embedded"], child["seconds"]), **child,
            **_cpu_figures(child, child["embedded"]), "index_bytes_per_image": size / max(1, n_images)}, vectors


def stored_vectors(index_dir: str, spec: str) -> dict[str, np.ndarray]:
    store = Store(index_dir, create=False)
    try:
        row = store.model(spec)
        vectors = {}
        for ids, batch in store.iter_embeddings(row.id, row.dim):
            rows = store.images(ids.tolist())
            vectors.update((rows[int(i)]["path"], v) for i, v in zip(ids, batch))
        return vectors
    finally:
        store.close()


def peak_rss_of_indexing(folder: str, spec: str, batch_size: int, workers: int | None) -> dict:
    """Peak RSS of one fp32 indexer run in a child process, into a fresh index dir."""
    with tempfile.TemporaryDirectory(prefix="imgsearch-bench-rss-") as index_dir:
        return index_in_child(folder, spec, index_dir, "fp32", batch_size, workers)


def index_in_child(folder: str, spec: str, index_dir: str, precision: str, batch_size: int,
                   workers: int | None) -> dict:
    """index_folder in a child process, the model loaded and warmed up first (bench/index_child.py)."""
    child = run_module(INDEX_CHILD, ["index", folder, spec, index_dir, precision, batch_size, workers])
    return {"seconds": child["seconds"], "cpu_seconds": child["cpu_seconds"], "embedded": child["embedded"],
            "skipped": child["skipped"],
            "peak_rss_bytes": child["peak_kb"] * 1024, "rss_before_index_bytes": child["before_kb"] * 1024,
            "peak_growth_bytes": (child["peak_kb"] - child["before_kb"]) * 1024, "peak_reset": child["peak_reset"]}


# -- small numeric helpers ------------------------------------------------------------------

def cosine_summary(a: np.ndarray, b: np.ndarray) -> dict:
    """Row-wise cosine of two stacks of L2-normalised vectors."""
    cos = np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)
    return {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 6), "n": len(cos)}


def between_images(vectors: list[np.ndarray]) -> dict | None:
    """Cosine of each image's vector with the next one's: the yardstick for the others."""
    if len(vectors) < 2:
        return None
    stacked = np.stack(vectors)
    return cosine_summary(stacked[1:], stacked[:-1])


def cosine_by_path(vectors: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict:
    common = sorted(set(vectors) & set(reference))
    if not common:
        return {"mean": None, "min": None, "n": 0}
    return cosine_summary(np.stack([vectors[p] for p in common]), np.stack([reference[p] for p in common]))


def fast_precisions(speeds: dict[str, float]) -> list[str]:
    """The precisions whose images/s is at least fp32's / SLOW_PRECISION (all, without fp32)."""
    if "fp32" not in speeds:
        return list(speeds)
    floor = speeds["fp32"] / SLOW_PRECISION
    return [p for p, speed in speeds.items() if speed >= floor]


def _slow_reason(speeds: dict[str, float], precision: str) -> str:
    slower = speeds["fp32"] / max(speeds[precision], 1e-9)
    return f"forward pass {slower:.1f}x slower than fp32 on this CPU"


def _cpu_figures(child: dict, images: int) -> dict:
    """CPU time per image, and the cores busy on average (CPU seconds over wall seconds)."""
    return {"cpu_ms_per_image": 1000 * child["cpu_seconds"] / max(1, images),
            "cores_busy": _ratio(child["cpu_seconds"], child["seconds"])}


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None
