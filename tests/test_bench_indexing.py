"""The indexing benchmark: its corpus, its models and the shape of what it reports."""

import json
import os

import pytest


from imgsearch.bench.indexing import (
    build_corpus,
    fast_precisions,
    run_indexing_bench,
    save_probe_openclip,
)
from imgsearch.bench.summary import indexing_lines
from imgsearch.decode import read_and_decode
from imgsearch.errors import UsageError
from imgsearch.files import content_hash
from imgsearch.models import get_model


def test_corpus_mixes_camera_jpegs_with_exif_and_small_pngs(tmp_path):
    folder, paths = build_corpus(str(tmp_path / "corpus"), 8, camera_every=4)
    assert sorted(os.listdir(folder)) == [os.path.basename(p) for p in paths]
    cameras = [read_and_decode(p) for p in paths if p.endswith(".jpg")]
    assert len(cameras) == 2
    assert {(d.width, d.height) for d in cameras} == {(4000, 3000), (3000, 4000)}  # orientation 1 and 6
    assert all(d.exif["taken_at"].startswith("2023:") and d.exif["camera"] for d in cameras)
    pngs = [read_and_decode(p) for p in paths if p.endswith(".png")]
    assert len(pngs) == 6 and all(max(d.width, d.height) <= 800 for d in pngs)
    with_bytes = [open(p, "rb").read() for p in paths]
    assert len({content_hash(b) for b in with_bytes}) == 8  # no file is a copy of another


def test_corpus_is_reused_once_built(tmp_path):
    _, paths = build_corpus(str(tmp_path / "corpus"), 4, camera_every=0)
    stamps = [os.stat(p).st_mtime_ns for p in paths]
    _, again = build_corpus(str(tmp_path / "corpus"), 4, camera_every=0)
    assert again == paths and [os.stat(p).st_mtime_ns for p in again] == stamps


def test_probe_model_loads_through_the_local_dir_spec(tmp_path):
    spec = save_probe_openclip(str(tmp_path / "models"))
    assert spec == "openclip:local-dir:" + str(tmp_path / "models" / "rss-probe")
    model = get_model(spec, device="cpu")
    assert model.dim == 512 and model.preprocess_config()["size"] == [224, 224]


def test_a_precision_much_slower_than_fp32_is_left_out_of_the_pipeline():
    forward = {"fp32": {"images_per_s": 20.0}, "bf16": {"images_per_s": 2.0}, "fp16": {"images_per_s": 15.0}}
    assert fast_precisions(forward) == ["fp32", "fp16"]
    assert fast_precisions({"bf16": {"images_per_s": 2.0}}) == ["bf16"]  # nothing to compare with


def test_bench_measures_all_three_on_the_same_files(tiny_openclip, tmp_path):
    result = run_indexing_bench(
        tiny_openclip, n_images=8, precisions=("fp32", "bf16"), batch_size=4, workers=2,
        pipeline_precisions=("fp32",), rss_images=(4,), cache_dir=str(tmp_path),
    )
    assert json.loads(json.dumps(result)) == result
    assert result["corpus"]["n_images"] == 8 and result["corpus"]["camera_jpegs"] == 2
    assert result["model"]["spec"] == tiny_openclip and result["model"]["dim"] == 32
    assert result["naive"]["images_per_s"] > 0
    assert result["naive"]["cosine_between_images"]["n"] == 7  # each image with the next
    for precision in ("fp32", "bf16"):
        forward = result["forward"][precision]
        assert forward["images_per_s"] > 0 and forward["batch_size"] == 4 and forward["batches"] >= 1
        assert forward["cosine_to_fp32"]["n"] == 4 * forward["batches"]
    assert result["forward"]["fp32"]["cosine_to_fp32"]["min"] == pytest.approx(1.0)
    assert 0.99 < result["forward"]["bf16"]["cosine_to_fp32"]["mean"] <= 1.000001

    pipeline = result["pipeline"]["fp32"]
    assert pipeline["embedded"] == 8 and pipeline["skipped"] == 0
    assert pipeline["images_per_s"] > 0
    assert pipeline["peak_rss_bytes"] >= pipeline["rss_before_index_bytes"] > 0
    assert pipeline["index_bytes_per_image"] > 32 * 4  # at least the float32 vector itself
    assert pipeline["cosine_to_pipeline_fp32"]["min"] == pytest.approx(1.0)
    naive = pipeline["cosine_to_naive"]  # the pipeline decodes big JPEGs at reduced size
    assert naive["n"] == 8 and 0.9 < naive["min"] <= naive["mean"] <= 1.000001
    assert result["pipeline"]["bf16"] == {"not_run": "not in pipeline_precisions"}
    assert set(result["ratios"]) == {"fp32"}
    assert set(result["ratios"]["fp32"]) == {"pipeline_over_naive", "pipeline_over_forward"}

    [rss] = result["peak_rss"]
    assert rss["n_images"] == rss["embedded"] == 4
    assert rss["peak_rss_bytes"] >= rss["rss_before_index_bytes"] > 100 * 2**20  # torch alone is more
    assert rss["peak_growth_bytes"] == rss["peak_rss_bytes"] - rss["rss_before_index_bytes"]
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1 and machine["cpu_capability"]

    text = "\n".join(indexing_lines(result))  # what `imgsearch bench indexing` prints
    assert "(a) naive loop" in text and "(c) pipeline bf16: not run (not in pipeline_precisions)" in text
    assert "peak RSS indexing 4 images" in text


@pytest.mark.parametrize("kwargs", [{"n_images": 0}, {"batch_size": 0}, {"precisions": ("int4",)},
                                    {"precisions": ("fp32",), "pipeline_precisions": ("bf16",)}])
def test_bad_arguments_fail_before_any_work(kwargs, tmp_path):
    with pytest.raises(UsageError):
        run_indexing_bench("openclip:local-dir:/nonexistent", cache_dir=str(tmp_path), **kwargs)
    assert not os.listdir(tmp_path)
