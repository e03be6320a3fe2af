"""Compositional queries: texts and images added and subtracted as one vector (compose.py).

The effect of a minus term is measured on the captioned tuxpaint stamps with the offline
model bridge:lite0 (real weights): over many stamps, subtracting a stamp's caption from a query
pushes that stamp down the ranking, and adding it pulls it up. The arithmetic itself is checked
against numpy for every model family the tests can load.
"""

import json
import os
import shutil

import numpy as np
import pytest

from imgsearch.compose import combine, describe, query_terms
from imgsearch.datasets import load_dataset
from imgsearch.errors import UsageError
from imgsearch.evaluate import evaluate
from imgsearch.indexer import index_folder
from imgsearch.report import write_report
from imgsearch.search import Searcher

from conftest import run_imgsearch as run

STAMPS = 120  # captioned stamps indexed, spread over every category
PAIRS = 80  # (query stamp, subtracted stamp) pairs measured
NEUTRAL = "a picture"


@pytest.fixture(scope="module")
def stamps(tmp_path_factory):
    """STAMPS installed tuxpaint stamps with distinct captions, indexed with bridge:lite0:
    (searcher, {path: caption})."""
    evalset = load_dataset("tuxpaint")
    caption_of = {}
    for query in evalset.queries:  # one caption per stamp; a caption shared by stamps names none of them
        if len(query.relevant) == 1 and query.text not in caption_of.values():
            caption_of.setdefault(query.relevant[0], query.text)
    chosen = sorted(caption_of)[:: max(1, len(caption_of) // STAMPS)][:STAMPS]
    root = tmp_path_factory.mktemp("stamps")
    captions = {}
    for source in chosen:
        target = root / "stamps" / os.path.relpath(source, evalset.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        captions[str(target)] = caption_of[source]
    index_dir = str(root / "index")
    index_folder(str(root / "stamps"), ["bridge:lite0"], index_dir)
    searcher = Searcher("bridge:lite0", index_dir)
    yield searcher, captions
    searcher.close()


def ranks(searcher, terms, n):
    """Rank (1 = first) of every indexed image for these terms."""
    return {r["path"]: r["rank"] for r in searcher.terms(terms, n).results}


def test_enough_stamps_are_indexed(stamps):
    searcher, captions = stamps
    assert searcher.vi.ntotal == len(captions) >= 100


def test_a_minus_term_pushes_its_concept_down_over_many_stamps(stamps):
    searcher, captions = stamps
    paths = sorted(captions)
    n = len(paths)
    rng = np.random.default_rng(0)
    worse, shifts = 0, []
    for _ in range(PAIRS):
        query_stamp, target = rng.choice(paths, 2, replace=False)
        plain = ranks(searcher, query_terms(captions[query_stamp]), n)
        minus = ranks(searcher, query_terms(captions[query_stamp], minus=[captions[target]]), n)
        assert len(plain) == len(minus) == n
        worse += minus[target] > plain[target] or plain[target] == n
        shifts.append(minus[target] - plain[target])
    # Subtracting a concept lowers it in (nearly) every pair, and by a lot on average.
    assert worse >= 0.9 * PAIRS, (worse, PAIRS)
    assert np.median(shifts) >= 0.2 * n, np.median(shifts)


def test_a_minus_term_lowers_and_a_plus_term_raises_each_stamp_from_a_neutral_query(stamps):
    searcher, captions = stamps
    n = len(captions)
    plain = ranks(searcher, query_terms(NEUTRAL), n)
    lower = raise_ = 0
    for path, caption in captions.items():
        lower += ranks(searcher, query_terms(NEUTRAL, minus=[caption]), n)[path] >= plain[path]
        raise_ += ranks(searcher, query_terms(NEUTRAL, plus=[caption]), n)[path] <= plain[path]
    # Measured: 106 and 95 of 120 (a bridge image vector mixes class prompts, so a caption's
    # vector is not always nearest its own stamp); a term with no effect would give about half.
    assert lower >= 0.8 * n and raise_ >= 0.7 * n, (lower, raise_, n)


def test_a_weight_scales_how_far_a_minus_term_pushes(stamps):
    searcher, captions = stamps
    paths = sorted(captions)
    n = len(paths)
    total = {0.25: 0, 2.0: 0}
    for query_stamp, target in zip(paths[::2], paths[1::2]):
        for weight in total:
            terms = query_terms(captions[query_stamp], minus=[captions[target]], minus_weight=weight)
            total[weight] += ranks(searcher, terms, n)[target]
    assert total[2.0] > total[0.25]


@pytest.mark.parametrize("family", ["bridge", "openclip"])
def test_composed_search_is_exact_search_with_the_documented_vector(family, stamps, tiny_openclip):
    searcher = stamps[0] if family == "bridge" else None
    if searcher is None:
        index_dir = os.path.join(os.path.dirname(stamps[0].index_dir), "tiny-index")
        index_folder(os.path.join(os.path.dirname(stamps[0].index_dir), "stamps"), [tiny_openclip], index_dir)
        searcher = Searcher(tiny_openclip, index_dir)
    image = sorted(stamps[1])[3]
    terms = query_terms("a red animal", image, plus=["at night"], minus=["grass", "a tree"],
                        text_weight=0.7, image_weight=1.5, plus_weight=0.5, minus_weight=0.8)
    raw = {"a red animal": 0.7, "at night": 0.5, "grass": -0.8, "a tree": -0.8}
    vectors = [searcher.model.embed_image([image])[0]] + [searcher.model.embed_query(t) for t in raw]
    weights = np.array([1.5, *raw.values()])
    expected = sum(w * v / np.linalg.norm(v) for w, v in zip(weights, np.asarray(vectors, dtype=np.float64)))
    expected /= np.linalg.norm(expected)
    result = searcher.terms(terms, 10)
    stored = {}
    for r in result.results:
        stored[r["path"]] = float(searcher.store.embedding(searcher.row.id, r["id"]) @ expected)
    assert image not in stored  # the query image is left out of its own results
    assert [r["score"] for r in result.results] == pytest.approx(list(stored.values()), abs=1e-4)
    assert result.to_dict()["terms"][0] == {"kind": "image", "value": image, "weight": 1.5}
    assert result.query == f"[image {image}]*1.5 + a red animal*0.7 + at night*0.5 - grass*0.8 - a tree*0.8"
    if family != "bridge":
        searcher.close()


def test_combine_matches_the_formula_and_refuses_cancelled_terms():
    rng = np.random.default_rng(1)
    vectors = [rng.normal(size=16) * s for s in (1, 3, 0.2)]
    weights = [1.0, -0.5, 2.0]
    expected = sum(w * v / np.linalg.norm(v) for w, v in zip(weights, vectors))
    np.testing.assert_allclose(combine(vectors, weights), expected / np.linalg.norm(expected), rtol=1e-6)
    assert np.linalg.norm(combine(vectors, weights)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(UsageError, match="cancel"):
        combine([vectors[0], vectors[0] * 2], [1.0, -1.0])


def test_query_terms_and_how_they_read():
    terms = query_terms("beach", plus=["sunset"], minus=["people", "cars"], minus_weight=0.5)
    assert [(t.value, t.weight) for t in terms] == [("beach", 1), ("sunset", 1), ("people", -0.5), ("cars", -0.5)]
    assert describe(terms) == "beach + sunset - people*0.5 - cars*0.5"
    for bad in [dict(text=None, minus=["x"]), dict(text="a", plus=[" "]), dict(text="a", plus_weight=0),
                dict(text="a", text_weight=float("inf"))]:
        with pytest.raises(UsageError):
            query_terms(**bad)


def test_cli_composed_query_and_its_errors(capsys, monkeypatch, stamps):
    searcher, captions = stamps
    path, target = sorted(captions)[:2]
    base = ["--model", "bridge:lite0", "--index-dir", searcher.index_dir]
    code, out, err = run(capsys, monkeypatch, "search", captions[path], "--minus", captions[target], "-k", "200",
                         "--json", *base)
    assert code == 0, err
    data = json.loads(out)
    assert data["query"] == f"{captions[path]} - {captions[target]}"
    assert [t["weight"] for t in data["terms"]] == [1.0, -1.0]
    assert len(data["results"]) == len(captions)
    code, out, err = run(capsys, monkeypatch, "search", "--image", path, "--text", "at night", "-k", "3", "--json", *base)
    assert code == 0 and [t["kind"] for t in json.loads(out)["terms"]] == ["image", "text"]
    for args, message in [(["a", "--text", "b"], "--text goes with --image"),
                          (["a", "--minus", "a"], "cancel each other out"),
                          (["a", "--plus-weight", "0", "--plus", "b"], "bad plus weight")]:
        code, out, err = run(capsys, monkeypatch, "search", *args, *base)
        assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_eval_measures_the_effect_of_plus_and_minus_terms_per_model(stamps, tmp_path):
    """A qrels file whose queries subtract another stamp's caption: eval runs them composed and
    reports, per model, recall with the terms and with the main text alone."""
    searcher, captions = stamps
    paths = sorted(captions)
    root = os.path.dirname(paths[0])
    lines, plain_lines = [], []
    for path, other in zip(paths[:40], paths[40:80]):
        record = {"query": captions[path], "relevant": [os.path.relpath(path, os.path.dirname(root))]}
        plain_lines.append(json.dumps(record))
        lines.append(json.dumps({**record, "minus": [captions[other]], "plus": ["a drawing"]}))
    stamps_root = os.path.dirname(root)
    composed_file = os.path.join(stamps_root, "composed.jsonl")
    with open(composed_file, "w") as f:
        f.write("\n".join(lines) + "\n")
    dataset = load_dataset(composed_file, root=stamps_root)
    assert dataset.queries[0].minus == (captions[paths[40]],) and dataset.queries[0].plus == ("a drawing",)
    results = evaluate(dataset, ["bridge:lite0"], str(tmp_path / "indexes"), ks=(1, 5), isolated_cost=False)
    model = results["models"][0]
    composition = model["composition"]
    assert composition["queries"] == 40 and model["t2i"]["queries"] == 40
    assert model["queries"][0]["query"] == f"{captions[paths[0]]} + a drawing - {captions[paths[40]]}"
    # with_terms is what the search served: the same figure as the run's own t2i recall
    assert composition["with_terms"]["recall@5"] == pytest.approx(model["t2i"]["recall@5"])
    # text_only is the same queries without their terms, as a plain qrels file measures them
    with open(composed_file, "w") as f:
        f.write("\n".join(plain_lines) + "\n")
    plain = evaluate(load_dataset(composed_file, root=stamps_root), ["bridge:lite0"], str(tmp_path / "indexes"),
                     ks=(1, 5), isolated_cost=False)["models"][0]
    assert "composition" not in plain
    assert composition["text_only"]["recall@5"] == pytest.approx(plain["t2i"]["recall@5"])
    assert composition["difference"]["mrr"] == pytest.approx(
        composition["with_terms"]["mrr"] - composition["text_only"]["mrr"])
    # the report shows the effect beside the other figures, read from the same results
    paths = write_report(results, str(tmp_path / "report"))
    with open(paths["report.md"]) as f:
        report = f.read()
    c = composition
    assert "## Compositional queries (plus / minus terms)" in report
    assert (f"| bridge:lite0 | 40 | {c['with_terms']['recall@1']:.3f} / {c['text_only']['recall@1']:.3f} "
            f"({c['difference']['recall@1']:+.3f}) |") in report
    with open(paths["report.html"]) as f:
        assert "Compositional queries" in f.read()
