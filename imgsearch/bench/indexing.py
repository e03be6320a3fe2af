"""Indexing benchmark: the imgsearch pipeline against a naive loop and the model's own ceiling.

All three measurements run on the same files, a corpus built at run time from real images
(the sample photos and the tuxpaint stamps): every CAMERA_EVERY-th file is a camera-sized
JPEG (CAMERA_SIZE, upscaled, with EXIF orientation, DateTimeOriginal, Make and Model), the
rest are small PNGs. Corpora are cached under the imgsearch cache dir, keyed by their size.

  (a) naive: PIL open -> EXIF transpose -> RGB -> the model's own preprocess -> fp32, batch 1
      (the rclip-style loop; its fp32 vectors are the reference for every cosine).
  (b) forward: the model alone on pre-made tensors at the pipeline's batch size, for each
      precision: the compute ceiling the pipeline can at best reach.
  (c) pipeline: imgsearch.indexer.index_folder into a fresh index dir, for each precision,
      in a child process that loads and warms up the model first (INDEX_CHILD), so that its
      peak RSS is measured too; its vectors are read back from the store.

Whether peak RSS grows with the folder is measured the same way on corpora of small PNGs of
each size in rss_images, with a probe model (RSS_PROBE_CFG: ViT-B-32's 224-px input and
512-d output, almost none of its compute), so that 10,000 images take minutes, not hours.
With a fast model, decoding is the bottleneck and the look-ahead of decoded images stays
near empty; (c)'s peak, with the real model, shows the look-ahead full.

The default model is a random-initialised open_clip ViT-B-32, saved once in open_clip's
local-dir layout and loaded through the real spec "openclip:local-dir:PATH": the same
compute and preprocessing as a trained ViT-B-32, with no download.

The returned dict holds plain numbers, strings, lists and dicts (json.dumps works):

    {"config":  every argument, the model spec and the corpus folder,
     "machine": {"cpu_count", "cpu_model", "cpu_flags", "bf16_native", "cpu_capability",
                 "torch_version", "torch_threads", "torch_interop_threads", "open_clip_version",
                 "python_version", "load_avg_start", "load_avg_end", "env"},
     "corpus":  {"n_images", "camera_jpegs", "small_pngs", "camera_size", "bytes", "build_s"},
     "model":   {"spec", "dim", "weight_bytes"},
     "naive":   {"images_per_s", "seconds", "cosine_between_images"},
     "forward": {PRECISION: {"images_per_s", "batch_size", "batches", "seconds", "cosine_to_fp32"}},
     "pipeline": {PRECISION: {"images_per_s", "seconds", "embedded", "skipped",
                              "peak_rss_bytes", "rss_before_index_bytes", "peak_growth_bytes",
                              "index_bytes_per_image", "cosine_to_naive", "cosine_to_pipeline_fp32"}
                            | {"not_run": reason}},
     "ratios":  {PRECISION: {"pipeline_over_naive", "pipeline_over_forward"}},
     "peak_rss": [{"n_images", "seconds", "embedded", "skipped", "peak_rss_bytes",
                   "rss_before_index_bytes", "peak_growth_bytes"}],
     "total_s"}

Each cosine is {"mean", "min", "n"} over images, both vectors L2-normalised. The yardstick
is naive.cosine_between_images, of each image with the next, different one: 0.66 on average
for the random ViT-B-32, so a cosine of 0.999 to the reference is not a model blind to its input.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
import open_clip
import torch
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from ..decode import read_and_decode, to_rgb
from ..errors import ImgsearchError, UsageError
from ..models import get_model, resolve
from ..models.base import CONCRETE_PRECISIONS, EmbeddingModel, auto_precision
from ..models.bridge import cache_dir as default_cache_dir
from ..samples import write_samples
from ..store import Store

DEFAULT_IMAGES = 512
DEFAULT_BATCH = 32
RSS_IMAGES = (1000, 10_000)
STAMPS = "/usr/share/tuxpaint/stamps"
CAMERA_EVERY = 4  # one file in four is a 12 Mpx camera JPEG, the rest small PNGs
CAMERA_SIZE = (4000, 3000)
CAMERA_QUALITY = 90
ORIENTATIONS = (1, 6, 3, 8)  # landscape, portrait (both ways), upside down
CAMERAS = (("Canon", "EOS 80D"), ("NIKON CORPORATION", "NIKON D750"), ("Apple", "iPhone 13"))
FORWARD_BATCHES = 3  # timed batches for (b), after a small warm-up batch ...
FORWARD_BUDGET_S = 30.0  # ... fewer once this is spent: one bf16 batch on a CPU without
# bf16 units takes minutes
SLOW_PRECISION = 2.0  # (c) is not run for a precision whose forward is this much slower than fp32
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BENCH_ARCH = "ViT-B-32"
RSS_PROBE_CFG = {  # ViT-B-32's input size and embedding width, almost none of its compute
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}

# (c) and the peak-RSS runs index in a child process: its peak RSS is then the indexer's
# alone. Importing torch and loading a model peak higher than they settle, so the peak is
# reset (Linux clear_refs) once the model is loaded and warmed up: VmHWM then holds the
# indexer's own high-water mark.
INDEX_CHILD = """
import json, sys
from PIL import Image
from imgsearch.indexer import index_folder
from imgsearch.models import get_model

def status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

folder, spec, index_dir, precision, batch_size, workers = json.loads(sys.argv[1])
model = get_model(spec, precision=precision)
model.encode_pixels(model.preprocess(Image.new("RGB", (256, 256)))[None])
before = status_kb("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
report = index_folder(folder, [spec], index_dir, precision=precision, batch_size=batch_size, workers=workers)
print(json.dumps({"before_kb": before, "peak_kb": status_kb("VmHWM"), "seconds": report.seconds,
                  "embedded": report.embedded[spec], "skipped": len(report.skipped)}))
"""


def run_indexing_bench(
    model_spec: str | None = None,
    n_images: int = DEFAULT_IMAGES,
    precisions: Sequence[str] = ("fp32", "bf16", "int8"),
    batch_size: int = DEFAULT_BATCH,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    pipeline_precisions: Sequence[str] | None = None,
    rss_images: Sequence[int] = RSS_IMAGES,
    cache_dir: str | None = None,
) -> dict:
    """Measure (a), (b) and (c) on one corpus of n_images; see the module docstring.

    model_spec: any imgsearch spec; default a random-initialised ViT-B-32 (BENCH_ARCH).
    pipeline_precisions: the precisions (c) runs with; default every precision of
    `precisions` whose forward pass is at most SLOW_PRECISION times slower than fp32's
    (bf16 on a CPU without bf16 units runs ~10x slower, and nobody would index with it).
    rss_images: corpus sizes for the peak-RSS runs; empty to skip them.
    cache_dir: where corpora and the default model live; default the imgsearch cache dir.
    """
    unknown = [p for p in precisions if p not in CONCRETE_PRECISIONS]
    if n_images < 1 or batch_size < 1 or not precisions or unknown:
        raise UsageError(f"need images and batch size >= 1 and precisions from {', '.join(CONCRETE_PRECISIONS)}, "
                         f"got {n_images} images, batch {batch_size}, precisions {list(precisions)}")
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

    say(f"(a) naive loop over {n_images} images")
    naive_s, naive_vectors = naive_loop(fp32_model, paths)

    tensors = pipeline_tensors(fp32_model, paths, batch_size * FORWARD_BATCHES)
    forward, forward_vectors = {}, {}
    for precision in precisions:
        say(f"(b) forward, {precision}")
        forward[precision], forward_vectors[precision] = forward_ceiling(
            get_model(spec, precision=precision), tensors, batch_size)
    if "fp32" in forward_vectors:
        for precision, vectors in forward_vectors.items():  # the same tensors, in the same order
            common = min(len(vectors), len(forward_vectors["fp32"]))
            forward[precision]["cosine_to_fp32"] = cosine_summary(vectors[:common], forward_vectors["fp32"][:common])

    chosen = list(pipeline_precisions) if pipeline_precisions is not None else fast_precisions(forward)
    pipeline, pipeline_vectors = {}, {}
    for precision in precisions:
        if precision not in chosen:
            pipeline[precision] = {"not_run": _slow_reason(forward, precision) if pipeline_precisions is None
                                   else "not in pipeline_precisions"}
            continue
        say(f"(c) pipeline, {precision}")
        pipeline[precision], pipeline_vectors[precision] = pipeline_run(
            folder, spec, precision, batch_size, workers, len(paths))
        pipeline[precision]["cosine_to_naive"] = cosine_by_path(pipeline_vectors[precision], naive_vectors)
    for precision, vectors in pipeline_vectors.items():
        if "fp32" in pipeline_vectors:
            pipeline[precision]["cosine_to_pipeline_fp32"] = cosine_by_path(vectors, pipeline_vectors["fp32"])

    naive = {"images_per_s": _rate(len(paths), naive_s), "seconds": round(naive_s, 3),
             "cosine_between_images": between_images([naive_vectors[p] for p in paths])}
    ratios = {
        p: {"pipeline_over_naive": _ratio(pipeline[p]["images_per_s"], naive["images_per_s"]),
            "pipeline_over_forward": _ratio(pipeline[p]["images_per_s"], forward[p]["images_per_s"])}
        for p in pipeline_vectors
    }

    peak_rss = []
    if rss_images:
        probe = save_probe_openclip(os.path.join(root, "models"))
        for n in rss_images:
            say(f"peak RSS, {n} small images")
            rss_folder, _ = build_corpus(os.path.join(root, f"corpus-small-{n}"), n, camera_every=0)
            peak_rss.append({"n_images": n, **peak_rss_of_indexing(rss_folder, probe, batch_size, workers)})

    machine["load_avg_end"] = _load_avg()
    return {
        "config": {"model_spec": model_spec, "spec": spec, "n_images": n_images, "precisions": list(precisions),
                   "pipeline_precisions": chosen, "batch_size": batch_size, "workers": workers,
                   "rss_images": list(rss_images), "rss_model": "probe: " + json.dumps(RSS_PROBE_CFG["vision_cfg"]),
                   "corpus_folder": folder},
        "machine": machine,
        "corpus": corpus,
        "model": {"spec": spec, "dim": fp32_model.dim, "weight_bytes": weight_bytes(fp32_model)},
        "naive": naive,
        "forward": forward,
        "pipeline": pipeline,
        "ratios": ratios,
        "peak_rss": peak_rss,
        "total_s": round(time.perf_counter() - started, 2),
    }


# -- corpus ---------------------------------------------------------------------------------

def build_corpus(folder: str, n_images: int, camera_every: int) -> tuple[str, list[str]]:
    """n_images real images under folder/images (cached: a finished corpus is re-used)."""
    images = os.path.join(folder, "images")
    names = [_file_name(i, camera_every) for i in range(n_images)]
    paths = [os.path.join(images, name) for name in names]
    done = os.path.join(folder, "complete")  # outside images/: the indexer must not see it
    if os.path.exists(done):
        return images, paths
    os.makedirs(images, exist_ok=True)
    sources = source_paths(os.path.join(os.path.dirname(folder), "sources"))
    for i, path in enumerate(paths):
        if not os.path.exists(path):
            with Image.open(sources[i % len(sources)]) as source:
                image = to_rgb(source)
            if (i // len(sources)) % 2:
                image = ImageOps.mirror(image)  # a second round of the sources looks different
            if path.endswith(".jpg"):
                data = camera_jpeg(image, i, ORIENTATIONS[(i // camera_every) % len(ORIENTATIONS)])
            else:
                data = small_png(image, i)
            with open(path + ".part", "wb") as f:
                f.write(data)
            os.replace(path + ".part", path)
    with open(done, "w") as f:
        f.write(f"{n_images}\n")
    return images, paths


def _file_name(i: int, camera_every: int) -> str:
    return f"{i:06d}.jpg" if camera_every and i % camera_every == 0 else f"{i:06d}.png"


def source_paths(folder: str) -> list[str]:
    """The sample photos (written into folder), then every tuxpaint stamp."""
    samples = write_samples(folder)
    stamps = sorted(
        os.path.join(d, f) for d, _, files in os.walk(STAMPS) for f in files if f.endswith(".png")
    )
    return list(samples.values()) + stamps


def camera_jpeg(image: Image.Image, i: int, orientation: int) -> bytes:
    """A 12 Mpx JPEG as a camera writes it (RGB; stamps were composited on white); unique
    bytes per i, since the indexer embeds a copy only once."""
    w, h = image.size
    crop_h = min(h, w * CAMERA_SIZE[1] // CAMERA_SIZE[0]) or h
    crop_w = min(w, h * CAMERA_SIZE[0] // CAMERA_SIZE[1]) or w
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    big = image.crop((left, top, left + crop_w, top + crop_h)).resize(CAMERA_SIZE, Image.Resampling.BICUBIC)
    make, model = CAMERAS[i % len(CAMERAS)]
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    exif[ExifTags.Base.Model] = model
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.ImageDescription] = f"imgsearch bench image {i}"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = (
        f"2023:{1 + i % 12:02d}:{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}"
    )
    out = io.BytesIO()
    big.save(out, "JPEG", quality=CAMERA_QUALITY, exif=exif)
    return out.getvalue()


def small_png(image: Image.Image, i: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"imgsearch bench image {i}")  # unique bytes per i
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def corpus_facts(paths: list[str], build_s: float) -> dict:
    cameras = sum(p.endswith(".jpg") for p in paths)
    return {
        "n_images": len(paths), "camera_jpegs": cameras, "small_pngs": len(paths) - cameras,
        "camera_size": list(CAMERA_SIZE), "bytes": sum(os.path.getsize(p) for p in paths),
        "build_s": round(build_s, 2),
    }


# -- models ---------------------------------------------------------------------------------

def save_random_openclip(folder: str, arch: str, seed: int = 0) -> str:
    """A random-initialised open_clip `arch` in local-dir layout; its canonical spec."""
    cfg = open_clip.get_model_config(arch)
    return _save_openclip(os.path.join(folder, f"{arch}-random-{seed}"), cfg, seed)


def save_probe_openclip(folder: str) -> str:
    return _save_openclip(os.path.join(folder, "rss-probe"), RSS_PROBE_CFG, seed=0)


def _save_openclip(folder: str, model_cfg: dict, seed: int) -> str:
    config_path = os.path.join(folder, "open_clip_config.json")
    if not os.path.exists(config_path):
        os.makedirs(folder, exist_ok=True)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = open_clip.CLIP(**model_cfg)
        weights = os.path.join(folder, "open_clip_pytorch_model.bin")
        torch.save(model.state_dict(), weights + ".part")
        os.replace(weights + ".part", weights)
        preprocess = {k: list(v) if isinstance(v, tuple) else v
                      for k, v in open_clip.get_model_preprocess_cfg(model).items()}
        with open(config_path + ".part", "w") as f:
            json.dump({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, f)
        os.replace(config_path + ".part", config_path)  # last: a folder with a config is complete
    return resolve("openclip:local-dir:" + folder)


def weight_bytes(model: EmbeddingModel) -> int | None:
    module = getattr(model, "_model", None)
    if not isinstance(module, torch.nn.Module):
        return None
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


# -- the three measurements -----------------------------------------------------------------

def naive_loop(model: EmbeddingModel, paths: list[str]) -> tuple[float, dict[str, np.ndarray]]:
    """(a): one image at a time, full-resolution decode, the model's own preprocess, fp32."""
    vectors = {}
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
        vectors[path] = model.encode_pixels(model.preprocess(rgb)[None])[0]
    return time.perf_counter() - started, vectors


def pipeline_tensors(model: EmbeddingModel, paths: list[str], n: int) -> torch.Tensor:
    """n preprocessed images, decoded as the indexer decodes them (cycling when n > len(paths))."""
    return torch.stack([model.preprocess(read_and_decode(paths[i % len(paths)]).image) for i in range(n)])


def forward_ceiling(model: EmbeddingModel, tensors: torch.Tensor, batch_size: int) -> tuple[dict, np.ndarray]:
    """(b): the model alone, batch after batch of ready tensors; the vectors of the timed batches."""
    model.encode_pixels(tensors[:min(2, batch_size)])  # warm-up: weights paged in, kernels chosen
    outputs, seconds = [], 0.0
    for start in range(0, len(tensors), batch_size):
        batch = tensors[start:start + batch_size]
        begun = time.perf_counter()
        outputs.append(model.encode_pixels(batch))
        seconds += time.perf_counter() - begun
        if seconds >= FORWARD_BUDGET_S:
            break
    vectors = np.concatenate(outputs)
    return {"images_per_s": _rate(len(vectors), seconds), "batch_size": batch_size,
            "batches": len(outputs), "seconds": round(seconds, 3)}, vectors


def pipeline_run(folder: str, spec: str, precision: str, batch_size: int, workers: int | None,
                 n_images: int) -> tuple[dict, dict[str, np.ndarray]]:
    """(c): index_folder into a fresh index dir; its vectors read back from the store, by path."""
    with tempfile.TemporaryDirectory(prefix="imgsearch-bench-") as index_dir:
        child = index_in_child(folder, spec, index_dir, precision, batch_size, workers)
        vectors = stored_vectors(index_dir, spec)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(index_dir) for f in files)
    return {"images_per_s": _rate(child["embedded"], child["seconds"]), **child,
            "index_bytes_per_image": round(size / max(1, n_images))}, vectors


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
    """index_folder in a child process, the model loaded and warmed up first (INDEX_CHILD)."""
    args = json.dumps([folder, spec, index_dir, precision, batch_size, workers])
    done = subprocess.run([sys.executable, "-c", INDEX_CHILD, args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ImgsearchError(f"the indexer's child process failed: {last}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": round(child["seconds"], 3), "embedded": child["embedded"], "skipped": child["skipped"],
            "peak_rss_bytes": child["peak_kb"] * 1024, "rss_before_index_bytes": child["before_kb"] * 1024,
            "peak_growth_bytes": (child["peak_kb"] - child["before_kb"]) * 1024}


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


def fast_precisions(forward: dict) -> list[str]:
    if "fp32" not in forward:
        return list(forward)
    floor = forward["fp32"]["images_per_s"] / SLOW_PRECISION
    return [p for p, f in forward.items() if f["images_per_s"] >= floor]


def _slow_reason(forward: dict, precision: str) -> str:
    slower = forward["fp32"]["images_per_s"] / max(forward[precision]["images_per_s"], 1e-9)
    return f"forward pass {slower:.1f}x slower than fp32 on this CPU"


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 2) if seconds > 0 else 0.0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# -- machine --------------------------------------------------------------------------------

def machine_facts() -> dict:
    model_name, flags = _cpuinfo()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model_name,
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "bf16_native": auto_precision("cpu", flags) == "bf16",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "open_clip_version": open_clip.__version__,
        "python_version": platform.python_version(),
        "load_avg_start": _load_avg(),
        "env": {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ},
    }


def _cpuinfo() -> tuple[str | None, set[str]]:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or None, set()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get("model name"), set(fields.get("flags", "").split())


def _load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
