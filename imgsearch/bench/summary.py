"""Text tables for the benchmarks' JSON results (the JSON holds every figure; these pick a few)."""

from __future__ import annotations


def search_lines(result: dict) -> list[str]:
    lines = [f"{'N':>9}  {'index':<26} {'build s':>8} {'MB':>8} {'p50 ms':>8} {'p99 ms':>8} {'QPS':>8} {'R@10':>6}"]
    for run in result["runs"]:
        base = run["baseline"]
        lines.append(f"{run['n']:>9}  {'rclip-style numpy + sort':<26} {'':>8} {'':>8} "
                     f"{base['latency_ms']['p50']:>8.2f} {base['latency_ms']['p99']:>8.2f} {'':>8} "
                     f"{base['recall_at_k']:>6.3f}")
        for index in run["indexes"]:
            if "error" in index:
                lines.append(f"{run['n']:>9}  {index['factory']:<26} {index['error']}")
                continue
            # the fastest setting that reached the target recall, else the first one measured
            target = index["params_at_target"]
            setting = next((s for s in index["settings"] if s["params"] == target), index["settings"][0])
            label = index["factory"] + "".join(f" {k}={v}" for k, v in setting["params"].items())
            lines.append(f"{run['n']:>9}  {label:<26} {index['build_s']:>8.1f} {index['size_bytes'] / 2**20:>8.1f} "
                         f"{setting['latency_ms']['p50']:>8.2f} {setting['latency_ms']['p99']:>8.2f} "
                         f"{setting['batch_qps']:>8.0f} {setting['recall_at_k']:>6.3f}")
        auto = run["auto"]
        lines.append(f"{run['n']:>9}  {'auto: ' + auto['factory']:<26} {auto['build_s']:>8.1f} "
                     f"{auto['size_bytes'] / 2**20:>8.1f} {auto['latency_ms']['p50']:>8.2f} "
                     f"{auto['latency_ms']['p99']:>8.2f} {auto['batch_qps']:>8.0f} {auto['recall_at_k']:>6.3f}")
        ratio = run["ratios"]["baseline_p50_over_auto_p50"]
        lines.append(f"{'':>9}  baseline p50 / auto p50 = {ratio:.0f}x" if ratio else "")
    return lines


def indexing_lines(result: dict) -> list[str]:
    corpus = result["corpus"]
    lines = [f"{corpus['n_images']} images ({corpus['camera_jpegs']} camera JPEGs, {corpus['small_pngs']} small PNGs), "
             f"{result['config']['spec']}",
             f"  (a) naive loop, fp32, batch 1: {result['naive']['images_per_s']:.2f} img/s"]
    for precision, forward in result["forward"].items():
        lines.append(f"  (b) forward {precision}, batch {forward['batch_size']}: {forward['images_per_s']:.2f} img/s, "
                     f"cosine to fp32 mean {forward['cosine_to_fp32']['mean']:.5f}")
    for precision, run in result["pipeline"].items():
        if "not_run" in run:
            lines.append(f"  (c) pipeline {precision}: not run ({run['not_run']})")
            continue
        ratios = result["ratios"].get(precision, {})
        lines.append(f"  (c) pipeline {precision}: {run['images_per_s']:.2f} img/s, (c)/(a) {ratios.get('pipeline_over_naive')}, "
                     f"(c)/(b) {ratios.get('pipeline_over_forward')}, cosine to naive fp32 mean "
                     f"{run['cosine_to_naive']['mean']:.5f} min {run['cosine_to_naive']['min']:.5f}, "
                     f"{run['index_bytes_per_image']} index bytes/image")
    for rss in result.get("peak_rss", []):
        lines.append(f"  peak RSS indexing {rss['n_images']} images: {rss['peak_rss_bytes'] / 2**20:.0f} MB")
    return lines


def query_lines(result: dict) -> list[str]:
    cfg = result["config"]
    lines = [f"text queries on {cfg['n']} vectors ({cfg['arch']} text tower), ms per query:"]
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
