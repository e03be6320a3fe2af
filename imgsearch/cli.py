"""The command line: a thin skin over the Python API. Data to stdout, progress and errors to stderr."""

from __future__ import annotations

import json
import os
import sys

import click
import open_clip

from . import __version__, web
from .bench.indexing import run_indexing_bench
from .bench.query import DEFAULT_PRECISIONS as DEFAULT_QUERY_PRECISIONS
from .bench.query import run_query_bench
from .bench.search import run_search_bench
from .bench.upload import CASES as UPLOAD_CASES
from .bench.upload import run_upload_bench, upload_lines
from .bench.summary import indexing_lines, query_lines, search_lines
from .check import check_index
from .cli_options import index_dir_option, model_option, precision_option, progress_bar, status_line
from .cli_judge import judge
from .cli_output import Output, output_options
from .datasets import RELEVANCE_RULES, load_dataset
from .demo import DEMO_MODELS, run_demo
from .errors import ImgsearchError, UsageError
from .evaluate import DEFAULT_KS, evaluate
from .files import display_path
from .config import default_index_dir
from .indexer import drop_model, index_folder
from .models import concrete_precision, list_models
from .models import precision as measured_precision
from .models.base import default_device
from .models.base import CONCRETE_PRECISIONS, PRECISIONS
from .ray_options import DEFAULT_SHARD_IMAGES, ENGINES, RayOptions
from .report import recommend, summary_rows, write_report
from .stats import DEFAULT_RESAMPLES, DEFAULT_SEED, check_resamples
from .metrics import check_k
from .search import Searcher
from .vectors import validate_factory


@click.group()
@click.version_option(__version__, prog_name="imgsearch")
def cli():
    """Choose an image-text embedding model from real search performance on your photos."""


def models_text(rows: list[dict]):
    yield f"{'preset':<14} {'spec':<44} {'dim':>5}  {'offline':<7} {'local':<5}  use"
    for r in rows:
        yield (f"{r['preset']:<14} {r['spec']:<44} {r['dim'] or '?':>5}  {'yes' if r['offline'] else 'no':<7} "
               f"{'yes' if r['weights_local'] else 'no':<5}  {r['use']}")
    yield ("\nFamilies: openclip:ARCH/TAG | openclip:ARCH//path/ckpt.bin | openclip:local-dir:PATH | "
           "hf:HUB_ID | hf:/local/dir | bridge:lite0|lite1|lite2\n"
           "bridge:* models are weak offline baselines (ImageNet classifier + MiniLM), not CLIP: "
           "they exist so that comparisons run with no internet.")


@cli.command()
@output_options(rows=True)
def models(output):
    """List presets and model families, dimensions, and which work offline."""
    output.emit(list_models(), models_text)


@cli.command()
@click.option("--model", "-m", "models", multiple=True, metavar="SPEC",
              help="Measure this model's precisions now if not measured yet (repeatable).")
@output_options()
def doctor(models, output):
    """This machine's facts and what precision "auto" measured for each model on it."""
    for spec in models:
        concrete_precision(spec, "auto")
    device = default_device()
    report = {"device": device, "machine": measured_precision.machine_key(device),
              "measured": [m for m in measured_precision.measured()
                           if m["machine"] == measured_precision.machine_key(device)]}
    output.emit(report, doctor_text)


def doctor_text(r: dict):
    m = r["machine"]
    yield f"{m['cpu']} ({', '.join(m['flags']) or 'no bf16/fp16 units'}), torch {m['torch']}, device {m['device']}"
    if not r["measured"]:
        yield 'no model measured yet: precision "auto" measures a model on its first use here'
    for result in r["measured"]:
        rates = ", ".join(f"{p} {c['images_per_s']:.1f} img/s (x{c['speedup']:.2f}, cos {min(c['min_cosine_image'], c['min_cosine_text']):.4f})"
                          for p, c in result["candidates"].items())
        yield f"{result['spec']}: auto = {result['chosen']}  [{rates}]"


def index_text(r: dict):
    yield (f"{r['root']}: {r['scanned']} files, {r['new']} new, {r['changed']} changed, {r['renamed']} renamed, "
           f"{r['copied']} copied, {r['deleted']} deleted, {r['unchanged']} unchanged")
    for spec, n in r["embedded"].items():
        yield f"  {spec}: {n} embedded"
    yield (f"{r['skipped_total']} files skipped in all; index in {display_path(r['index_dir'])} "
           f"({r['seconds']:.1f} s, {r['images_per_s']:.1f} img/s)")


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
@model_option
@index_dir_option
@click.option("--index-type", "factory", default=None, metavar="FACTORY",
              help="FAISS index_factory string, e.g. Flat, HNSW32, IVF1024,PQ32 [default: auto: Flat "
                   "for small collections, IVF as they grow].")
@precision_option
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--workers", default=None, type=click.IntRange(1, 4096),
              help="Decode threads (local engine); model workers per model, at most (Ray engine) "
                   "[default: as many as the machine or cluster allows].")
@click.option("--engine", default="local", show_default=True, type=click.Choice(ENGINES),
              help="Where images are decoded and embedded: here, or on a Ray cluster (pip install "
                   "'imgsearch-bench[ray]').")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="Ray cluster to join: auto (the one this machine belongs to) or ray://HOST:PORT "
                   "[default: start a local one].")
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=click.FloatRange(0, 64),
              help="GPUs each Ray model worker takes (0: the workers run on CPUs).")
@click.option("--cpus-per-worker", default=1.0, show_default=True, type=click.FloatRange(0.01, 1024),
              help="CPUs each Ray model worker takes (its preprocessing threads).")
@click.option("--shard-size", default=DEFAULT_SHARD_IMAGES, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Mean images per shard, the unit a Ray run resumes from.")
@output_options()
def index(folder, models, index_dir, factory, precision, batch_size, workers, engine, ray_address,
          gpus_per_worker, cpus_per_worker, shard_size, output):
    """Index the photos under FOLDER with one or more models (incremental)."""
    if not models:
        raise UsageError("name at least one model: --model SPEC (see: imgsearch models)")
    ray_options = RayOptions(address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
                             cpus_per_worker=cpus_per_worker, shard_size=shard_size)
    report = index_folder(folder, models, index_dir, factory=factory, precision=precision,
                          batch_size=batch_size, workers=workers if engine == "local" else None,
                          progress=progress_bar, engine=engine, ray_options=ray_options)
    data = report.to_dict()
    for note in data["notes"]:
        click.echo(f"note: {note}", err=True)
    for s in data["skipped"]:
        click.echo(f"skipping {s['path']}: {s['reason']}", err=True)
    output.emit(data, index_text)
    if report.interrupted:
        click.echo("interrupted: the work done so far is kept; run the same command to continue", err=True)
        sys.exit(130)


def search_text(result: dict):
    for r in result["results"]:
        yield f"{r['rank']:>3}  {r['score']:.4f}  {display_path(r['path'])}"


@cli.command()
@click.argument("query", required=False)
@click.option("--image", "image_path", type=click.Path(dir_okay=False), help="Search by this image instead.")
@click.option("--model", "-m", "model", required=True, metavar="SPEC", help="Model spec or preset.")
@click.option("-k", "k", default=10, show_default=True, type=int, help="How many results.")
@index_dir_option
@precision_option
@output_options(rows=True)
def search(query, image_path, model, k, index_dir, precision, output):
    """Search the index of one model by text QUERY or by --image."""
    check_k(k)
    if bool(query) == bool(image_path):
        raise UsageError("give either a text QUERY or --image PATH")
    searcher = Searcher(model, index_dir or default_index_dir(), precision=precision)
    result = searcher.image(image_path, k) if image_path else searcher.text(query, k)
    searcher.close()
    data = result.to_dict()
    output.emit(data, search_text, rows=data["results"])
    if not data["results"]:
        click.echo("no results (is the index empty?)", err=True)


def check_text(r: dict, repair: bool):
    for m in r["models"]:
        faiss_count = "unreadable" if m["faiss_vectors"] is None else m["faiss_vectors"]
        yield f"{m['spec']}: {m['vectors']} vectors in SQLite, {faiss_count} in FAISS"
    yield from (f"repaired: {line}" for line in r["repaired"])
    yield from (f"note: {line}" for line in r["notes"])
    yield from (f"problem: {line}" for line in r["problems"])
    yield "ok" if r["ok"] else f"{len(r['problems'])} problems" + ("" if repair else "; run `imgsearch check --repair`")


@cli.command()
@click.option("--repair", is_flag=True, help="Rebuild FAISS files from SQLite and embed only what is missing.")
@model_option
@index_dir_option
@output_options()
def check(repair, models, index_dir, output):
    """Verify that SQLite rows and every model's FAISS ids agree (and repair with --repair)."""
    report = check_index(index_dir, repair=repair, models=list(models) or None, progress=progress_bar)
    output.emit(report.to_dict(), lambda data: check_text(data, repair))
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.option("--model", "-m", "model", required=True, metavar="SPEC", help="The model whose index to drop.")
@index_dir_option
@output_options()
def drop(model, index_dir, output):
    """Delete one model's index (its vectors and FAISS file); images and other models stay."""
    output.emit(drop_model(model, index_dir),
                lambda result: [f"dropped {result['model']}: {result['vectors_removed']} vectors removed"])


def eval_text(summary: dict):
    for row in summary["models"]:
        names = [k for k in row if k.startswith("t2i_recall@") and not k.endswith(("_low", "_high"))]
        recalls = "  ".join(f"{k[4:]} {row[k]:.3f}" for k in names)
        intervals = ", ".join(f"{k[4:]} [{row[k + '_ci_low']:.3f}, {row[k + '_ci_high']:.3f}]" for k in names)
        yield f"{row['model']}: {recalls}  p50 {row['total_p50_ms']:.1f} ms  (95% CI: {intervals})"
    for c in summary["comparisons"]:
        if c["metric"] == "mean_recall@k":
            yield (f"{c['a']} - {c['b']}: mean recall@k {c['difference']:+.3f} "
                   f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}], p = {c['p_value']:.3g}")
    yield summary["recommendation"]["statement"].replace("`", "")
    yield f"report: {summary['report']['report.html']}"


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
@click.option("--images", "images_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Folder the dataset file's image paths are relative to [default: found beside the file, "
                   "in images/, or in the standard COCO / Karpathy layouts].")
@click.option("--relevance", type=click.Choice(RELEVANCE_RULES), default=None,
              help="Which images a caption is relevant to: own-image (CLIP_benchmark's rule) or every image "
                   "with the same caption text [default: own-image].")
@click.option("--bootstrap", "resamples", default=DEFAULT_RESAMPLES, show_default=True, type=int,
              help="Bootstrap resamples (and random sign patterns) for the 95% intervals and paired tests.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed of the resampling.")
@output_options(rows=True)
def eval_command(dataset, models, ks, split, lang, template, index_dir, factory, precisions, out_dir,
                 images_dir, relevance, resamples, seed, output):
    """Measure recall@k and latency of each model on a labelled dataset; write a report."""
    if not models:
        raise UsageError("name at least one model: --model SPEC (see: imgsearch models)")
    for k in ks:
        check_k(k)
    check_resamples(resamples)
    data = load_dataset(dataset, split=split, lang=lang, template=template, root=images_dir, relevance=relevance)
    results = evaluate(data, list(models), index_dir, ks=tuple(ks) or DEFAULT_KS, factory=factory,
                       precisions=precisions or ("auto",), resamples=resamples, seed=seed,
                       progress=progress_bar, status=status_line)
    paths = write_report(results, out_dir)
    summary = {"dataset": results["dataset"], "query_set": results["query_set"], "report": paths,
               "models": summary_rows(results), "uncertainty": results["uncertainty"],
               "comparisons": results["comparisons"],
               "recommendation": recommend(results["models"], results["comparisons"])}
    output.emit(summary, eval_text, rows=summary["models"])


def demo_text(result: dict):
    for search in result["searches"]:
        top = ", ".join(f"{os.path.basename(r['path'])} ({r['score']:.3f})" for r in search["results"])
        yield f"{search['model']}  {search['query']!r}: {top}"
    for spec, recall in result["recall"].items():
        yield f"{spec}: " + "  ".join(f"{k} {v:.3f}" for k, v in recall.items())
    yield f"report: {result['report']['report.html']}"
    yield f"next: imgsearch search 'a cat' --model {DEMO_MODELS[0]}   or   imgsearch serve"
    yield ("judge the models on your own photos: imgsearch serve, then http://127.0.0.1:8000/judge "
           "(or imgsearch judge --help)")


@cli.command()
@index_dir_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Report folder.")
@output_options()
def demo(index_dir, out_dir, output):
    """Run the whole flow offline: index a captioned collection with two offline models, search, report."""
    output.emit(run_demo(index_dir, out_dir, progress=progress_bar, status=status_line), demo_text)


@cli.command()
@index_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--reports-dir", type=click.Path(file_okay=False), default=None,
              help="Where eval reports are listed from [default: ./reports].")
@click.option("--allow-indexing", is_flag=True, help="Let the web UI index server folders (off by default).")
@click.option("--token", envvar="IMGSEARCH_TOKEN", default=None, metavar="TOKEN",
              help="Require this token on every request [default: off on loopback, else one made and "
                   "printed; also $IMGSEARCH_TOKEN, which `ps` does not show].")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another host name or address clients use for this server (repeatable; "
                   "loopback names and --host are always allowed).")
def serve(index_dir, host, port, reports_dir, allow_indexing, token, allowed_hosts):
    """Web UI: search, compare models side by side, read eval reports."""
    index_dir = os.path.abspath(index_dir or default_index_dir())
    gate = web.Gate.for_bind(host, token=token, allowed_hosts=allowed_hosts)

    def announce():
        click.echo(f"imgsearch web UI on http://{host}:{port}/ (index {display_path(index_dir)}); Ctrl-C stops", err=True)
        for line in web.exposure_notice(gate, host, port, allow_indexing):
            click.echo(line, err=True)

    web.serve(index_dir, host=host, port=port, allow_indexing=allow_indexing, reports_dir=reports_dir, gate=gate,
              on_start=announce)


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
@output_options()
def bench_indexing(model, n_images, precisions, batch_size, out_file, output):
    """(a) naive loop vs (b) pure model forward vs (c) the imgsearch indexing pipeline."""
    kwargs = {k: v for k, v in {"n_images": n_images, "batch_size": batch_size,
                                "precisions": tuple(precisions) or None}.items() if v}
    result = run_indexing_bench(model, progress=status_line, **kwargs)
    _bench_output(result, out_file, output, indexing_lines)


@bench.command("search")
@click.option("--n", "ns", multiple=True, type=click.IntRange(100, 100_000_000),
              help="Collection sizes (repeatable) [default: 10000 100000 1000000].")
@click.option("--dim", default=512, show_default=True, type=click.IntRange(2, 8192))
@click.option("--index", "factories", multiple=True, metavar="FACTORY",
              help="index_factory strings to measure (repeatable; {nlist} and {pq_m} are filled per N).")
@click.option("--queries", "n_queries", default=1000, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@output_options()
def bench_search(ns, dim, factories, n_queries, out_file, output):
    """FAISS index types vs exact search vs an rclip-style numpy baseline, on clustered vectors."""
    for factory in factories:
        validate_factory(factory.replace("{nlist}", "64").replace("{pq_m}", "8"), dim)
    kwargs = {"ns": tuple(ns)} if ns else {}
    result = run_search_bench(dim=dim, factories=tuple(factories) or None, n_queries=n_queries,
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


def _bench_output(result: dict, out_file: str | None, output: Output, summary) -> None:
    if out_file:
        with open(out_file, "w") as f:
            json.dump(result, f, indent=1)
    output.emit(result, summary)


cli.add_command(judge)


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
