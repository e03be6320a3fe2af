"""Filters, a minimum score and plus/minus terms in the web UI and its API, on a real server.

The photos lie in three folders, one per year: 2022 as PNGs (file time 2022), 2023 as mirrored
JPEGs whose EXIF says 2023-06-15 and "Canon EOS 5D" (file time 2020), 2024 half-size (file time
2024). The API is checked over HTTP, the controls in headless Chromium (tests/test_web_browser.py).
"""

import json
import os
import re
import time
import urllib.error
import urllib.request
from datetime import datetime
from urllib.parse import urlencode

import pytest
from PIL import ExifTags, Image, ImageOps
from playwright.sync_api import expect

from imgsearch.indexer import index_folder
from imgsearch.samples import write_samples
from imgsearch.web import BackgroundServer, create_app

from test_web_browser import NAMES
from conftest import watched_tab


def _epoch(text: str) -> float:
    return time.mktime(datetime.fromisoformat(text).timetuple())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("web-filters")
    photos = write_samples(str(root / "originals"), NAMES)
    library = root / "library"
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "Canon", "EOS 5D"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2023:06:15 12:00:00"
    for year in ("2022", "2023", "2024"):
        (library / year).mkdir(parents=True)
    for name, path in photos.items():
        stem, image = os.path.splitext(name)[0], Image.open(path).convert("RGB")
        versions = [(library / "2022" / f"{stem}.png", lambda p: image.save(p), "2022-03-01T10:00:00"),
                    (library / "2023" / f"{stem}.jpg", lambda p: ImageOps.mirror(image).save(p, quality=90, exif=exif),
                     "2020-01-01T10:00:00"),
                    (library / "2024" / f"{stem}.png",
                     lambda p: image.resize((image.width // 2, image.height // 2)).save(p), "2024-08-01T10:00:00")]
        for target, write, mtime in versions:
            write(target)
            os.utime(target, (_epoch(mtime), _epoch(mtime)))
    index_dir = str(root / "indexes")
    index_folder(str(library), ["bridge:lite0"], index_dir)
    with BackgroundServer(create_app(index_dir)) as server:
        yield {"url": server.url, "library": str(library), "photos": photos}


def get(site, path, **params):
    """(status, JSON body) of a GET."""
    try:
        with urllib.request.urlopen(f"{site['url']}{path}?{urlencode(params, doseq=True)}", timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def folder(site, year):
    return os.path.join(site["library"], year)


def test_api_folder_filter_returns_k_from_that_folder(site):
    status, body = get(site, "/api/search", q="a cat", k=5, **{"in": folder(site, "2024")})
    assert status == 200 and len(body["results"]) == 5 and body["matched"] == 7
    assert all(r["path"].startswith(folder(site, "2024") + os.sep) for r in body["results"])
    assert body["filter"]["in"] == [folder(site, "2024")]
    status, body = get(site, "/api/search", q="a cat", k=21, **{"in": [folder(site, "2022"), folder(site, "2023")]})
    assert len(body["results"]) == 14 and not any("/2024/" in r["path"] for r in body["results"])


def test_api_date_and_camera_filters_say_where_the_date_came_from(site):
    status, body = get(site, "/api/search", q="a cat", k=10, after="2023-01-01", before="2024-01-01")
    assert status == 200 and len(body["results"]) == 7
    assert {(r["date"], r["date_source"]) for r in body["results"]} == {("2023-06-15T12:00:00", "exif")}
    status, body = get(site, "/api/search", q="a cat", k=10, after="2024-07")
    assert {r["date_source"] for r in body["results"]} == {"file"} and len(body["results"]) == 7
    status, body = get(site, "/api/search", q="a cat", k=3, camera="eos 5d")
    assert len(body["results"]) == 3 and all("/2023/" in r["path"] for r in body["results"])


def test_api_filters_apply_to_similar_and_uploaded_images(site):
    _, first = get(site, "/api/search", q="a cat", k=1, **{"in": folder(site, "2022")})
    status, body = get(site, "/api/similar", id=first["results"][0]["id"], k=4, **{"in": folder(site, "2024")})
    assert status == 200 and len(body["results"]) == 4 and all("/2024/" in r["path"] for r in body["results"])
    with open(site["photos"]["coffee.png"], "rb") as f:
        data = f.read()
    boundary = "imgsearch-test-boundary"
    payload = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="coffee.png"\r\n'
               "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{site['url']}/api/search/image?{urlencode({'k': 3, 'after': '2024'})}",
                                     data=payload, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        body = json.loads(reply.read())
    assert [r["name"] for r in body["results"]][0] == "coffee.png"
    assert all("/2024/" in r["path"] for r in body["results"]) and len(body["results"]) == 3


def test_api_min_score_and_plus_minus_terms(site):
    _, everything = get(site, "/api/search", q="a cat", k=21)
    scores = [r["score"] for r in everything["results"]]
    assert scores[3] - scores[4] > 1e-3  # scores come rounded to 4 places: the cut lies clear of both
    cut = (scores[3] + scores[4]) / 2
    _, body = get(site, "/api/search", q="a cat", k=21, min_score=cut)
    assert [r["score"] for r in body["results"]] == scores[:4]
    _, plain = get(site, "/api/search", q="a photo", k=21)
    status, body = get(site, "/api/search", q="a photo", k=21, minus="a cup of coffee", plus="an animal")
    assert status == 200 and body["query"] == "a photo + an animal - a cup of coffee"
    assert [t["weight"] for t in body["terms"]] == [1.0, 1.0, -1.0]

    def coffee_ranks(result):
        return [r["rank"] for r in result["results"] if r["name"] == "coffee.png"]
    assert all(m > p for m, p in zip(coffee_ranks(body), coffee_ranks(plain)))


@pytest.mark.parametrize("params, message", [
    ({"after": "2023-13-01"}, "bad --after date"),
    ({"after": "2024", "before": "2023"}, "is not before"),
    ({"min_score": "2"}, "bad minimum score"),
    ({"min_score": "high"}, "min_score"),
    ({"in": "photos/2023"}, "absolute path"),
    ({"minus": "a cat"}, "cancel each other out"),
    ({"minus_weight": "-1", "minus": "x"}, "bad minus weight"),
])
def test_api_bad_filters_are_400_with_one_line(site, params, message):
    status, body = get(site, "/api/search", q="a cat", **params)
    assert status == 400 and message in body["error"] and "\n" not in body["error"]


@pytest.fixture
def page(browser, site):
    with watched_tab(browser, viewport={"width": 1280, "height": 900}) as (tab, errors):
        tab.goto(site["url"])
        expect(tab.locator("#status")).to_contain_text("21 images · 1 model")
        yield tab
    assert [e for e in errors if "400" not in e] == []  # a refused query logs its 400, nothing else


def search(page, text):
    page.fill("#q", text)
    page.press("#q", "Enter")


def test_folder_and_date_controls_filter_the_grid_and_stay_in_the_address(page, site):
    page.click("#refine summary")
    page.fill("#f-in", folder(site, "2023"))
    page.fill("#f-after", "2023-01-01")
    search(page, "a cat")
    cards = page.locator("#results .card")
    expect(cards).to_have_count(7)
    expect(page.locator("#search-summary")).to_contain_text("7 results for “a cat” with bridge:lite0 · 7 images match")
    for i in range(7):
        expect(cards.nth(i).locator(".thumb")).to_have_attribute("title", os_path_re(folder(site, "2023")))
        expect(cards.nth(i).locator(".date")).to_have_text("2023-06-15 12:00 (exif)")
    assert "in=" in page.url and "after=2023-01-01" in page.url
    # the address brings the filters back
    page.reload()
    expect(page.locator("#f-in")).to_have_value(folder(site, "2023"))
    expect(page.locator("#results .card")).to_have_count(7)
    # a date range no image falls in: nothing, and the summary says the filter matched none
    page.fill("#f-after", "2021-01-01")
    page.fill("#f-before", "2022-01-01")
    search(page, "a cat")
    expect(page.locator("#search-summary")).to_contain_text("0 results for “a cat” with bridge:lite0 · 0 images match")
    expect(cards).to_have_count(0)


def test_camera_and_min_score_controls(page, site):
    status, everything = get(site, "/api/search", q="a cat", k=21)
    scores = [r["score"] for r in everything["results"]]
    assert scores[1] - scores[2] > 1e-3
    page.click("#refine summary")
    page.fill("#f-min-score", f"{(scores[1] + scores[2]) / 2:.4f}")
    search(page, "a cat")
    expect(page.locator("#results .card")).to_have_count(2)
    page.fill("#f-min-score", "")
    page.fill("#f-camera", "Canon")
    search(page, "a cat")
    expect(page.locator("#results .card")).to_have_count(7)
    expect(page.locator("#results .card .date")).to_have_count(0)  # no date filter: no dates shown


def test_plus_and_minus_controls_compose_the_query(page, site):
    page.click("#refine summary")
    page.fill("#f-plus", "an animal")
    page.fill("#f-minus", "a cup of coffee, a rocket")
    search(page, "a photo")
    expect(page.locator("#search-summary")).to_contain_text(
        "21 results for “a photo + an animal - a cup of coffee - a rocket” with bridge:lite0")
    assert "minus=a+cup+of+coffee" in page.url and "minus=a+rocket" in page.url
    page.fill("#f-plus", "")
    page.fill("#f-minus", "a photo")
    search(page, "a photo")
    expect(page.locator("#search-summary")).to_have_text("the query terms cancel each other out: nothing is left to search for")
    expect(page.locator("#search-summary")).to_have_class("summary muted error")
    page.click("#f-clear")
    expect(page.locator("#f-minus")).to_have_value("")


def os_path_re(prefix):
    return re.compile("^" + re.escape(prefix + os.sep))
