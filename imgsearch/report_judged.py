"""Stage 8 for judged pools (eval --judged): results -> the rows, report.md and report.html that
report.write_report writes. Every figure is read from the results (results.json)."""

from __future__ import annotations

import html
import os
import time

from .report_tables import comparison_table, html_table, md_table, with_ci

TITLE = "imgsearch evaluation on judged pools"


def judged_out_dir() -> str:
    return os.path.join("reports", f"judged-{time.strftime('%Y%m%d-%H%M%S')}")




def judged_rows(results: dict) -> list[dict]:
    """One flat row of numbers per model (results.csv, `eval --judged --json`)."""
    rows = []
    for m in results["models"]:
        row = {"model": m["label"], "precision": m["precision"], "queries": len(m["queries"])}
        for name, value in m["figures"].items():
            row[name] = round(value, 4)
            if name in m["ci95"]:
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (round(v, 4) for v in m["ci95"][name])
        row["unjudged"] = m["unjudged"]["pairs"]
        row["unjudged_queries"] = m["unjudged"]["queries"]
        row["total_p50_ms"] = round(m["latency_ms"]["total"]["p50"], 3)
        rows.append(row)
    return rows


def quality_table(results: dict) -> tuple[list[str], list[list[str]]]:
    ks, n = results["ks"], results["ndcg_depth"]
    names = [*(f"precision@{k}" for k in ks), *(f"recall@{k}" for k in ks), f"ndcg@{n}", "mrr"]
    cols = ["model", "precision", "queries", *(f"P@{k}" for k in ks), *(f"pooled R@{k}" for k in ks),
            f"nDCG@{n}", "MRR", "p50 ms"]
    rows = [[m["label"], m["precision"], str(len(m["queries"])),
             *(with_ci(m["figures"][name], m["ci95"].get(name)) for name in names),
             f"{m['latency_ms']['total']['p50']:.2f}"] for m in results["models"]]
    return cols, rows


def coverage_table(results: dict) -> tuple[list[str], list[list[str]]]:
    ks, depth = results["ks"], results["judged"]["depth"]
    cols = ["model", *(f"judged@{k}" for k in ks), f"unjudged in its top {depth}", "queries with unjudged"]
    rows = [[m["label"], *(f"{m['figures'][f'judged@{k}']:.3f}" for k in ks),
             f"{m['unjudged']['pairs']} of {m['unjudged']['of_pairs']}", str(m["unjudged"]["queries"])]
            for m in results["models"]]
    return cols, rows




def facts(results: dict) -> list[str]:
    """What the figures stand on: pool, queries, judgments, judges."""
    j, u = results["judged"], results["uncertainty"]
    judges = ", ".join(name or "(unnamed)" for name in j["judges"])
    lines = [
        f"Index: {results['index_dir']}; nothing was indexed for this report.",
        f"Pool depth: {j['depth']} (each of {len(j['pooled_models'])} indexed models' top {j['depth']} per query).",
        f"Queries: {j['measured']} measured of {j['queries']}; left out: {j['left_out_no_judgment']} with nothing "
        f"judged, {j['left_out_no_relevant']} with no image judged relevant"
        + (f" (first: {', '.join(repr(t) for t in j['left_out_first'])})" if j["left_out_first"] else "") + ".",
        f"Judged pairs: {j['judged_pairs']} of {j['pooled_pairs']} pooled ({j['relevant_pairs']} relevant, "
        f"{j['unjudged_pairs']} unjudged).",
        f"Judges: {judges}; newest judgment {j['newest_judgment']}.",
        *(f"Agreement {a['judges'][0] or '(unnamed)'} / {a['judges'][1] or '(unnamed)'}: Cohen's kappa "
          + ("undefined" if a["kappa"] is None else f"{a['kappa']:.2f}") + f" on {a['pairs']} pairs."
          for a in j["agreement"]),
        f"Unjudged results count as not relevant; to judge them: {j['judge_command']}.",
        f"Intervals: {u['level']:.0%} {u['interval']}, {u['resamples']} resamples, seed {u['seed']}; "
        f"'indistinguishable' means p >= {u['alpha']}.",
    ]
    return lines




def judged_markdown(results: dict) -> str:
    lines = [
        f"# {TITLE}", "",
        f"Created {results['created_at']}.", "",
        *(f"- {line}" for line in facts(results)), "",
        "## Quality on the judged pools (95% intervals)", "",
        *md_table(*quality_table(results)), "",
        "## Judged and unjudged results", "",
        *md_table(*coverage_table(results)), "",
        "## Paired comparisons", "",
        *(md_table(*comparison_table(results["comparisons"], results["uncertainty"]["alpha"])) if results["comparisons"] else ["One model: nothing to compare."]),
        "",
        "## Definitions", "",
        *(f"- {k}: {v}" for k, v in results["definitions"].items()), "",
        "Every figure here is in results.json beside this file, with each query's judged ranking to recompute it.",
        "",
    ]
    return "\n".join(lines)




def judged_html(results: dict) -> str:
    esc = html.escape
    comparisons = (html_table(*comparison_table(results["comparisons"], results["uncertainty"]["alpha"])) if results["comparisons"]
                   else "<p>One model: nothing to compare.</p>")
    items = "".join(f"<li>{esc(line)}</li>" for line in facts(results))
    defs = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in results["definitions"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{TITLE}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
</style></head><body>
<h1>{TITLE}</h1>
<p>Created {esc(results['created_at'])}.</p>
<ul>{items}</ul>
<h2>Quality on the judged pools (95% intervals)</h2>{html_table(*quality_table(results))}
<h2>Judged and unjudged results</h2>{html_table(*coverage_table(results))}
<h2>Paired comparisons</h2>{comparisons}
<h2>Definitions</h2><ul>{defs}</ul>
<p>Every figure is in <code>results.json</code> beside this file, with each query's judged ranking to recompute it.</p>
</body></html>
"""
