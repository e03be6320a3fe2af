"""`imgsearch bench scale`'s vectors part at a small N, through the same code path as its 5M run
(shards -> SQLite -> on-disk IVF -> a reader's search), and the projection worked out from it."""

import json

import pytest

from imgsearch import ondisk
from imgsearch.bench import scale


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ondisk.BUDGET_ENV, "1000000")  # 1 MB: 20k vectors at dim 512 go to disk
        return scale.run_scale_bench(("vectors",), n_vectors=20_000, dim=512,
                                     work_dir=str(tmp_path_factory.mktemp("scale")),
                                     cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_the_vectors_part_goes_through_shards_sqlite_and_an_on_disk_ivf(result):
    vectors = result["vectors"]
    assert vectors["n"] == 20_000 and vectors["shards"] >= 3
    assert vectors["factory"].startswith("IVF") and vectors["factory"].endswith(",SQ8") and vectors["on_disk"]
    assert vectors["sqlite_bytes_per_vector"] > 4 * 512  # the blob and its row
    assert 512 <= vectors["faiss_bytes_per_vector"] < 4 * 512  # one byte a component, plus ids
    assert set(vectors["phases"]) == {"images", "plan", "shards_and_merge", "faiss_build", "search"}
    assert all(p["peak_anon_bytes"] >= vectors["baseline_anon_bytes"] * 0.5 for p in vectors["phases"].values())
    search = vectors["search"]
    assert [s["nprobe"] for s in search["settings"]] == list(scale.NPROBES)
    recalls = [s["recall_at_10"] for s in search["settings"]]
    assert recalls == sorted(recalls) and recalls[-1] >= 0.95  # more lists probed, never worse; SQ8 codes are close
    # the quoted setting is the fewest lists reaching the target on queries that are not measured
    meeting = [s for s in search["settings"] if s["calibration_recall_at_10"] >= scale.TARGET_RECALL]
    assert search["at_target"] == meeting[0]
    assert search["n_calibration_queries"] == scale.N_CALIBRATION
    json.dumps(result)  # plain data, as --json prints it


def test_the_projection_scales_the_measured_figures(result):
    rows = {row["images"]: row for row in result["projection"]["rows"]}
    small, large = rows[10_000_000], rows[100_000_000]
    vectors = result["vectors"]
    assert small["sqlite_bytes"] == pytest.approx(vectors["sqlite_bytes_per_vector"] * 4 * 10_000_000, rel=1e-6)
    assert large["faiss_bytes"] == pytest.approx(10 * small["faiss_bytes"], rel=1e-6)
    hours = small["embed_hours"]["gpu_worker_assumed"]
    assert hours["8"] == pytest.approx(4 * 10_000_000 / (scale.ASSUMED_GPU_IMAGES_PER_S * 8) / 3600, abs=0.01)
    assert "cpu_worker_measured" not in small["embed_hours"]  # the engines part did not run
    assert scale.scale_lines(result)[0].startswith("machine: ")
