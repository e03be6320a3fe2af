"""The Duplicates API (GET /api/duplicates, the /duplicates page) against a real server on
127.0.0.1: real photos, a byte-for-byte copy, a re-encoded and a half-size copy of them."""

import os
import shutil
from contextlib import contextmanager

import pytest
from PIL import Image

from imgsearch.duplicates import DEFAULT_PHASH_BITS, find_duplicates
from imgsearch.indexer import index_folder
from imgsearch.samples import write_samples
from imgsearch.web import BackgroundServer, create_app
from test_web_api import get

NAMES = ["cat.png", "astronaut.png", "coffee.png", "rocket.png", "camera.png", "coins.png", "grace_hopper.jpg"]


def make_copies(photos: dict[str, str], folder: str) -> dict[str, str]:
    """cat.png re-encoded as JPEG quality 75 and at half size, coffee.png copied byte for byte; copy -> original."""
    os.makedirs(folder, exist_ok=True)
    made = {}
    with Image.open(photos["cat.png"]) as cat:
        cat = cat.convert("RGB")
        cat.save(os.path.join(folder, "cat-q75.jpg"), quality=75)
        cat.resize((cat.width // 2, cat.height // 2), Image.LANCZOS).save(os.path.join(folder, "cat-half.png"))
    made[os.path.join(folder, "cat-q75.jpg")] = made[os.path.join(folder, "cat-half.png")] = photos["cat.png"]
    shutil.copy(photos["coffee.png"], os.path.join(folder, "coffee-backup.png"))
    made[os.path.join(folder, "coffee-backup.png")] = photos["coffee.png"]
    return made


@contextmanager
def duplicates_site(root, model: str, extra: dict[str, str] | None = None):
    """The sample photos and make_copies' copies (plus extra: copy name -> sample name) indexed
    with model and served on 127.0.0.1."""
    photos = write_samples(str(root / "library" / "photos"), NAMES)
    copies = make_copies(photos, str(root / "library" / "copies"))
    for name, source in (extra or {}).items():
        shutil.copy(photos[source], str(root / "library" / "copies" / name))
    index_dir = str(root / "indexes")
    index_folder(str(root / "library"), [model], index_dir)
    with BackgroundServer(create_app(index_dir)) as server:
        yield {"url": server.url, "index_dir": index_dir, "photos": photos, "copies": copies, "model": model}


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_openclip):
    with duplicates_site(tmp_path_factory.mktemp("web-duplicates"), tiny_openclip) as served:
        yield served


def paths(groups):
    return [{m["path"] for m in g["images"]} for g in groups]


def test_the_api_groups_copies_largest_group_first_with_thumbnails(site):
    reply = get(site["url"], "/api/duplicates")
    assert reply.status == 200
    data = reply.json()
    assert data["method"] == "phash" and data["threshold"] == DEFAULT_PHASH_BITS and data["images"] == 10
    groups = paths(data["groups"])
    assert groups == paths(find_duplicates(site["index_dir"]).groups)  # the same call as the CLI's
    cat = {site["photos"]["cat.png"], *(c for c, o in site["copies"].items() if o == site["photos"]["cat.png"])}
    assert groups[0] == cat and data["groups"][0]["exact"] is False
    coffee = [g for g in data["groups"] if site["photos"]["coffee.png"] in {m["path"] for m in g["images"]}]
    assert len(coffee) == 1 and coffee[0]["exact"] and coffee[0]["size"] == 2
    assert data["groups_total"] == len(data["groups"]) == 2 and data["duplicates"] == 3
    for member in data["groups"][0]["images"]:  # each image can be shown: its thumbnail and its file load
        assert get(site["url"], member["thumb"]).status == 200
        original = get(site["url"], member["file"])
        with open(member["path"], "rb") as f:
            assert original.status == 200 and original.body == f.read()


def test_limit_keeps_the_largest_groups(site):
    data = get(site["url"], "/api/duplicates", limit=1).json()
    assert len(data["groups"]) == 1 and data["groups_total"] == 2 and data["groups"][0]["size"] == 3


def test_model_vectors_need_a_threshold_and_group_identical_files(site):
    reply = get(site["url"], "/api/duplicates", model=site["model"], threshold=0.9999)
    assert reply.status == 200
    data = reply.json()
    assert data["method"] == "vectors" and data["model"] == site["model"]
    assert {site["photos"]["coffee.png"], *[c for c, o in site["copies"].items() if o.endswith("coffee.png")]} \
        in paths(data["groups"])
    missing = get(site["url"], "/api/duplicates", model=site["model"])
    assert missing.status == 400 and "give --threshold" in missing.json()["error"]


@pytest.mark.parametrize("params, status, message", [
    ({"threshold": "2.5"}, 400, "whole number from 0 to 32"),
    ({"threshold": "99"}, 400, "whole number from 0 to 32"),
    ({"threshold": "x"}, 400, "threshold"),
    ({"limit": "0"}, 400, "limit"),
    ({"model": "bridge:lite2", "threshold": "0.9"}, 409, "no index for"),
])
def test_bad_requests_get_one_line(site, params, status, message):
    reply = get(site["url"], "/api/duplicates", **params)
    body = reply.json()
    assert reply.status == status and message in body["error"] and "\n" not in body["error"]


def test_the_page_and_its_assets_are_served(site):
    page = get(site["url"], "/duplicates")
    assert page.status == 200 and b'<script src="/static/duplicates.js"' in page.body
    for asset in ("duplicates.js", "duplicates.css"):
        assert get(site["url"], f"/static/{asset}").status == 200
    assert b'href="/duplicates"' in get(site["url"], "/").body  # the main page links to it
