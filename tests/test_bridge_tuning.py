"""`imgsearch bench bridge-tuning`: the split, the ranking rule and one real run on a few stamps."""

import json

import numpy as np
import pytest

from torchvision.models import ResNet50_Weights

from imgsearch.bench.bridge_tuning import (
    KS,
    PROMPT_SETS,
    bridge_tuning_lines,
    caption_key,
    class_log_probabilities,
    prompt_matrix,
    default_settings,
    image_vectors,
    run_bridge_tuning,
    split_by_caption_group,
    split_hits,
)
from imgsearch.datasets import TUXPAINT_STAMPS, EvalSet, Query, load_dataset
from imgsearch.errors import UsageError
from imgsearch.models import get_model
from imgsearch.models.bridge import PROMPTS, VARIANTS


def _evalset(captions):
    images = [f"/x/{i}.png" for i in range(len(captions))]
    queries = [Query(c, [p]) for p, c in zip(images, captions)]
    return EvalSet("hand", "tuxpaint", "/x", images, queries), list(range(len(images)))


def test_a_shared_caption_never_straddles_the_split_and_the_split_is_seeded():
    captions = ["A flower.", "a flower", "A cat.", "A dog.", "A flower.", "A bus.", "A dog", "A tree.", "A hat.", "A"]
    evalset, own = _evalset(captions)
    for seed in range(20):
        tuning, held, groups = split_by_caption_group(evalset, own, seed, 0.5)
        assert groups == 7  # 10 images: 'a flower' x3, 'a dog' x2 and five captions of their own
        assert sorted(tuning[0] + held[0]) == list(range(10)) and not set(tuning[0]) & set(held[0])
        assert tuning[1] == tuning[0] and held[1] == held[0]  # one caption per image here
        for images in (tuning[0], held[0]):
            keys = {caption_key(captions[i]) for i in images}
            other = held[0] if images is tuning[0] else tuning[0]
            assert not keys & {caption_key(captions[i]) for i in other}
        assert len(held[0]) >= 5
        assert split_by_caption_group(evalset, own, seed, 0.5) == (tuning, held, groups)
    splits = {tuple(split_by_caption_group(evalset, own, seed, 0.5)[1][0]) for seed in range(20)}
    assert len(splits) > 1  # the seed matters


def test_ranks_count_ties_against_the_model():
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)  # images 0 and 1 identical
    queries = np.array([[1, 0], [0.6, 0.8]], dtype=np.float32)
    hits = split_hits(vectors, queries, [0, 2], ([0, 1, 2], [0, 1]))
    # query 0: its image ties with image 1, so it ranks 2nd; query 1: image 2 (0.8) beats 0 and 1 (0.6)
    assert hits.shape == (2, len(KS))
    assert hits[:, KS.index(1)].tolist() == [0.0, 1.0]
    assert hits[:, KS.index(5)].tolist() == [1.0, 1.0]
    # the split is its own collection: without image 1 the tie is gone
    assert split_hits(vectors, queries, [0, 2], ([0, 2], [0, 1]))[:, 0].tolist() == [1.0, 1.0]


def test_bad_arguments_fail_in_one_line_before_any_work():
    for kwargs in ({"variants": ("lite9",)}, {"held_out_fraction": 1.0}, {"temperatures": (0.0,)},
                   {"prompt_sets": {"x": ("no placeholder",)}}, {"resizes": ("crop",)}):
        with pytest.raises(UsageError, match="bridge tuning needs"):
            run_bridge_tuning("/nonexistent", **kwargs)


def test_a_small_run_tunes_on_one_split_and_reports_the_other(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_CACHE_DIR", str(tmp_path))
    grid = {"temperatures": (1.0, 2.0), "top_ks": (20, 0), "prompt_sets": {"bare": PROMPT_SETS["bare"]}}
    result = run_bridge_tuning(variants=("lite0",), limit=40, resamples=200, **grid)
    assert json.loads(json.dumps(result)) == result
    assert result["image_side_cached"] is False
    split = result["split"]
    assert split["tuning"]["images"] + split["held_out"]["images"] == 40
    v = result["variants"]["lite0"]
    default = default_settings("lite0")
    assert default == {"resize": "pad", "temperature": VARIANTS["lite0"].temperature,
                       "top_k": VARIANTS["lite0"].top_k, "prompts": list(PROMPTS)}
    # the grid: 2 resizes x 2 T x 2 top-k x (bare + today's prompt, added so the default is in it)
    assert len(v["grid"]) == 16 and v["default"] in [g["settings"] for g in v["grid"]]
    best = max(g["tuning"]["mean_recall"] for g in v["grid"])
    assert v["tuning"]["chosen"]["mean_recall"] == best
    assert v["chosen_is_default"] == (v["chosen"] == default)
    for label in ("chosen", "default"):
        held = v["held_out"][label]
        assert held["queries"] == split["held_out"]["queries"]
        for k in KS:
            low, high = held["ci95"][f"recall@{k}"]
            assert low <= held[f"recall@{k}"] <= high
    diff = v["held_out_chosen_minus_default"]["recall@10"]
    assert diff["difference"] == pytest.approx(v["held_out"]["chosen"]["recall@10"]
                                               - v["held_out"]["default"]["recall@10"])
    text = "\n".join(bridge_tuning_lines(result))
    assert "held-out split: R@1" in text and "flags" in text.splitlines()[0]

    again = run_bridge_tuning(variants=("lite0",), limit=40, resamples=200, **grid)
    assert again["image_side_cached"] is True

    def figures(run):
        return {k: v for k, v in run["variants"]["lite0"].items() if k != "timings_s"}

    assert figures(again) == figures(result)


def test_the_default_setting_rebuilds_the_real_models_vectors(tmp_path, monkeypatch):
    """What the grid scores is what `imgsearch index` would store for that setting."""
    monkeypatch.setenv("IMGSEARCH_CACHE_DIR", str(tmp_path))
    paths = load_dataset(TUXPAINT_STAMPS).images[:6]
    model = get_model("bridge:lite0", precision="fp32")
    log_probs, _ = class_log_probabilities({"lite0": model}, paths, ["pad"])
    classes = ResNet50_Weights.DEFAULT.meta["categories"]
    matrix = prompt_matrix([model.embed_documents([t.format(c) for c in classes]) for t in PROMPTS])
    d = default_settings("lite0")
    rebuilt = image_vectors(log_probs["lite0"]["pad"], matrix, d["temperature"], d["top_k"])
    real = model.embed_image(paths)
    assert np.min(np.sum(rebuilt * real, axis=1)) > 0.99999
    other = image_vectors(log_probs["lite0"]["pad"], matrix, 1.0, 0)  # another setting moves them
    assert np.min(np.sum(other * real, axis=1)) < 0.9999
