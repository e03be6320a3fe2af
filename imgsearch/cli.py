"""The command line: a thin skin over the Python API. Data to stdout, progress and errors to stderr."""

from __future__ import annotations

import json
import os
import sys

import click
import open_clip
from tqdm import tqdm

from . import __version__, web
from .bench.indexing import run_indexing_bench
from .bench.query import DEFAULT_PRECISIONS as DEFAULT_QUERY_PRECISIONS
from .bench.query import run_query_bench
from .bench.search import run_search_bench
from .bench.summary import indexing_lines, query_lines, search_lines
from .check import check_index
from .datasets import load_dataset
from .demo import DEMO_MODELS, run_demo
from .errors import ImgsearchError, UsageError
from .evaluate import DEFAULT_KS, evaluate
from .files import display_path
from .indexer import default_index_dir, drop_model, index_folder
from .models import list_models
from .models.base import CONCRETE_PRECISIONS, PRECISIONS
from .report import summary_rows, write_report
from .search import Searcher, check_k
from .store import Store
from .vectors import validate_factory


def progress_bar(total: int = 0, desc: str = "") -> tqdm:
    # disable=None: a bar on a terminal, nothing in a CI log or a pipe
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None, dynamic_ncols=True)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
index_dir_option = click.option(
    "--index-dir", type=click.Path(file_okay=False), default=None,
    help="Where indexes live [default: ./indexes, or $IMGSEARCH_INDEX_DIR].",
)
model_option = click.option("--model", "-m", "models", multiple=True, metavar="SPEC",
                            help="Model spec or preset (repeatable); see `imgsearch models`.")
precision_option = click.option(
    "--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
    help="auto: fp16 on a GPU, bf16 on a CPU with AMX or AVX512-BF16, else fp32. "
         "int8: quantised Linear layers, CPU only, faster at a small cost in recall (README).")


@click.group()
@click.version_option(__version__, prog_name="imgsearch")
def cli():
    """Choose an image-text embedding model from real search performance on your photos."""


@cli.command()
@json_option
def models(as_json):
    """List presets and model families, dimensions, and which work offline."""
    rows = list_models()
    if as_json:
        echo_json(rows)
        return
    click.echo(f"{'preset':<14} {'spec':<44} {'dim':>5}  {'offline':<7} {'local':<5}  use")
    for r in rows:
        click.echo(
            f"{r['preset']:<14} {r['spec']:<44} {r['dim'] or '?':>5}  {'yes' if r['offline'] else 'no':<7} "
            f"{'yes' if r['weights_local'] else 'no':<5}  {r['use']}"
        )
    click.echo(
        "\nFamilies: openclip:ARCH/TAG | openclip:ARCH//path/ckpt.bin | openclip:local-dir:PATH | "
        "hf:HUB_ID | hf:/local/dir | bridge:lite0|lite1|lite2\n"
        "bridge:* models are weak offline baselines (ImageNet classifier + MiniLM), not CLIP: "
        "they exist so that comparisons run with no internet."
    )


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
@model_option
@index_dir_option
@click.option("--index-type", "factory", default=None, metavar="FACTORY",
              help="FAISS index_factory string, e.g. Flat, HNSW32, IVF1024,PQ32 [default: auto: Flat "
                   "for small collections, IVF as they grow].")
@precision_option
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Decode threads.")
@json_option
def index(folder, models, index_dir, factory, precision, batch_size, workers, as_json):
    """Index the photos under FOLDER with one or more models (incremental)."""
    if not models:
        raise UsageError("name at least one model: --model SPEC (see: imgsearch models)")
    report = index_folder(folder, models, index_dir, factory=factory, precision=precision,
                          batch_size=batch_size, workers=workers, progress=progress_bar)
    store = Store(report.index_dir)
    skipped_total = store.skipped()
    store.close()
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        echo_json({**report.to_dict(), "skipped_total": len(skipped_total)})
    else:
        r = report
        click.echo(
            f"{display_path(r.root)}: {r.scanned} files, {r.new} new, {r.changed} changed, {r.renamed} renamed, "
            f"{r.copied} copied, {r.deleted} deleted, {r.unchanged} unchanged"
        )
        for spec, n in r.embedded.items():
            click.echo(f"  {spec}: {n} embedded")
        for s in r.skipped:
            click.echo(f"skipping {display_path(s['path'])}: {s['reason']}", err=True)
        click.echo(f"{len(skipped_total)} files skipped in all; index in {display_path(r.index_dir)} "
                   f"({r.seconds:.1f} s, {r.images_per_s:.1f} img/s)")
    if report.interrupted:
        click.echo("interrupted: the work done so far is kept; run the same command to continue", err=True)
        sys.exit(130)


@cli.command()
@click.argument("query", required=False)
@click.option("--image", "image_path", type=click.Path(dir_okay=False), help="Search by this image instead.")
@click.option("--model", "-m", "model", required=True, metavar="SPEC", help="Model spec or preset.")
@click.option("-k", "k", default=10, show_default=True, type=int, help="How many results.")
@index_dir_option
@precision_option
@json_option
def search(query, image_path, model, k, index_dir, precision, as_json):
    """Search the index of one model by text QUERY or by --image."""
    check_k(k)
    if bool(query) == bool(image_path):
        raise UsageError("give either a text QUERY or --image PATH")
    searcher = Searcher(model, index_dir or default_index_dir(), precision=precision)
    result = searcher.image(image_path, k) if image_path else searcher.text(query, k)
    searcher.close()
    if as_json:
        echo_json(result.to_dict())
        return
    for r in result.results:
        click.echo(f"{r['rank']:>3}  {r['score']:.4f}  {display_path(r['path'])}")
    if not result.results:
        click.echo("no results (is the index empty?)", err=True)


@cli.command()
@click.option("--repair", is_flag=True, help="Rebuild FAISS files from SQLite and embed only what is missing.")
@model_option
@index_dir_option
@json_option
def check(repair, models, index_dir, as_json):
    """Verify that SQLite rows and every model's FAISS ids agree (and repair with --repair)."""
    report = check_index(index_dir, repair=repair, models=list(models) or None, progress=progress_bar)
    if as_json:
        echo_json(report.to_dict())
    else:
        for m in report.models:
            faiss_count = "unreadable" if m.faiss_vectors is None else m.faiss_vectors
            click.echo(f"{m.spec}: {m.vectors} vectors in SQLite, {faiss_count} in FAISS")
        for line in report.repaired:
            click.echo(f"repaired: {line}")
        for line in report.notes():
            click.echo(f"note: {line}")
        for line in report.problems():
            click.echo(f"problem: {line}")
        click.echo("ok" if report.ok else f"{len(report.problems())} problems"
                   + ("" if repair else "; run `imgsearch check --repair`"))
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.option("--model", "-m", "model", required=True, metavar="SPEC", help="The model whose index to drop.")
@index_dir_option
@json_option
def drop(model, index_dir, as_json):
    """Delete one model's index (its vectors and FAISS file); images and other models stay."""
    result = drop_model(model, index_dir)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"dropped {result['model']}: {result['vectors_removed']} vectors removed")


@cli.command("eval")
@click.option("--dataset", "-d", required=True, metavar="SPEC",
              help="captions/qrels/pairs .jsonl, COCO or Karpathy .json, a class-folder tree, or 'tuxpaint'.")
@model_option
@click.option("-k", "ks", multiple=True, type=int, help="Recall cut-offs (repeatable) [default: 1 5 10].")
@click.option("--split", default="test", show_default=True, help="Karpathy split to use.")
@click.option("--lang", default="en", show_default=True, help="Caption language (tuxpaint translations).")
@click.option("--template", default="a photo of a {label}", show_default=True, help="Class-folder query template.")
@click.option("--index-dir", type=click.Path(file_okay=False), default=None,
              help="Index dir for the dataset's images [default: a dedicated one under ./indexes/eval]. "
                   "Give it to the dataset alone: files under the dataset's folder that are not in the "
                   "dataset are swept from it.")
@click.option("--index-type", "factory", default=None, metavar="FACTORY", help="FAISS index_factory string.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS),
              help="Precision (repeatable: each model is measured at each, indexed apart, to show "
                   "what int8 or bf16 costs in recall) [default: auto].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Report folder [default: reports/<dataset>-<time>].")
@json_option
def eval_command(dataset, models, ks, split, lang, template, index_dir, factory, precisions, out_dir, as_json):
    """Measure recall@k and latency of each model on a labelled dataset; write a report."""
    if not models:
        raise UsageError("name at least one model: --model SPEC (see: imgsearch models)")
    for k in ks:
        check_k(k)
    data = load_dataset(dataset, split=split, lang=lang, template=template)
    results = evaluate(data, list(models), index_dir, ks=tuple(ks) or DEFAULT_KS, factory=factory,
                       precisions=precisions or ("auto",), progress=progress_bar, status=status_line)
    paths = write_report(results, out_dir)
    summary = {"dataset": results["dataset"], "report": paths, "models": summary_rows(results)}
    if as_json:
        echo_json(summary)
        return
    for row in summary["models"]:
        recalls = "  ".join(f"{k[4:]} {v:.3f}" for k, v in row.items() if k.startswith("t2i_recall@"))
        click.echo(f"{row['model']}: {recalls}  p50 {row['total_p50_ms']:.1f} ms")
    click.echo(f"report: {paths['report.html']}")


@cli.command()
@index_dir_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Report folder.")
@json_option
def demo(index_dir, out_dir, as_json):
    """Run the whole flow offline: index a captioned collection with two offline models, search, report."""
    result = run_demo(index_dir, out_dir, progress=progress_bar, status=status_line)
    if as_json:
        echo_json(result)
        return
    for search in result["searches"]:
        top = ", ".join(f"{os.path.basename(r['path'])} ({r['score']:.3f})" for r in search["results"])
        click.echo(f"{search['model']}  {search['query']!r}: {top}")
    for spec, recall in result["recall"].items():
        click.echo(f"{spec}: " + "  ".join(f"{k} {v:.3f}" for k, v in recall.items()))
    click.echo(f"report: {result['report']['report.html']}")
    click.echo(f"next: imgsearch search 'a cat' --model {DEMO_MODELS[0]}   or   imgsearch serve")


@cli.command()
@index_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--reports-dir", type=click.Path(file_okay=False), default=None,
              help="Where eval reports are listed from [default: ./reports].")
@click.option("--allow-indexing", is_flag=True, help="Let the web UI index server folders (off by default).")
def serve(index_dir, host, port, reports_dir, allow_indexing):
    """Web UI: search, compare models side by side, read eval reports."""
    index_dir = os.path.abspath(index_dir or default_index_dir())
    click.echo(f"imgsearch web UI on http://{host}:{port}/ (index {display_path(index_dir)}); Ctrl-C stops", err=True)
    web.serve(index_dir, host=host, port=port, allow_indexing=allow_indexing, reports_dir=reports_dir)


@cli.group()
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
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@json_option
def bench_indexing(model, n_images, precisions, batch_size, out_file, as_json):
    """(a) naive loop vs (b) pure model forward vs (c) the imgsearch indexing pipeline."""
    kwargs = {k: v for k, v in {"n_images": n_images, "batch_size": batch_size,
                                "precisions": tuple(precisions) or None}.items() if v}
    result = run_indexing_bench(model, progress=status_line, **kwargs)
    _bench_output(result, out_file, as_json, indexing_lines)


@bench.command("search")
@click.option("--n", "ns", multiple=True, type=click.IntRange(100, 100_000_000),
              help="Collection sizes (repeatable) [default: 10000 100000 1000000].")
@click.option("--dim", default=512, show_default=True, type=click.IntRange(2, 8192))
@click.option("--index", "factories", multiple=True, metavar="FACTORY",
              help="index_factory strings to measure (repeatable; {nlist} and {pq_m} are filled per N).")
@click.option("--queries", "n_queries", default=1000, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@json_option
def bench_search(ns, dim, factories, n_queries, out_file, as_json):
    """FAISS index types vs exact search vs an rclip-style numpy baseline, on clustered vectors."""
    for factory in factories:
        validate_factory(factory.replace("{nlist}", "64").replace("{pq_m}", "8"), dim)
    kwargs = {"ns": tuple(ns)} if ns else {}
    result = run_search_bench(dim=dim, factories=tuple(factories) or None, n_queries=n_queries,
                              progress=status_line, **kwargs)
    _bench_output(result, out_file, as_json, search_lines)


@bench.command("query")
@click.option("--n", "n", default=100_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Vectors in the index.")
@click.option("--arch", default="ViT-B-32", show_default=True, help="open_clip architecture (random weights).")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(CONCRETE_PRECISIONS),
              help="Precisions to measure (repeatable) [default: fp32 bf16 int8].")
@click.option("--queries", "n_queries", default=100, show_default=True, type=click.IntRange(5, 100_000))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@json_option
def bench_query(n, arch, precisions, n_queries, out_file, as_json):
    """End-to-end text query latency (encode -> FAISS -> metadata) on an index of N vectors."""
    if arch not in open_clip.list_models():
        raise UsageError(f"unknown open_clip architecture {arch!r}")
    result = run_query_bench(n=n, arch=arch, precisions=tuple(precisions) or DEFAULT_QUERY_PRECISIONS,
                             n_queries=n_queries, progress=status_line)
    _bench_output(result, out_file, as_json, query_lines)


def _bench_output(result: dict, out_file: str | None, as_json: bool, summary) -> None:
    if out_file:
        with open(out_file, "w") as f:
            json.dump(result, f, indent=1)
    if as_json:
        echo_json(result)
    else:
        for line in summary(result):
            click.echo(line)


def status_line(line: str) -> None:
    click.echo(line, err=True)


def main() -> None:
    try:
        cli.main(prog_name="imgsearch", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except ImgsearchError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)

    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
