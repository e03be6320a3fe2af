"""The report's per-language section (evaluate_languages): a table and a plot of recall@k per
model per language, each language's query count, claims marked, the best model per language."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")  # no display: plots are rendered to SVG text
import matplotlib.pyplot as plt  # noqa: E402

from .report_tables import html_table, md_table, svg

NOT_CLAIMED = "✗"  # the model does not claim this language
NOT_STATED = "?"  # the model states no language list
MARK_RULE = (f"{NOT_CLAIMED}: a language the model does not claim to support; {NOT_STATED}: the model "
             "states no language list; unmarked: claimed")


def headline_k(results: dict) -> int:
    """The k the language table and plot show: 10 when measured, else the largest."""
    return 10 if 10 in results["ks"] else max(results["ks"])


def _mark(claimed) -> str:
    return "" if claimed else (f" {NOT_CLAIMED}" if claimed is False else f" {NOT_STATED}")


def language_table(results: dict) -> tuple[list[str], list[list[str]]]:
    rows = results["languages"]["per_language"]
    k = headline_k(results)
    labels = [m["label"] for m in rows[0]["models"]]
    cols = ["lang", "queries", *(f"{label} R@{k}" for label in labels), "best (mean recall@k)"]
    table = []
    for row in rows:
        cells = []
        for m in row["models"]:
            low, high = m["t2i_ci95"][f"recall@{k}"]
            cells.append(f"{m['t2i'][f'recall@{k}']:.3f} [{low:.3f}, {high:.3f}]{_mark(m['claimed'])}")
        tied = f" (tied: {', '.join(row['indistinguishable_from_best'])})" if row["indistinguishable_from_best"] else ""
        table.append([row["lang"], str(row["queries"]), *cells, row["best"] + tied])
    return cols, table


def language_lines(results: dict) -> list[str]:
    """Plain statements for the report: the rule and the best model per language."""
    langs = results["languages"]
    return [
        f"{len(langs['codes'])} languages over the same {langs['images']} images: {langs['rule']}.",
        MARK_RULE + ".",
        "Best model per language (highest mean recall@k; tied: a paired test cannot tell it apart): "
        + "; ".join(f"{r['lang']}: {r['best']}" for r in langs["per_language"]) + ".",
    ]


def plot_languages(results: dict) -> str:
    """R@k per language, one line per model; hollow markers where the model does not claim it."""
    rows = results["languages"]["per_language"]
    k = headline_k(results)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.22 * len(rows) + 2), 3.8))
    xs = range(len(rows))
    for n, label in enumerate(m["label"] for m in rows[0]["models"]):
        ys = [r["models"][n]["t2i"][f"recall@{k}"] for r in rows]
        line, = ax.plot(xs, ys, "-", linewidth=1, label=label)
        claimed = [r["models"][n]["claimed"] is not False for r in rows]
        ax.scatter([x for x, c in zip(xs, claimed) if c], [y for y, c in zip(ys, claimed) if c], s=14,
                   color=line.get_color())
        ax.scatter([x for x, c in zip(xs, claimed) if not c], [y for y, c in zip(ys, claimed) if not c], s=14,
                   facecolors="none", edgecolors=line.get_color())
    ax.set_xticks(list(xs), [f"{r['lang']} ({r['queries']})" for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel(f"text→image R@{k}")
    ax.set_ylim(0, 1)
    ax.set_title(f"R@{k} per language (query count in brackets; hollow: language not claimed)")
    ax.legend(fontsize=8)
    return fig


def markdown_section(results: dict) -> list[str]:
    if "languages" not in results:
        return []
    return ["## Languages", "", *(f"- {line}" for line in language_lines(results)), "",
            *md_table(*language_table(results)), ""]


def html_section(results: dict) -> str:
    if "languages" not in results:
        return ""
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in language_lines(results))
    return (f'<h2>Languages</h2><ul>{lines}</ul><div class="plot" id="plot-languages">'
            f"{svg(plot_languages(results))}</div>{html_table(*language_table(results))}")
