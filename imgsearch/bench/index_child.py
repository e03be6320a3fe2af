"""The indexing bench's child process: `python -m imgsearch.bench.index_child ARGS_JSON`.

Indexing in a child makes its peak RSS the indexer's alone. Importing torch and loading a
model peak higher than they settle, so the peak is reset (Linux clear_refs) once the model is
loaded and warmed up at the timed batch size: VmHWM then holds the indexer's own high-water
mark. Prints one JSON line: {"before_kb", "peak_kb", "peak_reset", "seconds", "embedded", "skipped"}.
"""

from __future__ import annotations

import json
import sys

from PIL import Image

from ..indexer import index_folder
from ..models import get_model
from .machine import reset_peak_rss, status_kb


def main(argv: list[str]) -> None:
    folder, spec, index_dir, precision, batch_size, workers = json.loads(argv[0])
    model = get_model(spec, precision=precision)
    pixels = model.preprocess(Image.new("RGB", (256, 256)))
    model.encode_pixels(pixels[None].repeat(batch_size, 1, 1, 1))  # kernels chosen for the timed size
    before = status_kb("VmRSS")
    reset = reset_peak_rss()
    report = index_folder(folder, [spec], index_dir, precision=precision, batch_size=batch_size, workers=workers)
    print(json.dumps({"before_kb": before, "peak_kb": status_kb("VmHWM"), "peak_reset": reset,
                      "seconds": report.seconds, "embedded": report.embedded[spec],
                      "skipped": len(report.skipped)}))


if __name__ == "__main__":
    main(sys.argv[1:])
