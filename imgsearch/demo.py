"""The whole flow offline on a fresh machine: index a real captioned collection with two
offline models, run a few searches, write the evaluation report."""

from __future__ import annotations

import os

from .datasets import TUXPAINT_STAMPS, load_dataset
from .evaluate import evaluate
from .config import default_index_dir
from .progress import NullProgress
from .report import write_report
from .samples import write_samples
from .search import Searcher

DEMO_MODELS = ("bridge:lite0", "bridge:lite2")
DEMO_QUERIES = ("a cat", "a flower", "a rocket")


def demo_dataset(index_dir: str):
    """The tuxpaint stamps when installed, else the sample photos the installed packages ship."""
    if os.path.isdir(TUXPAINT_STAMPS):
        return load_dataset("tuxpaint")
    folder = os.path.join(index_dir, "demo-photos")
    write_samples(folder, captions_file="captions.jsonl")
    return load_dataset(os.path.join(folder, "captions.jsonl"))


def run_demo(index_dir: str | None = None, out_dir: str | None = None, models=DEMO_MODELS,
             queries=DEMO_QUERIES, progress=NullProgress, status=lambda line: None) -> dict:
    index_dir = os.path.abspath(index_dir or default_index_dir())
    dataset = demo_dataset(index_dir)
    status(f"demo collection: {dataset.name} ({len(dataset.images)} images, {len(dataset.queries)} captions)")
    results = evaluate(dataset, list(models), index_dir, progress=progress, status=status)
    searches = []
    for spec in models:
        searcher = Searcher(spec, index_dir)
        searches += [searcher.text(q, k=3).to_dict() for q in queries]
        searcher.close()
    paths = write_report(results, out_dir)
    return {
        "collection": results["dataset"],
        "index_dir": index_dir,
        "searches": searches,
        "recall": {m["label"]: {k: v for k, v in m["t2i"].items() if k.startswith("recall@")} for m in results["models"]},
        "recall_ci95": {m["label"]: {k: v for k, v in m["t2i_ci95"].items() if k.startswith("recall@")}
                        for m in results["models"]},
        "uncertainty": results["uncertainty"],
        "comparisons": [c for c in results["comparisons"] if c["metric"].startswith(("recall@", "mean_recall"))],
        "report": paths,
    }
