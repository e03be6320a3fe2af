"""The report's building blocks, shared by every kind of report (labelled sets, judged pools,
languages): figures with intervals, Markdown and HTML tables, SVG plots, paired comparisons."""

from __future__ import annotations

import html
import io

import matplotlib

matplotlib.use("Agg")  # no display: plots are rendered to SVG text
import matplotlib.pyplot as plt  # noqa: E402


def with_ci(value: float, interval) -> str:
    return f"{value:.3f}" if interval is None else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def md_table(cols: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols), *("| " + " | ".join(r) + " |" for r in rows)]


def html_table(cols: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    return "<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in r) + "</tr>" for r in rows) + "</table>"


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def comparison_table(comparisons: list[dict], alpha: float) -> tuple[list[str], list[list[str]]]:
    """Paired differences between models; p >= alpha reads "indistinguishable"."""
    cols = ["a", "b", "metric", "a − b [95% CI]", "p-value", "queries differing", "verdict"]
    rows = []
    for c in comparisons:
        verdict = "indistinguishable" if c["p_value"] >= alpha else ("a better" if c["difference"] > 0 else "b better")
        rows.append([c["a"], c["b"], c["metric"], f"{c['difference']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
                     f"{c['p_value']:.3g}", f"{c['queries_differing']} of {c['queries']}", verdict])
    return cols, rows


def composition_table(results: dict) -> tuple[list[str], list[list[str]]] | None:
    """The plus/minus terms' effect per model (queries with terms; exact search), or None.
    Beside each figure, the effect's paired bootstrap interval over the composed queries
    (results written before it was measured have none: "—")."""
    models = [m for m in results["models"] if "composition" in m]
    if not models:
        return None
    keys = list(models[0]["composition"]["with_terms"])
    cols = ["model", "queries"]
    for key in keys:
        cols += [f"{key} with terms / text only (diff)", f"{key} diff 95% CI"]
    rows = []
    for m in models:
        c = m["composition"]
        row = [m["label"], str(c["queries"])]
        for key in keys:
            interval = c.get("difference_ci95", {}).get(key)
            row += [f"{c['with_terms'][key]:.3f} / {c['text_only'][key]:.3f} ({c['difference'][key]:+.3f})",
                    "—" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"]
        rows.append(row)
    return cols, rows
