"""The Judge page in headless Chromium (Debian's, as in test_web_browser.py): queries typed in,
a pool judged by keyboard on real photos, kept across a server restart, exported as qrels and
scored by `eval --judged`; two judges' agreement; the page on a 390 px phone."""

import json
import math
import os

import pytest
from PIL import Image
from playwright.sync_api import expect

from imgsearch.indexer import index_folder
from imgsearch.judge import Judging, cohen_kappa
from imgsearch.search import Searcher
from imgsearch.web import BackgroundServer, create_app

from conftest import run_imgsearch as run

DEPTH = 3
QUERIES = ["a cat", "a rocket launch"]
# The keys pressed, in turn, one per image: both spellings of both answers.
ANSWER_KEYS = [("1", True), ("n", False), ("y", True), ("0", False)]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def indexed(photos, index_dir, tiny_openclip, tiny_openclip_b):
    index_folder(os.path.dirname(photos["cat.png"]), [tiny_openclip, tiny_openclip_b], index_dir)
    return {"index_dir": index_dir, "photos": photos, "models": [tiny_openclip, tiny_openclip_b]}


class Tab:
    """A page with every script error and every Judge API answer recorded."""

    def __init__(self, browser, url: str, viewport=None, **options):
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, **options)
        self.page = self.context.new_page()
        self.errors, self.answers = [], []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("response", self._record)
        self.page.goto(url)

    def _record(self, response):
        if "/api/judge" in response.url or response.url.split("?")[0].endswith("/judge"):
            self.answers.append(response)  # read later: a handler should not wait on the page

    def close(self):
        self.context.close()
        assert self.errors == []  # no script error, failed request or policy violation


def pool_size(indexed, query: str) -> int:
    found = set()
    for spec in indexed["models"]:
        searcher = Searcher(spec, indexed["index_dir"])
        try:
            found |= {r["id"] for r in searcher.text(query, DEPTH).results}
        finally:
            searcher.close()
    return len(found)


def current(page) -> tuple[int, str]:
    card = page.locator(".judge-card.current")
    expect(card).to_have_count(1)
    return int(card.get_attribute("data-id")), card.locator("button.thumb").get_attribute("title")


def key_in(page, answers, n: int) -> dict[int, bool]:
    """Judge the n images of the query shown, each by the next key of answers; id -> relevant."""
    keyed = {}
    for i in range(n):
        image_id, _ = current(page)
        assert image_id not in keyed  # each key moved on to an image not judged yet
        key, relevant = answers[i % len(answers)]
        page.keyboard.press(key)
        keyed[image_id] = relevant
        expect(page.locator(f'.judge-card[data-id="{image_id}"]')).to_have_attribute(
            "data-judgment", "relevant" if relevant else "not relevant")
    return keyed


def assert_marks(page, keyed: dict[int, bool]) -> None:
    expect(page.locator(".judge-card")).to_have_count(len(keyed))
    for image_id, relevant in keyed.items():
        expect(page.locator(f'.judge-card[data-id="{image_id}"]')).to_have_attribute(
            "data-judgment", "relevant" if relevant else "not relevant")


def assert_blind(tab: Tab, models: list[str]) -> None:
    assert tab.answers
    for text in [tab.page.content(), *(answer.text() for answer in tab.answers)]:
        for word in (*models, "openclip", "score"):
            assert word not in text.lower(), word


def assert_recomputes(model: dict, qrels: dict[str, list[str]], ks: list[int]) -> None:
    """A model's figures in results.json, computed again from qrels and its rankings alone."""
    per_query = {f"precision@{k}": [] for k in ks} | {f"recall@{k}": [] for k in ks} | {"mrr": [], "ndcg": []}
    for record in model["queries"]:
        relevant = set(qrels[record["query"]])
        ranking = [os.path.normpath(r["path"]) for r in record["results"]]
        assert [r["judgment"] for r in record["results"]] == [p in relevant for p in ranking]
        hits = [p in relevant for p in ranking]
        for k in ks:
            per_query[f"precision@{k}"].append(sum(hits[:k]) / k)
            per_query[f"recall@{k}"].append(sum(hits[:k]) / len(relevant))
        per_query["mrr"].append(1 / (hits.index(True) + 1) if True in hits else 0.0)
        dcg = sum(1 / math.log2(n + 2) for n, hit in enumerate(hits[:DEPTH]) if hit)
        per_query["ndcg"].append(dcg / sum(1 / math.log2(n + 2) for n in range(min(len(relevant), DEPTH))))
    for name, values in per_query.items():
        figure = model["figures"][f"ndcg@{DEPTH}" if name == "ndcg" else name]
        assert figure == pytest.approx(sum(values) / len(values)), name


def test_a_pool_judged_by_keyboard_is_kept_across_a_restart_and_exported_as_qrels(browser, indexed, tmp_path,
                                                                                capsys, monkeypatch):
    index_dir = indexed["index_dir"]
    sizes = {q: pool_size(indexed, q) for q in QUERIES}
    keyed: dict[str, dict[int, bool]] = {}
    paths: dict[int, str] = {}
    with BackgroundServer(create_app(index_dir)) as server:
        tab = Tab(browser, f"{server.url}/judge?depth={DEPTH}")
        page = tab.page
        expect(page.locator("#add-summary")).to_contain_text("Add a query to start")
        page.fill("#new-queries", "\n".join(QUERIES) + "\n")
        page.click("#add-form button[type=submit]")
        expect(page.locator("#add-summary")).to_have_text("Added 2 queries.")
        progress = page.locator("#progress")
        expect(progress).to_have_text(f"query 1 of 2 · 0 of {sizes['a cat']} images judged")
        expect(page.locator("#query-text")).to_have_text("“a cat”")

        keyed["a cat"] = key_in(page, ANSWER_KEYS, sizes["a cat"])
        expect(progress).to_have_text(f"query 1 of 2 · {sizes['a cat']} of {sizes['a cat']} images judged"
                                      " · press j for the next unjudged query")
        # Back to the first image with the arrows, change its answer, and undo that.
        for _ in range(sizes["a cat"]):
            page.keyboard.press("ArrowLeft")
        first, _ = current(page)
        assert first == int(page.locator(".judge-card").first.get_attribute("data-id"))
        page.keyboard.press("0" if keyed["a cat"][first] else "1")
        expect(page.locator(".judge-card").first).to_have_attribute(
            "data-judgment", "relevant" if not keyed["a cat"][first] else "not relevant")
        page.keyboard.press("u")
        assert_marks(page, keyed["a cat"])
        # The second image's answer changed for good.
        page.keyboard.press("ArrowRight")
        second, _ = current(page)
        keyed["a cat"][second] = not keyed["a cat"][second]
        page.keyboard.press("y" if keyed["a cat"][second] else "n")
        assert_marks(page, keyed["a cat"])

        # The full image on demand, over the page, and away again.
        page.keyboard.press("f")
        expect(page.locator("#full")).to_be_visible()
        image_id, path = current(page)
        page.wait_for_function("w => document.querySelector('#full-img').naturalWidth === w",
                               arg=Image.open(path).width)
        page.screenshot(path=str(tmp_path / "judge-full.png"))
        page.keyboard.press("f")
        expect(page.locator("#full")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "judge.png"), full_page=True)

        page.keyboard.press("j")
        expect(page.locator("#query-text")).to_have_text("“a rocket launch”")
        expect(progress).to_have_text(f"query 2 of 2 · 0 of {sizes['a rocket launch']} images judged")
        keyed["a rocket launch"] = key_in(page, list(reversed(ANSWER_KEYS)), sizes["a rocket launch"])
        expect(progress).to_contain_text("· every query is judged")
        expect(page.locator("#saved")).to_have_text("All judgments saved.")
        for card in page.locator(".judge-card").all():
            paths[int(card.get_attribute("data-id"))] = card.locator("button.thumb").get_attribute("title")
        page.keyboard.press("[")
        expect(page.locator("#query-text")).to_have_text("“a cat”")
        for card in page.locator(".judge-card").all():
            paths[int(card.get_attribute("data-id"))] = card.locator("button.thumb").get_attribute("title")
        assert_blind(tab, indexed["models"])
        tab.close()

    # A new server on the same index dir: every judgment is still there.
    with BackgroundServer(create_app(index_dir)) as server:
        tab = Tab(browser, f"{server.url}/judge?depth={DEPTH}")
        page = tab.page
        expect(page.locator("#progress")).to_have_text(
            f"query 1 of 2 · {sizes['a cat']} of {sizes['a cat']} images judged · every query is judged")
        assert_marks(page, keyed["a cat"])
        page.keyboard.press("]")
        expect(page.locator("#query-text")).to_have_text("“a rocket launch”")
        assert_marks(page, keyed["a rocket launch"])
        tab.close()

    out = tmp_path / "judged" / "qrels.jsonl"
    with Judging(index_dir) as judging:
        judging.export(str(out))
    with open(out) as f:
        exported = {r["query"]: sorted(os.path.normpath(os.path.join(out.parent, p)) for p in r["relevant"])
                    for r in map(json.loads, f)}
    wanted = {q: sorted(paths[i] for i, yes in marks.items() if yes) for q, marks in keyed.items()}
    assert exported == {q: relevant for q, relevant in wanted.items() if relevant}
    assert all(exported.values())

    # Every model scored on what the browser judged: each figure recomputes from the exported
    # qrels and the rankings in results.json.
    report = tmp_path / "report"
    code, _, err = run(capsys, monkeypatch, "eval", "--judged", "--index-dir", index_dir, "--depth", str(DEPTH),
                       "--out", str(report), "--bootstrap", "200")
    assert code == 0, err
    results = json.loads((report / "results.json").read_text())
    assert {m["spec"] for m in results["models"]} == set(indexed["models"])
    assert results["judged"]["measured"] == len(exported)
    assert results["judged"]["judged_pairs"] == sum(sizes.values()) == results["judged"]["pooled_pairs"]
    for model in results["models"]:
        assert model["unjudged"]["pairs"] == 0 and [r["query"] for r in model["queries"]] == list(exported)
        assert_recomputes(model, exported, results["ks"])
    markdown = (report / "report.md").read_text()
    assert f"Pool depth: {DEPTH}" in markdown and f"Queries: {len(exported)} measured of {len(QUERIES)}" in markdown


def test_two_judges_on_a_suggested_query_get_their_agreement(browser, indexed):
    with BackgroundServer(create_app(indexed["index_dir"])) as server:
        tab = Tab(browser, f"{server.url}/judge?depth={DEPTH}")
        page = tab.page
        page.click("#suggest")
        chips = page.locator("#suggestion-list button")
        expect(chips.first).to_be_visible(timeout=120_000)
        query = chips.first.text_content()
        chips.first.click()
        expect(page.locator("#query-text")).to_have_text(f"“{query}”")
        n = pool_size(indexed, query)
        answers = {}
        for judge, keys in [("ann", ANSWER_KEYS), ("bob", [("1", True)])]:
            page.fill("#judge", judge)
            page.press("#judge", "Enter")
            expect(page.locator("#progress")).to_have_text(f"query 1 of 1 · 0 of {n} images judged")
            answers[judge] = key_in(page, keys, n)
            expect(page.locator("#saved")).to_have_text("All judgments saved.")
        ids = sorted(answers["ann"])
        kappa = cohen_kappa([answers["ann"][i] for i in ids], [answers["bob"][i] for i in ids])
        shown = "undefined" if kappa is None else f"{kappa:.2f}"
        expect(page.locator("#agreement")).to_contain_text(f"ann / bob κ {shown} on {n} images")
        assert_blind(tab, indexed["models"])
        tab.answers.clear()  # a response's body is gone once the page navigates
        page.reload()  # the name is remembered, and with it bob's answers
        expect(page.locator("#judge")).to_have_value("bob")
        assert_marks(page, answers["bob"])
        assert_blind(tab, indexed["models"])
        tab.close()


def assert_fits(page, what: str) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], (what, widths)


def test_the_judge_page_fits_a_phone_with_the_full_image_open(browser, indexed, tmp_path):
    with Judging(indexed["index_dir"]) as judging:
        judging.add_queries(["a photo of a very long and winding query with words that have to wrap somewhere",
                             "a cat"])
    with BackgroundServer(create_app(indexed["index_dir"])) as server:
        tab = Tab(browser, f"{server.url}/judge", viewport=PHONE, device_scale_factor=2, is_mobile=True,
                  has_touch=True)
        page = tab.page
        expect(page.locator(".judge-card").first).to_be_visible()
        page.wait_for_function("() => [...document.querySelectorAll('.judge-card img')].every(i => i.naturalWidth)")
        assert_fits(page, "judge page")
        page.locator(".judge-card button.yes").first.tap()
        expect(page.locator(".judge-card").first).to_have_attribute("data-judgment", "relevant")
        page.locator(".judge-card button.view").nth(1).tap()
        expect(page.locator("#full")).to_be_visible()
        page.wait_for_function("() => document.querySelector('#full-img').naturalWidth > 0")
        assert_fits(page, "full image")
        for box in page.evaluate("() => [...document.querySelectorAll('#full, #full *')]"
                                 ".map(e => e.getBoundingClientRect().toJSON())"):
            assert box["left"] >= 0 and box["right"] <= PHONE["width"], box
        page.screenshot(path=str(tmp_path / "phone-judge-full.png"))
        page.locator("#full-close").tap()
        expect(page.locator("#full")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "phone-judge.png"), full_page=True)
        tab.close()
