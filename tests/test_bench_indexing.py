"""The indexing benchmark: its corpus, its models, its rounds and the shape of what it reports."""

import json
import os
import statistics

import pytest

from imgsearch.bench.corpus import build_corpus
from imgsearch.bench.indexing import FORWARD_BATCHES, NAIVE_LABEL, fast_precisions, run_indexing_bench
from imgsearch.bench.random_models import save_probe_openclip
from imgsearch.bench.rounds import figure_summary, rotated, summarise
from imgsearch.bench.summary import indexing_lines
from imgsearch.decode import read_and_decode
from imgsearch.errors import UsageError
from imgsearch.files import content_hash
from imgsearch.models import get_model

ROUNDS = 3
FORWARD_MIN_S = 0.3  # the tiny model's forward arm still cycles over its batches


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
    assert fast_precisions({"fp32": 20.0, "bf16": 2.0, "fp16": 15.0}) == ["fp32", "fp16"]
    assert fast_precisions({"bf16": 2.0}) == ["bf16"]  # nothing to compare with


def test_rounds_rotate_so_no_arm_always_runs_first():
    arms = ["naive", "forward fp32", "pipeline fp32"]
    orders = [rotated(arms, r) for r in range(3)]
    assert [order[0] for order in orders] == arms
    assert all(sorted(order) == sorted(arms) for order in orders)


def test_a_figure_over_rounds_is_its_median_and_range():
    assert figure_summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "spread": 1.0, "n": 3}
    assert figure_summary([4.0, 2.0, 6.0, 8.0])["median"] == 5.0
    rounds = [{"speed": 1.0, "ok": True, "label": "a"}, {"speed": 3.0, "ok": False, "label": "a"},
              {"speed": 2.0, "ok": True, "label": "a"}]
    assert summarise(rounds) == {"speed": figure_summary([1.0, 3.0, 2.0])}  # flags and labels are no figures


@pytest.fixture(scope="module")
def bench(tiny_openclip, tmp_path_factory):
    lines = []
    result = run_indexing_bench(
        tiny_openclip, n_images=8, precisions=("fp32", "bf16"), batch_size=4, workers=2, progress=lines.append,
        rounds=ROUNDS, pipeline_precisions=("fp32",), rss_images=(4,), cache_dir=str(tmp_path_factory.mktemp("bench")),
        forward_min_s=FORWARD_MIN_S,
    )
    return result, lines


def test_every_arm_runs_once_per_round_in_a_rotating_order(bench):
    result, lines = bench
    assert json.loads(json.dumps(result)) == result
    assert result["config"]["rounds"] == ROUNDS and len(result["rounds"]) == ROUNDS
    arms = ["naive", "forward fp32", "forward bf16", "pipeline fp32"]
    assert [r["order"] for r in result["rounds"]] == [rotated(arms, i) for i in range(ROUNDS)]
    for r in result["rounds"]:
        assert set(r["forward"]) == {"fp32", "bf16"} and set(r["pipeline"]) == {"fp32"}
        assert r["pipeline"]["fp32"]["embedded"] == 8 and r["pipeline"]["fp32"]["skipped"] == 0
        for forward in r["forward"].values():  # whole passes over FORWARD_BATCHES batches, >= min seconds
            assert forward["batches"] % FORWARD_BATCHES == 0 and forward["seconds"] >= FORWARD_MIN_S
    progress = [line for line in lines if line.startswith("round ")]
    assert progress[:4] == [f"round 1/{ROUNDS}: {arm}" for arm in arms]
    assert progress[4] == f"round 2/{ROUNDS}: forward fp32"


def test_medians_and_spreads_are_those_of_the_rounds(bench):
    result, _ = bench
    rounds = result["rounds"]

    def check(summary, values):
        assert summary == figure_summary(values)
        assert summary["median"] == statistics.median(values) and summary["n"] == ROUNDS

    check(result["naive"]["images_per_s"], [r["naive"]["images_per_s"] for r in rounds])
    check(result["naive"]["seconds"], [r["naive"]["seconds"] for r in rounds])
    for precision in ("fp32", "bf16"):
        check(result["forward"][precision]["images_per_s"], [r["forward"][precision]["images_per_s"] for r in rounds])
    pipeline = result["pipeline"]["fp32"]
    for figure in ("images_per_s", "seconds", "peak_rss_bytes", "peak_growth_bytes", "index_bytes_per_image"):
        check(pipeline[figure], [r["pipeline"]["fp32"][figure] for r in rounds])
    for r in rounds:  # a rate is images over the seconds of that round
        assert r["naive"]["images_per_s"] == 8 / r["naive"]["seconds"]
        assert r["pipeline"]["fp32"]["images_per_s"] == 8 / r["pipeline"]["fp32"]["seconds"]


def test_ratios_are_taken_within_each_round_then_summarised(bench):
    result, _ = bench
    rounds = result["rounds"]
    for r in rounds:
        naive, forward, pipeline = r["naive"], r["forward"], r["pipeline"]["fp32"]
        assert r["ratios"]["fp32"] == {
            "forward_over_naive": forward["fp32"]["images_per_s"] / naive["images_per_s"],
            "pipeline_over_naive": pipeline["images_per_s"] / naive["images_per_s"],
            "pipeline_over_forward": pipeline["images_per_s"] / forward["fp32"]["images_per_s"],
            "pipeline_over_forward_cpu": forward["fp32"]["cpu_ms_per_image"] / pipeline["cpu_ms_per_image"],
        }
        assert r["ratios"]["bf16"] == {"forward_over_naive": forward["bf16"]["images_per_s"] / naive["images_per_s"]}
    for precision, ratios in result["ratios"].items():
        for name, summary in ratios.items():
            assert summary == figure_summary([r["ratios"][precision][name] for r in rounds])
    assert set(result["ratios"]["fp32"]) == {"forward_over_naive", "pipeline_over_naive", "pipeline_over_forward",
                                             "pipeline_over_forward_cpu"}


def test_cpu_time_per_image_stands_beside_wall_time(bench):
    result, _ = bench
    for r in result["rounds"]:
        for run, images in [(f, f["batches"] * 4) for f in r["forward"].values()] + \
                           [(r["pipeline"]["fp32"], r["pipeline"]["fp32"]["embedded"])]:
            assert run["cpu_ms_per_image"] == 1000 * run["cpu_seconds"] / images
            assert run["cores_busy"] == run["cpu_seconds"] / run["seconds"]
            assert 0 < run["cores_busy"] < os.cpu_count() + 0.5  # no more CPU than the machine has
    assert "CPU ms/image" in "\n".join(indexing_lines(result))


def test_the_decode_workers_steps_are_costed_per_kind_of_file(bench):
    stages = bench[0]["stages"]
    assert {ext: k["files"] for ext, k in stages["per_kind"].items()} == {"jpg": 2, "png": 6}
    for key in ("decode_ms", "pixels_ms"):
        per_image = sum(k[key] * k["files"] for k in stages["per_kind"].values()) / 8
        assert stages["per_image"][key] == pytest.approx(per_image)
    assert stages["per_kind"]["jpg"]["decode_ms"] > stages["per_kind"]["png"]["decode_ms"]  # 12 Mpx vs small
    assert "decode workers, CPU ms per file" in "\n".join(indexing_lines(bench[0]))


def test_every_arm_says_what_it_is_and_the_cosines_compare_the_same_images(bench):
    result, _ = bench
    assert result["corpus"]["n_images"] == 8 and result["corpus"]["camera_jpegs"] == 2
    assert result["model"]["dim"] == 32
    naive = result["naive"]
    assert naive["label"] == NAIVE_LABEL and "not rclip" in naive["label"] and naive["batch_size"] == 1
    assert naive["cosine_between_images"]["n"] == 7  # each image with the next
    for precision in ("fp32", "bf16"):
        forward = result["forward"][precision]
        assert forward["batch_size"] == 4 and f"{precision}, batch 4" in forward["label"]
        assert forward["cosine_to_fp32"]["n"] == 4 * FORWARD_BATCHES  # one pass: the same tensors for each
    assert result["forward"]["fp32"]["cosine_to_fp32"]["min"] == pytest.approx(1.0)
    assert 0.99 < result["forward"]["bf16"]["cosine_to_fp32"]["mean"] < 0.99999  # bf16 rounds: close, not equal
    pipeline = result["pipeline"]["fp32"]
    assert "index_folder, fp32, batch 4" in pipeline["label"]
    assert pipeline["peak_reset"] is True  # so the peak is the indexer's own, not the model load's
    assert pipeline["index_bytes_per_image"]["min"] > 32 * 4  # at least the float32 vector itself
    assert pipeline["cosine_to_pipeline_fp32"]["min"] == pytest.approx(1.0)
    cosine = pipeline["cosine_to_naive"]  # the pipeline decodes big JPEGs at reduced size
    assert cosine["n"] == 8 and 0.9 < cosine["min"] <= cosine["mean"] <= 1.000001
    assert result["pipeline"]["bf16"] == {"not_run": "not in pipeline_precisions"}


def test_peak_rss_and_machine_facts_stand_beside_the_figures(bench):
    result, _ = bench
    [rss] = result["peak_rss"]
    assert rss["n_images"] == rss["embedded"] == 4
    assert rss["peak_rss_bytes"] >= rss["rss_before_index_bytes"] > 100 * 2**20  # torch alone is more
    assert rss["peak_growth_bytes"] == rss["peak_rss_bytes"] - rss["rss_before_index_bytes"]
    machine = result["machine"]
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    assert {"amx_bf16", "avx512_bf16"} & flags == {"amx_bf16", "avx512_bf16"} & set(machine["cpu_flags"])
    assert machine["bf16_native"] == bool({"amx_bf16", "avx512_bf16"} & flags)
    assert len(machine["load_average_start"]) == len(machine["load_average_end"]) == 3
    assert all(len(r["load_average"]) == 3 for r in result["rounds"])

    text = "\n".join(indexing_lines(result))  # what `imgsearch bench indexing` prints
    assert text.startswith("machine: ") and f"median (min-max) of {ROUNDS} interleaved rounds" in text
    assert "(a) naive loop: one image at a time" in text
    assert "(c) pipeline bf16: not run (not in pipeline_precisions)" in text
    assert "peak RSS indexing 4 images" in text


@pytest.mark.parametrize("kwargs", [{"n_images": 0}, {"batch_size": 0}, {"precisions": ("int4",)}, {"rounds": 2},
                                    {"precisions": ("fp32",), "pipeline_precisions": ("bf16",)}])
def test_bad_arguments_fail_before_any_work(kwargs, tmp_path):
    with pytest.raises(UsageError):
        run_indexing_bench("openclip:local-dir:/nonexistent", cache_dir=str(tmp_path), **kwargs)
    assert not os.listdir(tmp_path)
