"""Text tables for the benchmarks' JSON results (the JSON holds every figure; these pick a few),
each headed by the machine it ran on."""

from __future__ import annotations


def machine_line(machine: dict) -> str:
    """CPU, flags and load: the conditions every figure below was measured in."""
    flags = " ".join(machine.get("cpu_flags") or []) or "none of note"
    start, end = machine.get("load_average_start"), machine.get("load_average_end")
    load = f"load average {start[0]:.2f} -> {end[0]:.2f}" if start and end else "load average unknown"
    return f"machine: {machine.get('cpu_model')}, {machine.get('cpu_count')} cores, flags {flags}; {load}"


def search_lines(result: dict) -> list[str]:
    lines = [machine_line(result["machine"])]
    header = f"{'N':>9}  {'index':<26} {'build s':>8} {'MB':>8} {'p50 ms':>8} {'p99 ms':>8} {'QPS':>8} {'R@10':>6}"
    for run in result["runs"]:
        builds = {b["factory"]: b for b in run["builds"]}
        for name, queries in run["queries"].items():
            held = "held out from autoindex's tuning" if queries["held_out"] else "autoindex was tuned on these"
            lines += [f"{name} queries ({held}): nearest-neighbour cosine mean {queries['nn_similarity']['mean']:.3f}",
                      header]
            base = queries["baseline"]
            lines.append(f"{run['n']:>9}  {'rclip-style numpy + sort':<26} {'':>8} {'':>8} "
                         f"{base['latency_ms']['p50']:>8.2f} {base['latency_ms']['p99']:>8.2f} {'':>8} "
                         f"{base['recall_at_k']:>6.3f}")
            for index in queries["indexes"]:
                # the fastest setting that reached the target recall, else the first one measured
                target = index["params_at_target"]
                setting = next((s for s in index["settings"] if s["params"] == target), index["settings"][0])
                build = builds[index["factory"]]
                label = index["factory"] + "".join(f" {k}={v}" for k, v in setting["params"].items())
                lines.append(f"{run['n']:>9}  {label:<26} {build['build_s']:>8.1f} {build['size_bytes'] / 2**20:>8.1f} "
                             f"{setting['latency_ms']['p50']:>8.2f} {setting['latency_ms']['p99']:>8.2f} "
                             f"{setting['batch_qps']:>8.0f} {setting['recall_at_k']:>6.3f}")
            for factory, build in builds.items():
                if "error" in build:
                    lines.append(f"{run['n']:>9}  {factory:<26} {build['error']}")
            auto = queries["auto"]
            label = "auto: " + auto["factory"] + "".join(f" {k}={v}" for k, v in auto["params"].items())
            lines.append(f"{run['n']:>9}  {label:<26} {auto['build_s']:>8.1f} "
                         f"{auto['size_bytes'] / 2**20:>8.1f} {auto['latency_ms']['p50']:>8.2f} "
                         f"{auto['latency_ms']['p99']:>8.2f} {auto['batch_qps']:>8.0f} {auto['recall_at_k']:>6.3f}"
                         f"  target {'met' if auto['meets_target'] else 'NOT met'}")
            lines.append(f"{'':>9}  " + _search_ratios(queries["ratios"], auto["recall_at_k"]))
    return lines


def _search_ratios(ratios: dict, auto_recall: float) -> str:
    def times(x):
        return "n/a" if x is None else f"{x:.1f}x"

    return (f"exact vs exact: baseline / Flat p50 {times(ratios['baseline_p50_over_flat_p50'])}; "
            f"ANN vs exact: Flat / auto p50 {times(ratios['flat_p50_over_auto_p50'])} at recall {auto_recall:.3f}; "
            f"baseline / auto p50 {times(ratios['baseline_p50_over_auto_p50'])}")


def _figure(summary: dict | None, digits: int = 2) -> str:
    """A figure over rounds: median (min-max)."""
    if summary is None:
        return "n/a"
    return f"{summary['median']:.{digits}f} ({summary['min']:.{digits}f}-{summary['max']:.{digits}f})"


def indexing_lines(result: dict) -> list[str]:
    corpus, config = result["corpus"], result["config"]
    lines = [machine_line(result["machine"]),
             f"{corpus['n_images']} images ({corpus['camera_jpegs']} camera JPEGs, {corpus['small_pngs']} small PNGs), "
             f"{config['spec']}; median (min-max) of {config['rounds']} interleaved rounds",
             f"  (a) {result['naive']['label']}: {_figure(result['naive']['images_per_s'])} img/s"]
    stages = result.get("stages")
    if stages:
        lines.append("  decode workers, CPU ms per file on one thread: " + ", ".join(
            f"{ext} decode {k['decode_ms']:.1f} + pixels {k['pixels_ms']:.1f}" for ext, k in stages["per_kind"].items())
            + f"; per image {stages['per_image']['decode_ms']:.1f} + {stages['per_image']['pixels_ms']:.1f}")
    for precision, forward in result["forward"].items():
        cosine = forward["cosine_to_fp32"]
        lines.append(f"  (b) {forward['label']}: {_figure(forward['images_per_s'])} img/s, "
                     f"{_figure(forward.get('cpu_ms_per_image'), 1)} CPU ms/image, (b)/(a) "
                     f"{_figure(result['ratios'][precision].get('forward_over_naive'))}"
                     + (f", cosine to fp32 mean {cosine['mean']:.5f}" if cosine else ""))
    for precision, run in result["pipeline"].items():
        if "not_run" in run:
            lines.append(f"  (c) pipeline {precision}: not run ({run['not_run']})")
            continue
        ratios = result["ratios"][precision]
        lines.append(f"  (c) {run['label']}: {_figure(run['images_per_s'])} img/s, "
                     f"{_figure(run.get('cpu_ms_per_image'), 1)} CPU ms/image, "
                     f"(c)/(a) {_figure(ratios.get('pipeline_over_naive'))}, "
                     f"(c)/(b) {_figure(ratios.get('pipeline_over_forward'), 3)} "
                     f"(in CPU ms/image {_figure(ratios.get('pipeline_over_forward_cpu'), 3)}), cosine to naive fp32 mean "
                     f"{run['cosine_to_naive']['mean']:.5f} min {run['cosine_to_naive']['min']:.5f}, "
                     f"{run['index_bytes_per_image']['median']:.0f} index bytes/image")
    for rss in result.get("peak_rss", []):
        lines.append(f"  peak RSS indexing {rss['n_images']} images: {rss['peak_rss_bytes'] / 2**20:.0f} MB "
                     f"(+{rss['peak_growth_bytes'] / 2**20:.0f} MB above the loaded model)")
    return lines


def query_lines(result: dict) -> list[str]:
    cfg = result["config"]
    lines = [machine_line(result["machine"]),
             f"text queries on {cfg['n']} vectors ({cfg['arch']} text tower), ms per query:"]
    for run in result["runs"]:
        u = run["unique"]
        lines.append(f"  {run['precision']:<5} {run['index_type']:<16} new query p50 {u['total']['p50']:.1f} "
                     f"(encode {u['encode']['p50']:.1f}, search {u['search']['p50']:.2f}, "
                     f"metadata {u['metadata']['p50']:.2f}), p99 {u['total']['p99']:.1f}; "
                     f"repeated query p50 {run['repeated_total']['p50']:.2f}")
    if result.get("baseline_encode"):
        lines.append(f"  baseline: open_clip encode_text over 77 positions, fp32: p50 "
                     f"{result['baseline_encode']['p50']:.1f} ms")
    return lines
