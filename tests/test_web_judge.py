"""The Judge page's API (imgsearch serve), through real HTTP to a real server: queries typed in,
blind pools of both models' top results, marks per judge, undo, agreement, and the refusals."""

import json
import os

import pytest

from imgsearch.indexer import index_folder
from imgsearch.judge import Judging, blind_order, cohen_kappa
from imgsearch.search import Searcher
from imgsearch.web import BackgroundServer, create_app
from test_web_api import assert_one_line_error, get, request

QUERIES = ["a cat", "a rocket launch"]
DEPTH = 3


@pytest.fixture
def site(photos, index_dir, tiny_openclip, tiny_openclip_b):
    index_folder(os.path.dirname(photos["cat.png"]), [tiny_openclip, tiny_openclip_b], index_dir)
    with BackgroundServer(create_app(index_dir)) as server:
        yield {"url": server.url, "index_dir": index_dir, "photos": photos, "models": [tiny_openclip, tiny_openclip_b],
               "own": {"Origin": server.url, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}}


def post(site, path: str, body, headers=None):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return request(site["url"], "POST", path, data, headers if headers is not None else site["own"])


def add(site, queries=QUERIES, **extra):
    reply = post(site, "/api/judge/queries", {"queries": queries, **extra})
    assert reply.status == 200, reply.body
    return reply.json()["queries"]


def pool(site, query: str, judge: str = "", depth: int = DEPTH) -> dict:
    reply = get(site["url"], "/api/judge/pool", query=query, judge=judge, depth=depth)
    assert reply.status == 200, reply.body
    return reply.json()


def mark(site, query: str, image_id: int, relevant: bool, judge: str = "", depth: int = DEPTH):
    return post(site, "/api/judge/mark", {"query": query, "image_id": image_id, "relevant": relevant,
                                          "judge": judge, "depth": depth})


def top(site, spec: str, query: str, k: int = DEPTH) -> list[int]:
    searcher = Searcher(spec, site["index_dir"])
    try:
        return [r["id"] for r in searcher.text(query, k).results]
    finally:
        searcher.close()


def saved(site) -> list:
    with Judging(site["index_dir"]) as judging:
        return judging.judgments()


def test_queries_typed_in_are_listed_with_their_pools(site):
    rows = add(site, ["a cat", "  a   rocket launch ", "", "a cat"])
    assert [(r["query"], r["added"]) for r in rows] == [("a cat", True), ("a rocket launch", True)]
    assert [(r["query"], r["added"]) for r in add(site, ["a cat"])] == [("a cat", False)]
    listed = get(site["url"], "/api/judge/queries", depth=DEPTH).json()
    assert [(q["query"], q["source"], q["judged"]) for q in listed["queries"]] == [
        ("a cat", "user", 0), ("a rocket launch", "user", 0)]
    for q in listed["queries"]:
        union = set(top(site, site["models"][0], q["query"])) | set(top(site, site["models"][1], q["query"]))
        assert q["pooled"] == len(union)
    assert listed["pooled"] == sum(q["pooled"] for q in listed["queries"]) and listed["judged"] == 0


def test_the_pool_is_both_models_top_results_in_the_blind_order(site):
    add(site)
    for query in QUERIES:
        shown = pool(site, query)
        union = set(top(site, site["models"][0], query)) | set(top(site, site["models"][1], query))
        assert [i["id"] for i in shown["images"]] == blind_order(query, union)
        assert (shown["position"], shown["of"], shown["judged"]) == (QUERIES.index(query) + 1, 2, 0)
        for image in shown["images"]:
            assert image["relevant"] is None and image["path"] in site["photos"].values()
            assert image["file"] == f"/file/{image['id']}" and image["thumb"].startswith(f"/thumb/{image['id']}?v=")
    thumb = get(site["url"], pool(site, "a cat")["images"][0]["thumb"])
    assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_the_judge_api_is_blind(site):
    """No model spec, family, score or rank in anything the Judge page gets."""
    add(site)
    first = pool(site, "a cat")["images"][0]
    bodies = {
        "page": get(site["url"], "/judge").body, "script": get(site["url"], "/static/judge.js").body,
        "style": get(site["url"], "/static/judge.css").body,
        "queries": get(site["url"], "/api/judge/queries", depth=DEPTH).body,
        "pool": get(site["url"], "/api/judge/pool", query="a cat", depth=DEPTH).body,
        "mark": mark(site, "a cat", first["id"], True).body,
        "pool after": get(site["url"], "/api/judge/pool", query="a cat", depth=DEPTH).body,
        "unmark": post(site, "/api/judge/unmark", {"query": "a cat", "image_id": first["id"]}).body,
    }
    assert b"<title>Judge" in bodies["page"] and b'"relevant":true' in bodies["mark"]
    for what, body in bodies.items():
        text = body.decode().lower()
        for word in (*site["models"], "openclip", "score", "rank", "similarity", "cosine"):
            assert word.lower() not in text, (what, word)


def test_marks_are_kept_per_judge_and_undo_takes_them_back(site):
    add(site)
    images = pool(site, "a cat")["images"]
    assert len(images) >= 3
    for image, relevant in zip(images, [True, False]):
        reply = mark(site, "a cat", image["id"], relevant)
        assert reply.status == 200 and reply.json() == {"query": "a cat", "image_id": image["id"],
                                                        "relevant": relevant, "judge": ""}
    shown = pool(site, "a cat")
    assert [i["relevant"] for i in shown["images"]] == [True, False] + [None] * (len(images) - 2)
    assert shown["judged"] == 2
    with Judging(site["index_dir"]) as judging:
        assert judging.qrels() == {"a cat": {images[0]["id"]: True, images[1]["id"]: False}, "a rocket launch": {}}
    listed = get(site["url"], "/api/judge/queries", depth=DEPTH).json()
    assert [q["judged"] for q in listed["queries"]] == [2, 0]
    ann = get(site["url"], "/api/judge/queries", judge="ann", depth=DEPTH).json()
    assert [q["judged"] for q in ann["queries"]] == [0, 0]  # ann has judged nothing
    assert all(i["relevant"] is None for i in pool(site, "a cat", judge="ann")["images"])

    assert mark(site, "a cat", images[1]["id"], True).status == 200  # judged again: the latest counts
    undo = post(site, "/api/judge/unmark", {"query": "a cat", "image_id": images[0]["id"]})
    assert undo.status == 200 and undo.json()["removed"] is True
    again = post(site, "/api/judge/unmark", {"query": "a cat", "image_id": images[0]["id"]})
    assert again.json()["removed"] is False
    assert [(j.image_id, j.relevant) for j in saved(site)] == [(images[1]["id"], True)]


def test_two_judges_agreement_is_cohens_kappa(site):
    add(site)
    images = pool(site, "a cat")["images"]
    labels = [(True, True), (True, False), (False, False)]
    for image, (ann, bob) in zip(images, labels):
        assert mark(site, "a cat", image["id"], ann, judge="ann").status == 200
        assert mark(site, "a cat", image["id"], bob, judge="bob").status == 200
    (pair,) = get(site["url"], "/api/judge/queries", judge="bob", depth=DEPTH).json()["agreement"]
    assert pair == {"judges": ["ann", "bob"], "pairs": 3,
                    "kappa": cohen_kappa([a for a, _ in labels], [b for _, b in labels])}
    assert [i["relevant"] for i in pool(site, "a cat", judge="bob")["images"][:3]] == [b for _, b in labels]


def test_bad_requests_get_one_line_errors_and_write_nothing(site):
    add(site)
    inside = pool(site, "a cat", depth=1)["images"][0]["id"]
    with Judging(site["index_dir"]) as judging:
        all_ids = {judging.store.image_id(p) for p in site["photos"].values()}
    outside = min(all_ids - {i["id"] for i in pool(site, "a cat", depth=1)["images"]})
    good = {"query": "a cat", "image_id": inside, "relevant": True, "depth": 1}
    cases = [
        (get(site["url"], "/api/judge/pool", query="a dog"), 404, "unknown query 'a dog'"),
        (post(site, "/api/judge/mark", {**good, "query": "a dog"}), 404, "unknown query 'a dog'"),
        (post(site, "/api/judge/unmark", {"query": "a dog", "image_id": inside}), 404, "unknown query"),
        (post(site, "/api/judge/mark", {**good, "image_id": outside}), 400, "is not in the pool of 'a cat'"),
        (post(site, "/api/judge/mark", {**good, "image_id": 999999}), 404, "no indexed image with id 999999"),
        (post(site, "/api/judge/mark", {**good, "image_id": 2**70}), 404, "no indexed image"),
        (post(site, "/api/judge/unmark", {"query": "a cat", "image_id": 999999}), 404, "no indexed image"),
        (post(site, "/api/judge/mark", {**good, "relevant": "yes"}), 400, "relevant"),
        (post(site, "/api/judge/mark", {**good, "image_id": str(inside)}), 400, "image_id"),
        (post(site, "/api/judge/mark", {**good, "depth": 0}), 400, "depth"),
        (post(site, "/api/judge/mark", {**good, "judge": "x" * 101}), 400, "judge"),
        (post(site, "/api/judge/mark", "not json"), 400, ""),
        (post(site, "/api/judge/mark", ""), 400, ""),
        (post(site, "/api/judge/queries", {"queries": ["", "  "]}), 400, "no query given"),
        (post(site, "/api/judge/queries", {"queries": ["x" * 1001]}), 400, ""),
        (get(site["url"], "/api/judge/pool", query="a cat", depth=0), 400, "depth"),
        (get(site["url"], "/api/judge/pool"), 400, "query"),
        (request(site["url"], "GET", "/api/judge/mark"), 405, ""),  # changes are POSTs only
    ]
    for reply, status, words in cases:
        message = assert_one_line_error(reply, status)
        assert words in message and "Traceback" not in message, (status, message)
    assert saved(site) == []


@pytest.mark.parametrize("who", [
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_a_cross_origin_mark_is_refused_and_writes_nothing(site, who):
    add(site)
    image = pool(site, "a cat")["images"][0]["id"]
    for content_type in ("application/json", "text/plain"):
        headers = {**who, "Content-Type": content_type}
        for path, body in [("/api/judge/mark", {"query": "a cat", "image_id": image, "relevant": True, "depth": DEPTH}),
                           ("/api/judge/unmark", {"query": "a cat", "image_id": image}),
                           ("/api/judge/queries", {"queries": ["a forged query"]})]:
            message = assert_one_line_error(post(site, path, body, headers), 403)
            assert "cross-origin request refused" in message
    assert saved(site) == []
    assert [q["query"] for q in get(site["url"], "/api/judge/queries").json()["queries"]] == QUERIES
    assert mark(site, "a cat", image, True).status == 200  # the page's own origin may
    assert post(site, "/api/judge/unmark", {"query": "a cat", "image_id": image},
                {"Content-Type": "application/json"}).status == 200  # so may curl: no Origin


def test_suggested_queries_come_from_the_photos_and_are_added_as_suggested(site):
    reply = get(site["url"], "/api/judge/suggest", n=3)
    assert reply.status == 200, reply.body
    suggestions = reply.json()["suggestions"]
    assert 1 <= len(suggestions) <= 3 and sum(s["images"] for s in suggestions) <= 7
    assert all(s["query"].startswith(("a ", "an ")) for s in suggestions)
    assert "score" not in reply.body.decode()
    add(site, [suggestions[0]["query"]], suggested=True)
    listed = get(site["url"], "/api/judge/queries").json()["queries"]
    assert [(q["query"], q["source"]) for q in listed] == [(suggestions[0]["query"], "suggested")]
    assert_one_line_error(get(site["url"], "/api/judge/suggest", n=0), 400)


def test_the_judge_page_is_one_url_under_the_page_policy(site):
    page = get(site["url"], "/judge")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert b'src="/static/judge.js"' in page.body
    for path in ("/static/judge.html", "/judge.html"):
        assert get(site["url"], path).status == 404, path
    for path in ("/judge", "/static/judge.js", "/static/judge.css"):
        body = get(site["url"], path).body
        assert b"https://" not in body and b"http://" not in body, path
    assert b'href="/judge"' in get(site["url"], "/").body  # the main page links to it


def test_the_server_pools_each_model_at_its_stored_precision_as_the_cli_does(photos, index_dir, tiny_openclip):
    # The search page opens searchers at "auto"; a pool must come from the precision the vectors
    # were made at, or the page and `imgsearch judge pool` could pool different images.
    index_folder(os.path.dirname(photos["cat.png"]), [tiny_openclip], index_dir, precision="int8")
    with Judging(index_dir) as judging:
        judging.add_queries(QUERIES)
        cli = {q: [e["image_id"] for e in judging.pool(q, DEPTH, unjudged_only=False)] for q in QUERIES}
    app = create_app(index_dir)
    with BackgroundServer(app) as server:
        for q in QUERIES:
            assert [image["id"] for image in pool({"url": server.url}, q)["images"]] == cli[q]
        assert app.state.web.judging.searcher(tiny_openclip).model.precision == "int8"
