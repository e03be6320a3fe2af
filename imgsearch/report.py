"""Stage 8: an evaluation's results -> results.json, results.csv, report.md, report.html.

Every figure in the reports is read from results.json, which also holds each query's
relevant paths, first relevant rank and real top-k, so every aggregate can be recomputed.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import time

import matplotlib

matplotlib.use("Agg")  # no display: plots are rendered to SVG text
import matplotlib.pyplot as plt  # noqa: E402

BALANCE_SHARE = 0.9  # "balance" keeps at least this share of the best recall, at the least latency


def quality(model: dict) -> float:
    """The recall used to rank models: mean of text->image R@k over the report's k values."""
    t2i = model["t2i"]
    values = [v for key, v in t2i.items() if key.startswith("recall@")]
    return sum(values) / len(values)


def latency(model: dict) -> float:
    return model["latency_ms"]["total"]["p50"]


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


def recommend(models: list[dict]) -> dict:
    """One model per priority, from the measurements (rules stated in the output)."""
    front = [m for m in models if m["label"] in pareto_front(models)]
    fastest = min(front, key=lambda m: (latency(m), -quality(m)))
    best = max(front, key=lambda m: (quality(m), -latency(m)))
    good_enough = [m for m in front if quality(m) >= BALANCE_SHARE * quality(best)]
    balance = min(good_enough, key=lambda m: (latency(m), -quality(m)))
    return {
        "speed": {"model": fastest["label"], "rule": "lowest p50 query latency on the Pareto front"},
        "balance": {"model": balance["label"],
                    "rule": f"lowest p50 latency among models with >= {BALANCE_SHARE:.0%} of the best recall"},
        "quality": {"model": best["label"], "rule": "highest mean text->image recall@k"},
        "pareto_front": [m["label"] for m in front],
    }


def write_report(results: dict, out_dir: str | None = None) -> dict[str, str]:
    out_dir = out_dir or default_out_dir(results)
    os.makedirs(out_dir, exist_ok=True)
    results = {**results, "recommendation": recommend(results["models"])}
    paths = {name: os.path.join(out_dir, name) for name in ("results.json", "results.csv", "report.md", "report.html")}
    with open(paths["results.json"], "w") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
    _write_csv(results, paths["results.csv"])
    with open(paths["report.md"], "w") as f:
        f.write(markdown(results))
    with open(paths["report.html"], "w") as f:
        f.write(html_report(results))
    return paths


def default_out_dir(results: dict) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in results["dataset"]["name"])[:40]
    return os.path.join("reports", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def summary_rows(results: dict) -> list[dict]:
    rows = []
    for m in results["models"]:
        row = {"model": m["label"], "dim": m["dim"], "index": m["factory"], "precision": m["precision"],
               "index_precision": m["index_precision"]}
        row.update({f"t2i_{k}": round(v, 4) for k, v in m["t2i"].items() if k != "queries"})
        for k, v in m.get("i2t", {}).items():
            if k != "images":
                row[f"i2t_{k}"] = round(v, 4)
        if "pairwise_accuracy" in m:
            row["pairwise_accuracy"] = round(m["pairwise_accuracy"]["accuracy"], 4)
        for k, v in m.get("ann_recall@k", {}).items():
            row[f"ann_recall{k}"] = round(v, 4)
        for part in ("encode", "search", "total"):
            row[f"{part}_p50_ms"] = round(m["latency_ms"][part]["p50"], 3)
        row["total_p95_ms"] = round(m["latency_ms"]["total"]["p95"], 3)
        row["total_p99_ms"] = round(m["latency_ms"]["total"]["p99"], 3)
        row["batched_qps"] = round(m["batched"]["qps"] or 0, 1)
        row["index_img_per_s"] = round(m["cost"]["indexing"]["images_per_s"] or 0, 1)
        row["load_s"] = round(m["cost"]["load_s"], 2)
        row["index_mb"] = round(m["cost"]["index_bytes"] / 2**20, 3)
        row["peak_rss_mb"] = round(m["cost"]["peak_rss_mb"], 0)
        rows.append(row)
    return rows


def _write_csv(results: dict, path: str) -> None:
    rows = summary_rows(results)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def markdown(results: dict) -> str:
    d, rec = results["dataset"], results["recommendation"]
    rows = summary_rows(results)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = [
        f"# imgsearch evaluation: {d['name']}",
        "",
        f"{d['images']} images, {d['queries']} queries ({d['format']}, lang {d['lang']}), created {results['created_at']}.",
        "",
        "## Recommendation",
        "",
        *(f"- **{p}**: `{rec[p]['model']}` ({rec[p]['rule']})" for p in ("speed", "balance", "quality")),
        f"- Pareto front (recall vs p50 latency): {', '.join(f'`{s}`' for s in rec['pareto_front'])}",
        "",
        "## Results",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows),
        "",
        "## Definitions",
        "",
        *(f"- {k}: {v}" for k, v in results["definitions"].items()),
        *(f"- note: {n}" for n in d["notes"]),
        "",
        "Every figure here is in results.json beside this file, with per-query records to recompute it.",
        "",
    ]
    return "\n".join(lines)


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _short(spec: str) -> str:
    return spec if len(spec) <= 40 else spec[:18] + "…" + spec[-20:]


def plot_recall(results: dict) -> str:
    models, ks = results["models"], results["ks"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        xs = [j + i * width for j in range(len(ks))]
        ax.bar(xs, [m["t2i"][f"recall@{k}"] for k in ks], width, label=_short(m["label"]))
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(ks))], [f"R@{k}" for k in ks])
    ax.set_ylabel("text→image recall")
    ax.set_ylim(0, 1)
    ax.set_title("Recall@k per model")
    ax.legend(fontsize=8)
    return _svg(fig)


def plot_pareto(results: dict) -> str:
    models, front = results["models"], set(results["recommendation"]["pareto_front"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for m in models:
        on = m["label"] in front
        ax.scatter(latency(m), quality(m), s=60, marker="o" if on else "x")
        ax.annotate(_short(m["label"]), (latency(m), quality(m)), fontsize=8, xytext=(4, 4), textcoords="offset points")
    line = sorted((latency(m), quality(m)) for m in models if m["label"] in front)
    ax.plot([p[0] for p in line], [p[1] for p in line], "--", label="Pareto front")
    ax.set_xlabel("p50 query latency, ms (encode + search + metadata)")
    ax.set_ylabel("mean recall@k")
    ax.set_title("Recall vs latency")
    ax.legend(fontsize=8)
    return _svg(fig)


def plot_latency(results: dict) -> str:
    models = results["models"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    data = [[q["timing_ms"]["total"] for q in m["queries"]] for m in models]
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(models) + 1), [_short(m["label"]) for m in models], fontsize=8, rotation=10)
    ax.set_ylabel("ms per query (batch size 1)")
    ax.set_title("Query latency distribution")
    return _svg(fig)


def html_report(results: dict) -> str:
    d, rec = results["dataset"], results["recommendation"]
    rows = summary_rows(results)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    esc = html.escape
    table = "<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{esc(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    ) + "</table>"
    recs = "".join(
        f"<li><b>{p}</b>: <code>{esc(rec[p]['model'])}</code> — {esc(rec[p]['rule'])}</li>"
        for p in ("speed", "balance", "quality")
    )
    defs = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in results["definitions"].items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in d["notes"])
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
<p>{d['images']} images, {d['queries']} queries ({esc(d['format'])}, lang {esc(d['lang'])}); created {esc(results['created_at'])}.</p>
<h2>Recommendation</h2><ul>{recs}</ul>
<h2>Plots</h2><div class="plots">
<div class="plot" id="plot-recall">{plot_recall(results)}</div>
<div class="plot" id="plot-pareto">{plot_pareto(results)}</div>
<div class="plot" id="plot-latency">{plot_latency(results)}</div>
</div>
<h2>Results</h2>{table}
<h2>Definitions</h2><ul>{defs}{notes}</ul>
<p>Every figure is in <code>results.json</code> beside this file, with per-query records to recompute it.</p>
</body></html>
"""
