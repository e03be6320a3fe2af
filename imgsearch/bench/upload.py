"""`imgsearch bench upload`: what concurrent worst-case uploads cost the real server in memory.

A worst-case upload is a small file with a huge canvas: at the pixel limit, or at the largest
canvas the decode budget takes for its format. For each case the real server is started on
127.0.0.1 in a child process (`python -m imgsearch serve`), warmed up (model loaded, one
normal upload), its peak-RSS mark is reset (/proc/PID/clear_refs), and N copies of the file are
uploaded at once while text queries keep going; the figures are the child's peak RSS growth
over its RSS before the burst, and the queries' latency during the burst next to before it.
All traffic goes to 127.0.0.1 only, and every loop is bounded.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from PIL import Image

from ..indexer import index_folder
from ..metrics import latency_summary
from ..samples import write_samples
from ..decode import DRAFT_MIN_SIDE
from ..web.decoding import DECODE_BUDGET, canvas_cost, decode_cost, pixel_limit
from .machine import finish, machine_facts, reset_peak_rss, status_kb
from .summary import machine_line

CASES = ("png-1bit-at-pixel-limit", "png-rgba-at-budget", "jpeg-baseline-at-pixel-limit",
         "jpeg-progressive-at-budget", "webp-at-budget")
GOAL_MB = 300
STARTUP_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 600
BASELINE_QUERIES = 10
MAX_QUERIES = 2000  # the query loop's bound, whatever happens to the uploads
SAMPLE_NAMES = ["cat.png", "coffee.png", "rocket.png", "astronaut.png"]
YCBCR_420 = [(1, 2, 2, 0), (2, 1, 1, 1), (3, 1, 1, 1)]  # JPEG components: (id, h, v, table)
PNG_COLOR_TYPES = {"1": (0, 1), "L": (0, 8), "RGB": (2, 8), "RGBA": (6, 8)}  # mode -> (color type, bit depth)


def run_upload_bench(model: str = "bridge:lite0", concurrency: int = 8, cases: tuple[str, ...] | None = None,
                     progress: Callable[[str], None] = lambda line: None) -> dict:
    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="imgsearch-bench-upload-") as root:
        photos = os.path.join(root, "photos")
        write_samples(photos, SAMPLE_NAMES)
        index_dir = os.path.join(root, "indexes")
        progress(f"indexing {len(SAMPLE_NAMES)} photos with {model}")
        index_folder(photos, [model], index_dir)
        with open(os.path.join(photos, "cat.png"), "rb") as f:
            normal_upload = f.read()
        runs = []
        for case in cases or CASES:
            progress(f"{case}: writing the file")
            data, canvas = worst_case(case)
            progress(f"{case}: {len(data):,} bytes, {canvas[0]}x{canvas[1]}; {concurrency} at once")
            runs.append({"case": case, "file_bytes": len(data), "canvas": list(canvas),
                         **_measure(index_dir, data, normal_upload, concurrency)})
            progress(f"{case}: peak RSS +{runs[-1]['peak_rss_growth_mb']} MB")
    worst = max(r["peak_rss_growth_mb"] for r in runs)
    return {
        "config": {"model": model, "concurrency": concurrency, "pixel_limit": pixel_limit(),
                   "decode_budget_mib": DECODE_BUDGET / 2**20, "goal_peak_rss_growth_mb": GOAL_MB},
        "runs": runs,
        "worst_peak_rss_growth_mb": worst,
        # Met: every worst-case upload answered, no query failed, and the peak stayed under the goal.
        "goal_met": worst <= GOAL_MB and all(r["statuses"] == {"200": concurrency} and r["query_during"]["errors"] == 0
                                             for r in runs),
        "machine": finish(machine),
    }


def upload_lines(result: dict) -> list[str]:
    config = result["config"]
    lines = [machine_line(result["machine"]),
             f"{config['concurrency']} concurrent uploads per case, {config['model']}, pixel limit "
             f"{config['pixel_limit']:,}, decode budget {config['decode_budget_mib']:.0f} MiB; MB = 10^6 bytes"]
    for run in result["runs"]:
        during, before = run["query_during"], run["query_before"]
        lines.append(f"  {run['case']:<30} {run['file_bytes']:>9,} B  {run['canvas'][0]}x{run['canvas'][1]}  "
                     f"statuses {run['statuses']}  peak RSS +{run['peak_rss_growth_mb']} MB  "
                     f"query p50 {during['p50']:.0f} ms (before {before['p50']:.0f} ms), "
                     f"{during['n']} answered, {during['errors']} errors")
    lines.append(f"worst peak RSS growth {result['worst_peak_rss_growth_mb']} MB (goal <= {GOAL_MB}): "
                 f"{'met' if result['goal_met'] else 'NOT met'}")
    return lines


# -- the worst cases -------------------------------------------------------------------------

def worst_case(case: str) -> tuple[bytes, tuple[int, int]]:
    """(file bytes, canvas) of one case. A PNG is written row by row, never held whole."""
    side = math.isqrt(pixel_limit())
    if case == "png-1bit-at-pixel-limit":
        return png_canvas(side, side, "1"), (side, side)
    if case == "png-rgba-at-budget":
        size = largest_within_budget(lambda s: canvas_cost(s, "RGBA", "PNG", DRAFT_MIN_SIDE))
        return png_canvas(*size, "RGBA"), size
    if case == "jpeg-baseline-at-pixel-limit":
        return _checked(_pillow_file(Image.new("L", (side, side), 128), "JPEG", quality=90), (side, side))
    if case == "jpeg-progressive-at-budget":
        # 4:2:0, as cameras write it: its coefficient buffers (3 bytes a pixel) stay whole at any draft scale.
        size = largest_within_budget(lambda s: canvas_cost(s, "RGB", "JPEG", DRAFT_MIN_SIDE, jpeg=True,
                                                           progressive_layers=YCBCR_420))
        image = Image.new("RGB", size, (120, 90, 60))
        return _checked(_pillow_file(image, "JPEG", quality=90, progressive=True, subsampling="4:2:0"), size)
    if case == "webp-at-budget":
        size = largest_within_budget(lambda s: canvas_cost(s, "RGB", "WEBP", DRAFT_MIN_SIDE))
        return _checked(_pillow_file(Image.new("RGB", size, (120, 90, 60)), "WEBP", quality=50), size)
    raise ValueError(f"unknown case {case!r}")


def largest_within_budget(cost: Callable[[tuple[int, int]], int], aspect: tuple[int, int] = (4, 3)) -> tuple[int, int]:
    """The largest canvas of this aspect (in steps of 64 px) whose cost fits the decode budget."""
    unit = 64
    low, high, best = 1, math.isqrt(pixel_limit() // (aspect[0] * aspect[1] * unit * unit)), None
    while low <= high:  # the cost grows with the canvas: bisect on the step
        mid = (low + high) // 2
        size = (aspect[0] * unit * mid, aspect[1] * unit * mid)
        if cost(size) <= DECODE_BUDGET:
            best, low = size, mid + 1
        else:
            high = mid - 1
    if best is None:
        raise ValueError("no canvas fits the decode budget")
    return best


def png_canvas(width: int, height: int, mode: str) -> bytes:
    """A PNG of one flat colour, written row by row: a huge canvas costs its compressed size only."""
    color_type, depth = PNG_COLOR_TYPES[mode]
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    row = b"\0" * (1 + (width * channels * depth + 7) // 8)  # filter byte 0, then the row
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"".join([b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)),
                     _chunk(b"IDAT", pixels), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pillow_file(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _checked(data: bytes, size: tuple[int, int]) -> tuple[bytes, tuple[int, int]]:
    # The server's own estimate of the file as written: the case must be one it accepts.
    cost = decode_cost(Image.open(io.BytesIO(data)), DRAFT_MIN_SIDE)
    if cost > DECODE_BUDGET:
        raise RuntimeError(f"the case file costs {cost} bytes, over the budget")
    return data, size


# -- one measured run ------------------------------------------------------------------------

def _measure(index_dir: str, data: bytes, normal_upload: bytes, concurrency: int) -> dict:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "--index-dir", index_dir,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(port, server)
        _request(port, "GET", "/api/search?q=warm+up&k=5")
        assert _upload(port, normal_upload)[0] == 200, "a normal upload failed"
        before = [_timed_query(port, f"a photo {i}") for i in range(BASELINE_QUERIES)]
        reset = reset_peak_rss(server.pid)
        rss_before = _status_mb(server.pid, "VmRSS")
        done = threading.Event()
        during: list[float] = []
        errors = 0

        def keep_querying():
            nonlocal errors
            for i in range(MAX_QUERIES):
                if done.is_set():
                    return
                try:
                    during.append(_timed_query(port, f"a cat on a sofa {i}"))
                except (OSError, AssertionError):
                    errors += 1

        querier = threading.Thread(target=keep_querying, daemon=True)
        querier.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            statuses = list(pool.map(lambda _: _upload(port, data)[0], range(concurrency)))
        burst_s = time.perf_counter() - started
        done.set()
        querier.join(REQUEST_TIMEOUT_S)
        peak = _status_mb(server.pid, "VmHWM")
        return {
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "burst_s": round(burst_s, 2),
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak,
            "peak_rss_growth_mb": peak - rss_before,
            "peak_reset": reset,  # False: VmHWM also holds the warm-up's peak, so growth is an upper bound
            "query_before": {**latency_summary(before), "n": len(before)},
            "query_during": {**(latency_summary(during) if during else {"p50": float("nan")}), "n": len(during),
                             "errors": errors},
        }
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before answering")
        try:
            if _request(port, "GET", "/api/info")[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S} s")


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _upload(port: int, data: bytes):
    boundary = "imgsearch-bench-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return _request(port, "POST", "/api/search/image?k=5", body,
                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def _timed_query(port: int, text: str) -> float:
    started = time.perf_counter()
    status, body = _request(port, "GET", "/api/search?" + f"q={text.replace(' ', '+')}&k=5")
    assert status == 200, body[:200]
    json.loads(body)
    return (time.perf_counter() - started) * 1e3


def _status_mb(pid: int, field: str) -> int:
    """A /proc/PID/status figure in MB (10^6 bytes: the goal's unit; the kernel's kB are KiB)."""
    return round(status_kb(field, pid) * 1024 / 1e6)
