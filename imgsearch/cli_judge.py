"""`imgsearch judge ...`: queries, blind pools and relevance judgments on your own photos, so
that models can be scored on photos nobody labelled (imgsearch eval --judged)."""

from __future__ import annotations

import click

from .cli_options import index_dir_option, status_line
from .cli_output import output_options
from .files import display_path
from .judge import DEFAULT_DEPTH, Judging, load_query_file
from .judged_eval import evaluate_judged
from .report import write_report
from .report_judged import judged_rows

depth_option = click.option("--depth", default=DEFAULT_DEPTH, show_default=True, type=int,
                            help="Pool depth: each model's top results that are judged.")
judge_option = click.option("--judge", "judge_name", default="", metavar="NAME",
                            help="Who judges (optional; two judges give an agreement figure).")


@click.group()
def judge():
    """Judge models on your own photos: pooled, blind relevance judgments (TREC pooling)."""


@judge.command("add")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--query", "-q", "texts", multiple=True, metavar="TEXT", help="A query (repeatable).")
@index_dir_option
@output_options(rows=True)
def judge_add(file, texts, index_dir, output):
    """Add queries: --query TEXT, or FILE with one per line (or qrels-style JSONL)."""
    texts = list(texts) + (load_query_file(file) if file else [])
    with Judging(index_dir) as judging:
        rows = judging.add_queries(texts)
    output.emit(rows, lambda rows: (f"{'added' if r['added'] else 'kept '}  {r['query']}" for r in rows))


@judge.command("suggest")
@click.option("-n", "n", default=20, show_default=True, type=int, help="How many queries.")
@click.option("--add", "add", is_flag=True, help="Add the suggestions as queries.")
@index_dir_option
@output_options(rows=True)
def judge_suggest(n, add, index_dir, output):
    """Propose queries from what the indexed photos show (an offline ImageNet classifier)."""
    with Judging(index_dir) as judging:
        rows = judging.suggest(n)
        if add:
            judging.add_queries([r["query"] for r in rows], source="suggested")
    output.emit(rows, lambda rows: (f"{r['query']}  ({r['images']} of the sampled images)" for r in rows))


@judge.command("pool")
@click.option("--query", "-q", "query", default=None, metavar="TEXT", help="One query [default: all].")
@depth_option
@judge_option
@click.option("--all", "everything", is_flag=True, help="Judged pairs too, not only the unjudged.")
@index_dir_option
@output_options(rows=True)
def judge_pool(query, depth, judge_name, everything, index_dir, output):
    """The pairs still to judge: query, image id and path, in a blind order (no model, no score)."""
    with Judging(index_dir) as judging:
        rows = judging.pool(query, depth, judge=judge_name or None, unjudged_only=not everything)
    rows = [{**r, "path": display_path(r["path"])} for r in rows]
    output.emit(rows, lambda rows: (f"{r['query']}\t{r['path']}" for r in rows))


@judge.command("mark")
@click.option("--query", "-q", "query", required=True, metavar="TEXT")
@click.option("--image", "image", required=True, type=click.Path(dir_okay=False), help="A pooled image.")
@click.option("--relevant/--not-relevant", "relevant", default=None, help="The judgment.")
@depth_option
@judge_option
@index_dir_option
@output_options()
def judge_mark(query, image, relevant, depth, judge_name, index_dir, output):
    """Judge one pooled image for one query."""
    if relevant is None:
        raise click.UsageError("say --relevant or --not-relevant")
    with Judging(index_dir) as judging:
        row = judging.mark(query, image, relevant, judge_name, depth)
    output.emit({**row, "path": display_path(row["path"])},
                lambda r: [f"{'relevant' if r['relevant'] else 'not relevant'}: {r['path']} for {r['query']!r}"])


@judge.command("unmark")
@click.option("--query", "-q", "query", required=True, metavar="TEXT")
@click.option("--image", "image", required=True, type=click.Path(dir_okay=False))
@judge_option
@index_dir_option
@output_options()
def judge_unmark(query, image, judge_name, index_dir, output):
    """Take a judgment back."""
    with Judging(index_dir) as judging:
        removed = judging.unmark(query, image, judge_name)
    output.emit({"query": query, "image": display_path(image), "removed": removed},
                lambda r: ["removed" if r["removed"] else "there was no such judgment"])


@judge.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@depth_option
@index_dir_option
@output_options(rows=True)
def judge_import(file, depth, index_dir, output):
    """Judgments from a JSONL file: {"query", "image", "relevant": true|false, "judge"?} per line."""
    with Judging(index_dir) as judging:
        rows = judging.import_marks(file, depth)
    rows = [{**r, "path": display_path(r["path"])} for r in rows]
    output.emit(rows, lambda rows: [f"{len(rows)} judgments imported"])


@judge.command("status")
@depth_option
@index_dir_option
@output_options()
def judge_status(depth, index_dir, output):
    """Queries, pairs pooled and judged per query and per model, judges' agreement."""
    with Judging(index_dir) as judging:
        status = judging.status(depth)
    output.emit(status, status_lines)


def status_lines(s: dict):
    for q in s["queries"]:
        yield f"{q['query']!r}: {q['judged']} of {q['pooled']} judged, {q['relevant']} relevant" + (
            f", {q['stale']} stale" if q["stale"] else "")
    key = f"judged@{s['depth']}"
    for m in s["models"]:
        yield f"{m['model']}: {key} " + ("-" if m[key] is None else f"{m[key]:.0%}")
    for a in s["agreement"]:
        kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.2f}"
        yield f"agreement {a['judges'][0]} / {a['judges'][1]}: kappa {kappa} on {a['pairs']} pairs"
    yield (f"{s['judged_pairs']} pairs judged, {s['unjudged_pairs']} unjudged; newest judgment "
           f"{s['newest_judgment'] or 'none'}; judge in the web UI (imgsearch serve) or with `imgsearch judge mark`")


@judge.command("export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="qrels JSONL to write.")
@index_dir_option
@output_options()
def judge_export(out, index_dir, output):
    """Write the judgments as qrels JSONL (relevant images only, paths relative to the file)."""
    with Judging(index_dir) as judging:
        result = judging.export(out)
    output.emit(result, lambda r: [f"{r['queries']} queries, {r['relevant']} relevant images -> {r['out']}"])


def judged_eval(index_dir, models, ks, depth, out_dir, resamples, seed, output):
    """`imgsearch eval --judged`: every model scored on the judged pools, the report written."""
    results = evaluate_judged(index_dir, models, depth=depth, ks=ks, resamples=resamples, seed=seed,
                              status=status_line)
    paths = write_report(results, out_dir)
    summary = {"judged": results["judged"], "ks": results["ks"], "report": paths, "models": judged_rows(results),
               "unjudged": {m["label"]: m["unjudged"] for m in results["models"]},
               "uncertainty": results["uncertainty"], "comparisons": results["comparisons"]}
    output.emit(summary, judged_eval_lines, rows=summary["models"])


def judged_eval_lines(s: dict):
    j = s["judged"]
    yield (f"{j['measured']} of {j['queries']} queries, pool depth {j['depth']}, {j['judged_pairs']} of "
           f"{j['pooled_pairs']} pooled pairs judged, newest judgment {j['newest_judgment']}")
    k = s["ks"][-1]
    for row in s["models"]:
        ndcg = next(name for name in row if name.startswith("ndcg@") and not name.endswith(("_low", "_high")))
        yield (f"{row['model']}: P@{k} {row[f'precision@{k}']:.3f}  pooled R@{k} {row[f'recall@{k}']:.3f}  "
               f"{ndcg} {row[ndcg]:.3f}  MRR {row['mrr']:.3f}  judged@{k} {row[f'judged@{k}']:.0%}  "
               f"({row['unjudged']} unjudged)")
    if any(row["unjudged"] for row in s["models"]):
        yield f"unjudged results count as not relevant; judge them: {j['judge_command']}"
    yield f"report: {s['report']['report.html']}"
