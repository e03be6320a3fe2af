"""Stage 8: an evaluation's results -> results.json, results.csv, report.md, report.html.

Every figure in the reports is read from results.json, which also holds each query's
relevant paths, first relevant rank and top-k, so every aggregate and interval recomputes.
"""

from __future__ import annotations

import csv
import html
import json
import os
import time

import matplotlib

matplotlib.use("Agg")  # no display: plots are rendered to SVG text
import matplotlib.pyplot as plt  # noqa: E402

from .report_languages import html_section, markdown_section  # noqa: E402
from .report_tables import comparison_table, composition_table, html_table, md_table, svg, with_ci  # noqa: E402
from .report_judged import judged_html, judged_markdown, judged_out_dir, judged_rows  # noqa: E402

BALANCE_SHARE = 0.9  # "balance" keeps at least this share of the best recall, at the least latency
ALPHA = 0.05  # as in evaluate: p >= ALPHA means "not told apart from noise"
QUALITY_METRIC = "mean_recall@k"


def quality(model: dict) -> float:
    """The recall used to rank models: mean of text->image R@k over the report's k values."""
    t2i = model["t2i"]
    values = [v for key, v in t2i.items() if key.startswith("recall@")]
    return sum(values) / len(values)


def latency(model: dict) -> float:
    return model["latency_ms"]["total"]["p50"]


def cost_key(model: dict) -> tuple:
    """Cheaper: lower p50 query latency, then lower peak memory (when measured)."""
    return latency(model), model.get("cost", {}).get("peak_rss_mb") or 0.0, -quality(model)


def pareto_front(models: list[dict]) -> list[str]:
    """Labels of the runs no other run beats on both recall (higher) and p50 latency (lower)."""
    front = []
    for m in models:
        dominated = any(
            quality(o) >= quality(m) and latency(o) <= latency(m) and (quality(o) > quality(m) or latency(o) < latency(m))
            for o in models if o is not m
        )
        if not dominated:
            front.append(m["label"])
    return front


def comparison(comparisons: list[dict], a: str, b: str, metric: str = QUALITY_METRIC) -> dict | None:
    """The paired comparison of runs a and b on metric, oriented as a - b (None if not run)."""
    for c in comparisons:
        if c["metric"] != metric:
            continue
        if (c["a"], c["b"]) == (a, b):
            return c
        if (c["a"], c["b"]) == (b, a):
            low, high = c["ci95"]
            return {**c, "a": a, "b": b, "difference": -c["difference"], "ci95": [-high, -low]}
    return None


def recommend(models: list[dict], comparisons: list[dict] | None = None) -> dict:
    """One model per priority, from the measurements (rules stated in the output).

    With paired comparisons, the models whose mean recall@k is not told apart from the best
    one's (p >= ALPHA) count as tied with it: "quality" then names the cheapest of them.
    """
    comparisons = comparisons or []
    front = [m for m in models if m["label"] in pareto_front(models)]
    fastest = min(front, key=lambda m: (latency(m), -quality(m)))
    best = max(models, key=lambda m: (quality(m), -latency(m)))
    tested = {m["label"]: comparison(comparisons, best["label"], m["label"]) for m in models if m is not best}
    tied = [best] + [m for m in models if m is not best and tested[m["label"]] is not None
                     and tested[m["label"]]["p_value"] >= ALPHA]
    pick = min(tied, key=cost_key)
    if len(models) == 1:
        statement = "one model: nothing to compare"
    elif any(t is None for t in tested.values()):
        statement = "no paired test was run: differences may be noise"
    elif len(tied) == 1:
        worst_p = max(tested[m["label"]]["p_value"] for m in models if m is not best)
        statement = (f"`{best['label']}` has the best mean recall@k and every other model is worse by a "
                     f"paired test (largest p = {worst_p:.3g} < {ALPHA})")
    else:
        others = ", ".join(f"`{m['label']}` (p = {tested[m['label']]['p_value']:.3g})" for m in tied[1:])
        cheapest = ("it is also the cheapest of them" if pick is best
                    else f"so the cheapest of them, `{pick['label']}`, is recommended for quality")
        statement = (f"`{best['label']}` has the best mean recall@k, but {others} cannot be told apart from it "
                     f"(paired test p >= {ALPHA}): these are statistically indistinguishable; {cheapest}")
    good_enough = [m for m in front if quality(m) >= BALANCE_SHARE * quality(best) or m in tied]
    balance = min(good_enough, key=lambda m: (latency(m), -quality(m)))
    quality_rule = ("highest mean text->image recall@k; among models statistically indistinguishable from the "
                    f"best (paired test p >= {ALPHA}), the cheapest (lowest p50 latency, then peak memory)")
    return {
        "speed": {"model": fastest["label"], "rule": "lowest p50 query latency on the Pareto front"},
        "balance": {"model": balance["label"],
                    "rule": f"lowest p50 latency on the Pareto front among models with >= {BALANCE_SHARE:.0%} "
                            "of the best recall or indistinguishable from the best"},
        "quality": {"model": pick["label"], "rule": quality_rule},
        "best_point_estimate": best["label"],
        "indistinguishable_from_best": [m["label"] for m in tied],
        "statement": statement,
        "pareto_front": [m["label"] for m in front],
    }


def write_report(results: dict, out_dir: str | None = None) -> dict[str, str]:
    """An evaluation's files: of a labelled dataset, or of judged pools (report_judged.py)."""
    judged = results.get("kind") == "judged"
    out_dir = out_dir or (judged_out_dir() if judged else default_out_dir(results))
    os.makedirs(out_dir, exist_ok=True)
    if not judged:
        results = {**results, "recommendation": recommend(results["models"], results.get("comparisons"))}
    paths = {name: os.path.join(out_dir, name) for name in ("results.json", "results.csv", "report.md", "report.html")}
    with open(paths["results.json"], "w") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
    _write_csv(judged_rows(results) if judged else summary_rows(results), paths["results.csv"])
    with open(paths["report.md"], "w") as f:
        f.write(judged_markdown(results) if judged else markdown(results))
    with open(paths["report.html"], "w") as f:
        f.write(judged_html(results) if judged else html_report(results))
    return paths


def default_out_dir(results: dict) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in results["dataset"]["name"])[:40]
    return os.path.join("reports", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def summary_rows(results: dict) -> list[dict]:
    """One flat row of numbers per run (results.csv, `eval --json`)."""
    rows = []
    for m in results["models"]:
        row = {"model": m["label"], "dim": m["dim"], "index": m["factory"], "precision": m["precision"],
               "index_precision": m["index_precision"]}
        intervals = m.get("t2i_ci95", {})
        for key, value in m["t2i"].items():
            if key == "queries":
                row["t2i_queries"] = value
                continue
            row[f"t2i_{key}"] = round(value, 4)
            if key in intervals:
                row[f"t2i_{key}_ci_low"], row[f"t2i_{key}_ci_high"] = (round(v, 4) for v in intervals[key])
        for k, v in m.get("i2t", {}).items():
            if k != "images":
                row[f"i2t_{k}"] = round(v, 4)
        if "pairwise_accuracy" in m:
            row["pairwise_accuracy"] = round(m["pairwise_accuracy"]["accuracy"], 4)
        for k, v in m.get("ann_recall@k", {}).items():
            row[f"ann_recall{k}"] = round(v, 4)
        for part in ("encode", "search", "metadata", "total"):
            row[f"{part}_p50_ms"] = round(m["latency_ms"][part]["p50"], 3)
        row["total_p95_ms"] = round(m["latency_ms"]["total"]["p95"], 3)
        row["total_p99_ms"] = round(m["latency_ms"]["total"]["p99"], 3)
        row["total_mean_ms"] = round(m["latency_ms"]["total"]["mean"], 3)
        row["batched_qps"] = round(m["batched"]["qps"] or 0, 1)
        cost = m["cost"]
        row["index_img_per_s"] = round(cost["indexing"]["images_per_s"] or 0, 1)
        row["index_mb"] = round(cost["index_bytes"] / 2**20, 3)
        for key, name, digits in (("load_s", "load_s", 2), ("rss_mb_before_load", "rss_before_load_mb", 0),
                                  ("rss_mb_after_load", "rss_after_load_mb", 0), ("model_rss_mb", "model_rss_mb", 0),
                                  ("peak_rss_mb", "peak_rss_mb", 0)):
            if key in cost:
                row[name] = round(cost[key], digits)
        rows.append(row)
    return rows


def _write_csv(rows: list[dict], path: str) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# --- the tables both reports show -------------------------------------------------------




def _number(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def quality_table(results: dict) -> tuple[list[str], list[list[str]]]:
    ks = results["ks"]
    metrics = [f"recall@{k}" for k in ks] + [QUALITY_METRIC, "mrr", "ndcg@10"]
    cols = ["model", "queries", *(f"R@{k}" for k in ks), "mean R@k", "MRR", "nDCG@10", "mean rank", "median rank"]
    has_i2t = any("i2t" in m for m in results["models"])
    if has_i2t:
        cols += [f"i2t R@{k}" for k in ks]
    if any("pairwise_accuracy" in m for m in results["models"]):
        cols.append("pairwise acc.")
    if any("ann_recall@k" in m for m in results["models"]):
        cols += [f"ANN recall@{k}" for k in ks]
    rows = []
    for m in results["models"]:
        t2i, ci = m["t2i"], m.get("t2i_ci95", {})
        row = [m["label"], str(t2i["queries"]), *(with_ci(t2i[name], ci.get(name)) for name in metrics),
               f"{t2i['mean_rank']:.1f}", f"{t2i['median_rank']:.1f}"]
        if has_i2t:
            row += [f"{m['i2t'][f'recall@{k}']:.3f}" if "i2t" in m else "–" for k in ks]
        if "pairwise acc." in cols:
            row.append(f"{m['pairwise_accuracy']['accuracy']:.3f}" if "pairwise_accuracy" in m else "–")
        if f"ANN recall@{ks[0]}" in cols:
            row += [f"{m['ann_recall@k'][f'@{k}']:.3f}" if "ann_recall@k" in m else "–" for k in ks]
        rows.append(row)
    return cols, rows


def cost_table(results: dict) -> tuple[list[str], list[list[str]]]:
    cols = ["model", "dim", "index", "precision", "encode p50 ms", "search p50 ms", "metadata p50 ms",
            "total p50 ms", "total p95 ms", "total p99 ms", "batched q/s", "index img/s", "load s",
            "RSS before load MB", "RSS after load MB", "peak RSS MB", "index MB"]
    rows = []
    for m in results["models"]:
        lat, cost = m["latency_ms"], m["cost"]
        rows.append([
            m["label"], str(m["dim"]), m["factory"], m["precision"],
            *(f"{lat[part]['p50']:.2f}" for part in ("encode", "search", "metadata", "total")),
            f"{lat['total']['p95']:.2f}", f"{lat['total']['p99']:.2f}", _number(m["batched"]["qps"]),
            _number(cost["indexing"]["images_per_s"]), _number(cost.get("load_s"), 2),
            _number(cost.get("rss_mb_before_load"), 0), _number(cost.get("rss_mb_after_load"), 0),
            _number(cost.get("peak_rss_mb"), 0), f"{cost['index_bytes'] / 2**20:.3f}",
        ])
    return cols, rows




def _method_lines(results: dict) -> list[str]:
    d, q, u = results["dataset"], results["query_set"], results["uncertainty"]
    lines = [
        f"Relevance: {results['definitions']['relevance']}.",
        f"Queries: {q['measured']} measured, the same for every model; {q['left_out']} left out "
        "(no relevant image indexed by every model)"
        + (f", first: {', '.join(repr(t) for t in q['left_out_first'])}" if q["left_out_first"] else "") + ".",
        "Latency: every measured query encoded its text (the query cache is cleared before each; no cache hit "
        "is timed); per-query encode / search / metadata times are in results.json.",
        f"Intervals: {u['level']:.0%} {u['interval']}, {u['resamples']} resamples, seed {u['seed']}. "
        f"Paired comparisons on the same queries: {u['paired_interval']}; p-value: {u['test']}, "
        f"else of {u['resamples']} random sign patterns (seed {u['seed']}); "
        f"'indistinguishable' means p >= {u['alpha']}.",
        f"Ties: {results['definitions']['ranking']}.",
        f"Cost: {results['definitions']['cost']}.",
    ]
    return lines + [f"Note: {n}." for n in d["notes"]]




def markdown(results: dict) -> str:
    d, rec = results["dataset"], results["recommendation"]
    composition = composition_table(results)
    lines = [
        f"# imgsearch evaluation: {d['name']}",
        "",
        f"{d['images']} images, {d['queries']} queries ({d['format']}, lang {d['lang']}, relevance "
        f"{d['relevance']}), created {results['created_at']}.",
        "",
        "## Recommendation",
        "",
        *(f"- **{p}**: `{rec[p]['model']}` ({rec[p]['rule']})" for p in ("speed", "balance", "quality")),
        f"- {rec['statement']}.",
        f"- Pareto front (recall vs p50 latency): {', '.join(f'`{s}`' for s in rec['pareto_front'])}",
        "",
        *markdown_section(results),
        "## Quality (text→image, with 95% intervals)",
        "",
        *md_table(*quality_table(results)),
        "",
        "## Paired comparisons",
        "",
        *(md_table(*comparison_table(results["comparisons"], ALPHA)) if results.get("comparisons")
          else ["One model: nothing to compare."]),
        "",
        *(["## Compositional queries (plus / minus terms)", "", *md_table(*composition), ""] if composition else []),
        "## Cost",
        "",
        *md_table(*cost_table(results)),
        "",
        "## Method",
        "",
        *(f"- {line}" for line in _method_lines(results)),
        "",
        "## Definitions",
        "",
        *(f"- {k}: {v}" for k, v in results["definitions"].items()),
        "",
        "Every figure here is in results.json beside this file, with per-query records to recompute it.",
        "",
    ]
    return "\n".join(lines)


# --- plots --------------------------------------------------------------------------------




def _short(spec: str) -> str:
    return spec if len(spec) <= 40 else spec[:18] + "…" + spec[-20:]


def _error_bars(model: dict, metrics: list[str]) -> list[list[float]] | None:
    """matplotlib's yerr (distances below and above) from a model's intervals."""
    ci = model.get("t2i_ci95")
    if not ci:
        return None
    values = [model["t2i"][name] for name in metrics]
    return [[v - ci[name][0] for v, name in zip(values, metrics)], [ci[name][1] - v for v, name in zip(values, metrics)]]


def plot_recall(results: dict) -> str:
    models, ks = results["models"], results["ks"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(models), 1)
    names = [f"recall@{k}" for k in ks]
    for i, m in enumerate(models):
        xs = [j + i * width for j in range(len(ks))]
        ax.bar(xs, [m["t2i"][name] for name in names], width, yerr=_error_bars(m, names), capsize=3,
               label=_short(m["label"]))
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(ks))], [f"R@{k}" for k in ks])
    ax.set_ylabel("text→image recall (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title("Recall@k per model")
    ax.legend(fontsize=8)
    return svg(fig)


def plot_pareto(results: dict) -> str:
    models, front = results["models"], set(results["recommendation"]["pareto_front"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for m in models:
        on = m["label"] in front
        ax.errorbar(latency(m), quality(m), yerr=_error_bars(m, [QUALITY_METRIC]), fmt="o" if on else "x",
                    markersize=7, capsize=3)
        ax.annotate(_short(m["label"]), (latency(m), quality(m)), fontsize=8, xytext=(4, 4), textcoords="offset points")
    line = sorted((latency(m), quality(m)) for m in models if m["label"] in front)
    ax.plot([p[0] for p in line], [p[1] for p in line], "--", label="Pareto front")
    ax.set_xlabel("p50 query latency, ms (encode + search + metadata)")
    ax.set_ylabel("mean recall@k (95% CI)")
    ax.set_title("Recall vs latency")
    ax.legend(fontsize=8)
    return svg(fig)


def plot_latency(results: dict) -> str:
    models = results["models"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    data = [[q["timing_ms"]["total"] for q in m["queries"]] for m in models]
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(models) + 1), [_short(m["label"]) for m in models], fontsize=8, rotation=10)
    ax.set_ylabel("ms per query (batch size 1, each encoding)")
    ax.set_title("Query latency distribution")
    return svg(fig)


# --- HTML ---------------------------------------------------------------------------------




def html_report(results: dict) -> str:
    d, rec = results["dataset"], results["recommendation"]
    composition = composition_table(results)
    composed = (f"<h2>Compositional queries (plus / minus terms)</h2>{html_table(*composition)}"
                if composition else "")
    esc = html.escape
    recs = "".join(
        f"<li><b>{p}</b>: <code>{esc(rec[p]['model'])}</code> — {esc(rec[p]['rule'])}</li>"
        for p in ("speed", "balance", "quality")
    ) + f"<li>{esc(rec['statement'].replace('`', ''))}.</li>"
    comparisons = (html_table(*comparison_table(results["comparisons"], ALPHA)) if results.get("comparisons")
                   else "<p>One model: nothing to compare.</p>")
    method = "".join(f"<li>{esc(line)}</li>" for line in _method_lines(results))
    defs = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in results["definitions"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imgsearch evaluation: {esc(d['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1em; }} .plot svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>imgsearch evaluation: {esc(d['name'])}</h1>
<p>{d['images']} images, {d['queries']} queries ({esc(d['format'])}, lang {esc(d['lang'])}, relevance
{esc(d['relevance'])}); created {esc(results['created_at'])}.</p>
<h2>Recommendation</h2><ul>{recs}</ul>
{html_section(results)}
<h2>Plots</h2><div class="plots">
<div class="plot" id="plot-recall">{plot_recall(results)}</div>
<div class="plot" id="plot-pareto">{plot_pareto(results)}</div>
<div class="plot" id="plot-latency">{plot_latency(results)}</div>
</div>
<h2>Quality (text→image, with 95% intervals)</h2>{html_table(*quality_table(results))}
<h2>Paired comparisons</h2>{comparisons}
{composed}
<h2>Cost</h2>{html_table(*cost_table(results))}
<h2>Method</h2><ul>{method}</ul>
<h2>Definitions</h2><ul>{defs}</ul>
<p>Every figure is in <code>results.json</code> beside this file, with per-query records to recompute it.</p>
</body></html>
"""
