"""The indexing bench's child process: `python -m imgsearch.bench.index_child ARGS_JSON`.

Both timed arms that the pipeline is compared with run here, each in a fresh process that
loads only its own model, so that neither arm carries the other's memory or the parent's
(the parent holds the naive loop's full-resolution decodes; with a model per precision in the
parent, one run measured its bf16 forward at 7.4 img/s while the whole pipeline in a child
reached 22-33):

  ["index", folder, spec, index_dir, precision, batch_size, workers]
      index_folder into index_dir. Importing torch and loading a model peak higher than they
      settle, so the peak is reset (Linux clear_refs) once the model is loaded and warmed up at
      the timed batch size: VmHWM then holds the indexer's own high-water mark. Prints
      {"before_kb", "peak_kb", "peak_reset", "seconds", "embedded", "skipped"}.
  ["forward", tensors_file, spec, precision, batch_size, min_s, budget_s, vectors_file]
      the model alone on the saved tensors (torch.save), warmed up on one batch of the timed
      size, then batch after batch, over the tensors again and again until min_s seconds of
      forward passes are timed (a figure of one second is mostly noise on a shared machine),
      or as soon as budget_s is spent; the vectors of the first pass go to vectors_file (numpy
      .npy). Prints {"seconds", "images", "batches", "cpu_seconds"}.

Both report the process's CPU time (all threads, user + system) over what they time beside
the wall time: on a machine other processes share, CPU seconds per image move less than
images per second do.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import torch
from PIL import Image

from ..indexer import index_folder
from ..models import get_model
from .machine import reset_peak_rss, status_kb


def index(folder: str, spec: str, index_dir: str, precision: str, batch_size: int, workers: int | None) -> dict:
    model = get_model(spec, precision=precision)
    pixels = model.preprocess(Image.new("RGB", (256, 256)))
    model.encode_pixels(pixels[None].repeat(batch_size, 1, 1, 1))  # kernels chosen for the timed size
    before = status_kb("VmRSS")
    reset = reset_peak_rss()
    cpu = cpu_seconds()
    report = index_folder(folder, [spec], index_dir, precision=precision, batch_size=batch_size, workers=workers)
    return {"before_kb": before, "peak_kb": status_kb("VmHWM"), "peak_reset": reset, "seconds": report.seconds,
            "cpu_seconds": cpu_seconds() - cpu, "embedded": report.embedded[spec], "skipped": len(report.skipped)}


def forward(tensors_file: str, spec: str, precision: str, batch_size: int, min_s: float, budget_s: float,
            vectors_file: str) -> dict:
    model = get_model(spec, precision=precision)
    tensors = torch.load(tensors_file, weights_only=True)
    model.encode_pixels(tensors[:batch_size])  # warm-up at the timed batch size
    outputs, seconds, images, batches = [], 0.0, 0, 0
    cpu = cpu_seconds()
    while not outputs or seconds < min_s:
        for start in range(0, len(tensors), batch_size):
            batch = tensors[start:start + batch_size]
            begun = time.perf_counter()
            vectors = model.encode_pixels(batch)
            seconds += time.perf_counter() - begun
            images, batches = images + len(batch), batches + 1
            if images <= len(tensors):
                outputs.append(vectors)
            if seconds >= budget_s:
                break
        if seconds >= budget_s:
            break
    np.save(vectors_file, np.concatenate(outputs))
    return {"seconds": seconds, "images": images, "batches": batches, "cpu_seconds": cpu_seconds() - cpu}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> None:
    mode, *args = json.loads(argv[0])
    print(json.dumps({"index": index, "forward": forward}[mode](*args)))


if __name__ == "__main__":
    main(sys.argv[1:])
