"""Search filters on real photos: folder, date (EXIF, else file time), camera, minimum score.

The filter works inside FAISS (VectorIndex.search_among), so k results come back whenever k
images match: checked through the CLI on real photos (exact and HNSW indexes), and against
exact filtered search on clustered vectors for every index family (IVF included).
"""

import json
import os
import time
from datetime import datetime

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from imgsearch.autoindex import build_index, search_params, apply_search_params
from imgsearch.bench.filtered import filter_lines, run_filter_bench
from imgsearch.bench.search import ClusteredDistribution
from imgsearch.errors import UsageError
from imgsearch.filters import SearchFilter, parse_date
from imgsearch.indexer import index_folder
from imgsearch.search import Searcher
from imgsearch.vectors import VectorIndex

from conftest import run_imgsearch as run

K = 5


def _epoch(text: str) -> float:
    return time.mktime(datetime.fromisoformat(text).timetuple())


@pytest.fixture
def library(photos, tmp_path):
    """7 real photos in three versions, one folder per year:
    2022/  the photos as PNG, file time 2022-03-01
    2023/  mirrored JPEGs with EXIF capture time 2023-06-15 and camera "Canon EOS 5D", file time 2020-01-01
    2024/  half-size PNGs, file time 2024-08-01, no EXIF
    """
    root = tmp_path / "library"
    for year in ("2022", "2023", "2024"):
        (root / year).mkdir(parents=True)
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "Canon", "EOS 5D"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2023:06:15 12:00:00"
    for name, path in photos.items():
        stem = os.path.splitext(name)[0]
        image = Image.open(path).convert("RGB")
        targets = {
            root / "2022" / f"{stem}.png": (lambda p: image.save(p), "2022-03-01T10:00:00"),
            root / "2023" / f"{stem}.jpg": (lambda p: ImageOps.mirror(image).save(p, quality=90, exif=exif),
                                             "2020-01-01T10:00:00"),
            root / "2024" / f"{stem}.png": (lambda p: image.resize((image.width // 2, image.height // 2)).save(p),
                                             "2024-08-01T10:00:00"),
        }
        for target, (write, mtime) in targets.items():
            write(target)
            os.utime(target, (_epoch(mtime), _epoch(mtime)))
    return str(root)


def search(capsys, monkeypatch, index_dir, spec, *args, query="a photo"):
    code, out, err = run(capsys, monkeypatch, "search", query, "--model", spec, "--index-dir", index_dir,
                         "--json", *args)
    return code, (json.loads(out) if code == 0 else None), err


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32"])
def test_folder_filter_returns_only_that_folder_and_still_k(capsys, monkeypatch, library, index_dir,
                                                            tiny_openclip, index_type):
    index_folder(library, [tiny_openclip], index_dir, factory=index_type)
    _, unfiltered, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", str(K))
    for year in ("2022", "2023", "2024"):
        folder = os.path.join(library, year)
        code, result, err = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", str(K), "--in", folder)
        assert code == 0 and len(result["results"]) == K
        assert all(os.path.dirname(r["path"]) == folder for r in result["results"])
        assert result["matched"] == 7 and "7 indexed images match the filter" in err
    # the unfiltered top K spans folders, so the filter did change what came back
    assert len({os.path.dirname(r["path"]) for r in unfiltered["results"]}) > 1
    # two folders: either one
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", "14",
                             "--in", os.path.join(library, "2022"), "--in", os.path.join(library, "2024"))
    assert len(result["results"]) == 14 and not any("/2023/" in r["path"] for r in result["results"])


def test_filtered_results_are_the_exact_top_k_among_matches(library, index_dir, tiny_openclip):
    index_folder(library, [tiny_openclip], index_dir)
    searcher = Searcher(tiny_openclip, index_dir)
    everything = searcher.text("a photo", k=21).results
    folder = os.path.join(library, "2024")
    filtered = searcher.text("a photo", k=K, filter=SearchFilter.parse([folder])).results
    searcher.close()
    expected = [r["path"] for r in everything if r["path"].startswith(folder + os.sep)][:K]
    assert [r["path"] for r in filtered] == expected


def test_date_filter_uses_exif_capture_time_else_file_time_and_says_which(capsys, monkeypatch, library,
                                                                          index_dir, tiny_openclip):
    index_folder(library, [tiny_openclip], index_dir)
    # 2023's files were modified in 2020, but their EXIF says 2023: EXIF wins
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", str(K),
                             "--after", "2023-01-01", "--before", "2024")
    assert code == 0 and len(result["results"]) == K
    assert all("/2023/" in r["path"] for r in result["results"])
    assert {r["date"] for r in result["results"]} == {"2023-06-15T12:00:00"}
    assert {r["date_source"] for r in result["results"]} == {"exif"}
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", "10", "--after", "2024-07")
    assert len(result["results"]) == 7 and all("/2024/" in r["path"] for r in result["results"])
    assert {r["date_source"] for r in result["results"]} == {"file"}
    assert {r["date"] for r in result["results"]} == {"2024-08-01T10:00:00"}
    # before is strict, after inclusive
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", "21", "--before", "2022-03-01T10:00")
    assert result["results"] == [] and result["matched"] == 0
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", "21", "--after", "2022-03-01T10:00",
                             "--before", "2022-03-02")
    assert len(result["results"]) == 7 and all("/2022/" in r["path"] for r in result["results"])


def test_camera_filter_and_text_output_show_dates(capsys, monkeypatch, library, index_dir, tiny_openclip):
    index_folder(library, [tiny_openclip], index_dir)
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", str(K), "--camera", "canon eos")
    assert code == 0 and len(result["results"]) == K and all("/2023/" in r["path"] for r in result["results"])
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "--camera", "Nikon")
    assert result["results"] == [] and result["matched"] == 0
    code, out, err = run(capsys, monkeypatch, "search", "a photo", "--model", tiny_openclip, "--index-dir", index_dir,
                         "--after", "2023", "-k", "3")
    assert code == 0 and len(out.splitlines()) == 3
    assert all(" (exif) " in line or " (file) " in line for line in out.splitlines())


def test_min_score_returns_fewer_than_k_when_few_score_that_high(capsys, monkeypatch, library, index_dir,
                                                                tiny_openclip):
    index_folder(library, [tiny_openclip], index_dir)
    _, everything, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", "21")
    scores = [r["score"] for r in everything["results"]]
    threshold = (scores[2] + scores[3]) / 2  # between the 3rd and 4th best
    assert scores[2] > scores[3]
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", "10", "--min-score", repr(threshold))
    assert code == 0 and [r["score"] for r in result["results"]] == scores[:3]
    code, result, err = search(capsys, monkeypatch, index_dir, tiny_openclip, "--min-score", "1")
    assert result["results"] == [] and "none scores at least --min-score" in err
    # with a folder filter as well: both apply
    code, result, _ = search(capsys, monkeypatch, index_dir, tiny_openclip, "-k", "10", "--min-score",
                             repr(scores[-1]), "--in", os.path.join(library, "2022"))
    assert len(result["results"]) == 7


def test_filters_follow_what_an_indexer_adds(library, index_dir, tiny_openclip):
    index_folder(library, [tiny_openclip], index_dir)
    searcher = Searcher(tiny_openclip, index_dir)
    new_folder = os.path.join(library, "2025")
    only_new = SearchFilter.parse([new_folder])
    assert searcher.text("a photo", k=3, filter=only_new).results == []
    os.makedirs(new_folder)
    Image.open(os.path.join(library, "2022", "cat.png")).rotate(90, expand=True).save(os.path.join(new_folder, "cat.png"))
    index_folder(library, [tiny_openclip], index_dir)
    searcher.refresh()
    assert [os.path.basename(r["path"]) for r in searcher.text("a photo", k=3, filter=only_new).results] == ["cat.png"]
    searcher.close()


@pytest.mark.parametrize("args, message", [
    (["--after", "2023-13-01"], "bad --after date '2023-13-01'"),
    (["--after", "yesterday"], "bad --after date 'yesterday'"),
    (["--before", "2023/01/01"], "bad --before date"),
    (["--after", "2024", "--before", "2023"], "is not before --before"),
    (["--min-score", "2"], "bad minimum score"),
    (["--min-score", "nan"], "bad minimum score"),
    (["--min-score", "high"], "--min-score"),
    (["--camera", " "], "empty --camera"),
    (["--minus-weight", "-1", "--minus", "x"], "bad minus weight"),
])
def test_bad_filter_values_are_one_line_and_exit_2(capsys, monkeypatch, library, index_dir, tiny_openclip,
                                                   args, message):
    index_folder(library, [tiny_openclip], index_dir)
    code, out, err = run(capsys, monkeypatch, "search", "a photo", "--model", tiny_openclip,
                         "--index-dir", index_dir, *args)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_parse_date_accepts_the_documented_forms():
    assert parse_date("2024") == datetime(2024, 1, 1)
    assert parse_date("2024-05") == datetime(2024, 5, 1)
    assert parse_date("2024-05-17") == datetime(2024, 5, 17)
    assert parse_date("2024-05-17T08:30") == datetime(2024, 5, 17, 8, 30)
    assert parse_date("2024-05-17 08:30:05") == datetime(2024, 5, 17, 8, 30, 5)
    for bad in ("24", "2024-5", "2024-02-30", "2024-05-17T25:00", ""):
        with pytest.raises(UsageError):
            parse_date(bad)


FACTORIES = ["Flat", "SQ8", "PQ16x4np", "HNSW32", "IVF64,Flat", "IVF64,SQ8"]


@pytest.mark.parametrize("factory", FACTORIES)
def test_search_among_returns_k_matches_and_agrees_with_exact_filtered_search(factory):
    rng = np.random.default_rng(3)
    n, dim = 6000, 64
    distribution = ClusteredDistribution.random(dim, 30, 0.6, rng)
    vectors = distribution.sample(n, rng)
    ids = np.arange(n, dtype=np.int64) * 7 + 11  # ids are image ids, not positions
    index = build_index(factory, vectors, ids)
    params = search_params(factory, n)
    if params:
        apply_search_params(index, params)
    vi = VectorIndex(index, factory)
    queries = distribution.sample(30, rng)
    for fraction in (0.002, 0.02, 0.3):
        chosen = np.sort(rng.choice(n, int(n * fraction), replace=False))
        recalls = []
        for q in queries:
            scores, found = vi.search_among(q, 10, ids[chosen])
            found = found[0][found[0] >= 0]
            assert len(found) == 10 and set(found) <= set(ids[chosen])
            exact = ids[chosen][np.argsort(-(vectors[chosen] @ q), kind="stable")[:10]]
            recalls.append(len(set(found) & set(exact)) / 10)
        if factory in ("Flat", "HNSW32") and fraction < 0.1 or factory == "Flat":
            assert min(recalls) == 1.0, (factory, fraction)  # exact: scans or searches every kept vector
        elif factory == "IVF64,Flat" and fraction < 0.05:
            assert min(recalls) == 1.0, (factory, fraction)  # nprobe grown to every list
        elif "PQ" not in factory:
            assert np.mean(recalls) >= 0.9, (factory, fraction, np.mean(recalls))
    # fewer kept ids than k: all of them, nothing else
    scores, found = vi.search_among(queries[0], 10, ids[:3])
    assert sorted(found[0][found[0] >= 0].tolist()) == ids[:3].tolist()


def test_filter_bench_gets_k_from_every_index_type_where_trimming_a_top_k_does_not():
    result = run_filter_bench(n=3000, factories=("auto", "Flat", "HNSW32", "IVF32,Flat"), fractions=(0.01, 0.3),
                              n_queries=20)
    assert [r["index_type"] for r in result["runs"]] == ["Flat", "Flat", "HNSW32", "IVF32,Flat"]
    for bench_run in result["runs"]:
        by_name = {f["name"]: f for f in bench_run["filters"]}
        assert set(by_name) == {"folder 0.01", "date 0.01", "folder 0.3", "date 0.3"}
        for f in bench_run["filters"]:
            assert f["full_k_share"] == 1.0, (bench_run["factory"], f["name"])
            assert abs(f["matched"] / 3000 - f["fraction"]) < 0.05
            assert 0 < f["latency_ms"]["p50"] <= f["latency_ms"]["p95"]
        for name in ("folder 0.01", "date 0.01"):  # 30 kept: exact among them on every type
            assert by_name[name]["recall_at_k"] == 1.0, (bench_run["factory"], name)
            assert by_name[name]["post_filter"]["full_k_share"] < 0.5  # the naive way comes back short
        if bench_run["index_type"] == "Flat":
            assert all(f["recall_at_k"] == 1.0 for f in bench_run["filters"])
        else:
            assert min(f["recall_at_k"] for f in bench_run["filters"]) >= 0.9, bench_run
    assert result["goal"] is None  # the goal is stated at 100k vectors only
    lines = filter_lines(result)
    assert len(lines) == 2 + 4 * 4 and "IVF32,Flat" in lines[-1]


@pytest.mark.parametrize("factory, params", [("IVF64,Flat", {"nprobe": 1}), ("HNSW32", {"efSearch": 1})])
def test_search_among_widens_the_search_until_k_come_back(factory, params):
    """Tuned far too narrow (1 list, efSearch 1), the filtered search still returns k: IVF probes
    more lists, then all; HNSW raises efSearch to k, then searches the kept vectors exactly."""
    rng = np.random.default_rng(5)
    distribution = ClusteredDistribution.random(32, 20, 0.6, rng)
    vectors = distribution.sample(4000, rng)
    ids = np.arange(4000, dtype=np.int64) + 1
    index = build_index(factory, vectors, ids)
    apply_search_params(index, params)
    vi = VectorIndex(index, factory)
    chosen = np.sort(rng.choice(4000, 600 if factory == "HNSW32" else 120, replace=False))
    k = 100
    for q in distribution.sample(10, rng):
        scores, found = vi.search_among(q, k, ids[chosen])
        found = found[0][found[0] >= 0]
        assert len(found) == k and set(found) <= set(ids[chosen])
        assert np.all(np.diff(scores[0]) <= 1e-6)  # best first
        if factory.startswith("IVF"):  # 1 probe / 3% kept: 34 lists hold ~64 kept < k, so all 64: exact
            exact = ids[chosen][np.argsort(-(vectors[chosen] @ q), kind="stable")[:k]]
            assert set(found) == set(exact)
