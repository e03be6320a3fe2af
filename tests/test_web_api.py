"""The HTTP API of `imgsearch serve`, against a real server on a free 127.0.0.1 port.

Requests go through http.client, which sends a path exactly as written: no client-side
normalisation hides a traversal attempt from the server.
"""

import http.client
import io
import json
import os
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import pytest
from PIL import Image

from imgsearch.errors import UsageError
from imgsearch.indexer import index_folder
from imgsearch.samples import write_samples
from imgsearch.store import Store
from imgsearch.web import BackgroundServer, create_app

NAMES = ["cat.png", "astronaut.png", "coffee.png", "rocket.png", "camera.png", "coins.png", "grace_hopper.jpg"]
SECRET = b"TOP-SECRET: this file lies outside every indexed folder\n"


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(base_url: str, method: str, path: str, body=None, headers=None, **kwargs) -> Reply:
    where = urlsplit(base_url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **kwargs)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def get(base_url: str, path: str, **params) -> Reply:
    return request(base_url, "GET", path + ("?" + urlencode(params, doseq=True) if params else ""))


def multipart(data: bytes, filename: str = "query.png") -> tuple[bytes, dict]:
    boundary = "imgsearch-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(base_url: str, data: bytes, **params) -> Reply:
    body, headers = multipart(data)
    return request(base_url, "POST", "/api/search/image?" + urlencode(params), body, headers)


def assert_one_line_error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()["error"]
    assert message and "\n" not in message
    return message


def image_id(index_dir: str, path: str) -> int:
    store = Store(index_dir)
    try:
        return store.image_id(path)
    finally:
        store.close()


def write_report(folder, title: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "report.html"), "w") as f:
        f.write(f"<!doctype html><title>{title}</title><h1>{title}</h1>")
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"title": title}, f)


# -- one indexed gallery and server for the read-only tests ------------------------------------

@pytest.fixture(scope="module")
def gallery(tmp_path_factory, tiny_openclip, tiny_openclip_b):
    root = tmp_path_factory.mktemp("web-gallery")
    photos = write_samples(str(root / "photos"), NAMES)
    index_dir = str(root / "indexes")
    index_folder(str(root / "photos"), [tiny_openclip, tiny_openclip_b], index_dir)
    reports = root / "reports"
    write_report(reports / "2025-01-01-fast-vs-offline", "fast vs offline")
    write_report(reports / "suite" / "run-2", "nested run")
    os.makedirs(reports / "no-report-here")
    (reports / "no-report-here" / "results.json").write_text("{}")
    (root / "secret.txt").write_bytes(SECRET)
    return {"root": root, "photos": photos, "index_dir": index_dir, "reports": str(reports),
            "models": [tiny_openclip, tiny_openclip_b], "ids": {n: image_id(index_dir, p) for n, p in photos.items()}}


@pytest.fixture(scope="module")
def url(gallery):
    app = create_app(gallery["index_dir"], reports_dir=gallery["reports"])
    with BackgroundServer(app) as server:
        yield server.url


# -- search ----------------------------------------------------------------------------------

def test_models_lists_every_indexed_model_first_indexed_first(url, gallery):
    models = get(url, "/api/models").json()
    assert [m["spec"] for m in models] == gallery["models"]
    assert all(m["dim"] == 32 and m["factory"] == "Flat" for m in models)


def test_info_counts_the_images_and_says_indexing_is_off(url):
    info = get(url, "/api/info").json()
    assert info["images"] == 7 and info["allow_indexing"] is False
    assert info["max_upload_bytes"] == 20 * 1024 * 1024


def test_text_search_returns_k_ranked_hits_with_links(url, gallery):
    reply = get(url, "/api/search", q="a cat", model=gallery["models"][1], k=3)
    page = reply.json()
    assert reply.status == 200 and page["model"] == gallery["models"][1] and page["query"] == "a cat"
    hits = page["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for h in hits:
        assert h["file"] == f"/file/{h['id']}" and h["thumb"].startswith(f"/thumb/{h['id']}?v=")
        assert h["name"] in NAMES and h["path"] == gallery["photos"][h["name"]]
    assert set(page["timing_ms"]) == {"encode", "search", "metadata", "total"}


def test_no_model_means_the_first_indexed(url, gallery):
    assert get(url, "/api/search", q="a cat", k=1).json()["model"] == gallery["models"][0]


def test_offset_continues_the_ranking(url):
    whole = get(url, "/api/search", q="a rocket", k=6).json()["results"]
    second_page = get(url, "/api/search", q="a rocket", k=3, offset=3).json()["results"]
    assert [(h["rank"], h["id"]) for h in second_page] == [(h["rank"], h["id"]) for h in whole[3:6]]


@pytest.mark.parametrize("params, status, says", [
    ({"q": "cat", "k": 0}, 400, "k:"),
    ({"q": "cat", "k": 201}, 400, "k:"),
    ({"q": "cat", "offset": -1}, 400, "offset:"),
    ({"k": 3}, 400, "q:"),
    ({"q": "   "}, 400, "empty query"),
    ({"q": "cat", "model": "no-such-model"}, 404, "not indexed here"),
    ({"q": "cat", "model": "fast"}, 404, "not indexed here"),  # a preset, but not indexed here
])
def test_bad_search_requests_answer_one_line_json(url, params, status, says):
    assert says in assert_one_line_error(get(url, "/api/search", **params), status)


def test_uploading_an_indexed_photo_finds_that_photo_first(url, gallery):
    with open(gallery["photos"]["cat.png"], "rb") as f:
        page = upload(url, f.read(), k=3).json()
    first = page["results"][0]
    assert first["id"] == gallery["ids"]["cat.png"] and first["score"] > 0.99
    assert page["query"] == "query.png"


def test_upload_that_is_not_an_image_is_400(url):
    message = assert_one_line_error(upload(url, b"just some text, not a picture"), 400)
    assert message == "not an image (unrecognised format)"


def test_upload_over_20_mb_is_refused_before_the_body_is_sent(url):
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        conn.putrequest("POST", "/api/search/image")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(21 * 1024 * 1024))
        conn.endheaders()  # the 21 MB never follow: the answer must come without them
        response = conn.getresponse()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()
    assert "limit is 20 MB" in assert_one_line_error(reply, 413)


def test_upload_of_a_20_mb_file_plus_one_byte_is_413(url):
    assert_one_line_error(upload(url, b"\0" * (20 * 1024 * 1024 + 1)), 413)


def test_a_chunked_upload_is_counted_as_it_arrives(gallery):
    # No Content-Length to refuse up front: the server stops reading past its cap.
    app = create_app(gallery["index_dir"], max_upload_bytes=1024)
    body, headers = multipart(b"\0" * 100_000)
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    with BackgroundServer(app) as server:
        reply = request(server.url, "POST", "/api/search/image", chunks, headers, encode_chunked=True)
    assert "limit is 1024 bytes" in assert_one_line_error(reply, 413)


def test_similar_leaves_the_query_image_out(url, gallery):
    cat = gallery["ids"]["cat.png"]
    page = get(url, "/api/similar", id=cat, k=6).json()
    assert page["like"] == cat and len(page["results"]) == 6
    assert cat not in [h["id"] for h in page["results"]]


def test_similar_to_an_unknown_id_is_404(url):
    assert_one_line_error(get(url, "/api/similar", id=999_999), 404)


def test_compare_gives_one_column_per_model_in_the_order_asked(url, gallery):
    a, b = gallery["models"]
    result = get(url, "/api/compare", q="a cup of coffee", model=[b, a], k=4).json()
    assert result["query"] == "a cup of coffee"
    assert [c["model"] for c in result["columns"]] == [b, a]
    assert all(len(c["results"]) == 4 for c in result["columns"])
    alone = get(url, "/api/search", q="a cup of coffee", model=a, k=4).json()
    assert result["columns"][1]["results"] == alone["results"]


def test_compare_needs_two_different_models(url, gallery):
    a = gallery["models"][0]
    assert "2 to 6 different models" in assert_one_line_error(get(url, "/api/compare", q="x", model=[a, a]), 400)


# -- images, thumbnails, files ---------------------------------------------------------------

def test_image_metadata_comes_from_the_database(url, gallery):
    cat = gallery["ids"]["cat.png"]
    meta = get(url, f"/api/image/{cat}").json()
    assert (meta["name"], meta["width"], meta["height"]) == ("cat.png", 451, 300)
    assert meta["size"] == os.path.getsize(gallery["photos"]["cat.png"]) and meta["status"] == "ok"


def test_thumbnail_is_a_256_px_jpeg_made_once_and_cached_by_content_hash(url, gallery):
    cat = gallery["ids"]["cat.png"]
    meta = get(url, f"/api/image/{cat}").json()
    cached = os.path.join(gallery["index_dir"], "thumbs", f"{cat}-{meta['hash']}.jpg")
    first = get(url, f"/thumb/{cat}")
    assert first.status == 200 and first.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(first.body)).size == (256, 170)
    made = os.stat(cached).st_mtime_ns
    assert get(url, f"/thumb/{cat}").body == first.body
    assert os.stat(cached).st_mtime_ns == made


def test_file_sends_the_indexed_bytes_with_their_image_type(url, gallery):
    hopper = gallery["ids"]["grace_hopper.jpg"]
    reply = get(url, f"/file/{hopper}")
    with open(gallery["photos"]["grace_hopper.jpg"], "rb") as f:
        assert reply.body == f.read()
    assert reply.headers["content-type"] == "image/jpeg" and reply.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("route", ["/file/", "/thumb/", "/api/image/"])
def test_an_unknown_image_id_is_404(url, route):
    assert_one_line_error(get(url, f"{route}424242"), 404)


# -- path traversal: every route that sends a file --------------------------------------------

FILE_ROUTES = ["/file/", "/thumb/", "/api/image/", "/static/", "/reports/", "/reports/suite/run-2/"]
TRAVERSALS = [
    "../../../../../../etc/passwd",  # sent raw: http.client does not normalise
    "..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",  # double-encoded
    "..%252f..%252f..%252fetc%252fpasswd",
    "..%5c..%5c..%5cetc%5cpasswd",  # backslashes
    "%2fetc%2fpasswd",
    "1%2f..%2f..%2f..%2fetc%2fpasswd",
    "1/../../../../etc/passwd",
    "-1",
    "0x1",
    "1;/etc/passwd",
    "..%00/etc/passwd",
]


@pytest.mark.parametrize("attack", TRAVERSALS)
@pytest.mark.parametrize("route", FILE_ROUTES)
def test_traversal_attempts_get_404_or_403(url, route, attack):
    reply = request(url, "GET", route + attack)
    assert reply.status in (403, 404), (route + attack, reply.status)
    assert b"root:" not in reply.body


def test_the_secret_beside_the_gallery_is_unreachable_by_any_spelling(url, gallery):
    secret = str(gallery["root"] / "secret.txt")
    for route in FILE_ROUTES:
        for spelling in (quote(secret, safe=""), quote(quote(secret, safe=""), safe=""),
                         "..%2f" * 8 + quote(secret.lstrip("/"), safe="")):
            reply = request(url, "GET", route + spelling)
            assert reply.status in (403, 404) and SECRET not in reply.body, (route, spelling)


def test_a_path_is_never_taken_from_the_query_string(url, gallery):
    for route in ("/file", "/thumb", "/file/", "/api/image"):
        params = urlencode({"path": gallery["photos"]["cat.png"], "id": gallery["ids"]["cat.png"]})
        reply = request(url, "GET", f"{route}?{params}")
        assert reply.status in (403, 404)


# -- symlinks and files changed after indexing ------------------------------------------------

@pytest.fixture
def linked(tmp_path, tiny_openclip):
    """A folder with a file symlink, a symlinked album and an outside secret; indexed and served."""
    photos = write_samples(str(tmp_path / "photos"), ["cat.png", "coffee.png", "rocket.png"])
    folder = tmp_path / "photos"
    os.symlink("cat.png", folder / "alias.png")  # a link that stays inside its folder
    album_a, album_b = tmp_path / "album-a", tmp_path / "album-b"
    write_samples(str(album_a), ["coins.png"])
    os.makedirs(album_b)
    Image.new("RGB", (40, 30), (250, 0, 0)).save(album_b / "coins.png")  # same name, other bytes
    os.symlink(album_a, folder / "album")
    os.symlink(album_b / "coins.png", folder / "outside.png")  # a file link leaving its folder
    (tmp_path / "secret.txt").write_bytes(SECRET)
    index_dir = str(tmp_path / "indexes")
    index_folder(str(folder), [tiny_openclip], index_dir)
    names = ("cat.png", "coffee.png", "rocket.png", "alias.png", "album/coins.png", "outside.png")
    ids = {name: image_id(index_dir, str(folder / name)) for name in names}
    reports = tmp_path / "reports"
    write_report(reports / "real", "real")
    os.makedirs(reports / "linked-file")
    os.symlink(tmp_path / "secret.txt", reports / "linked-file" / "report.html")
    outside_report = tmp_path / "outside-report"
    write_report(outside_report, "outside")
    os.symlink(outside_report, reports / "linked-folder")
    with BackgroundServer(create_app(index_dir, reports_dir=str(reports))) as server:
        yield {"url": server.url, "folder": folder, "tmp": tmp_path, "ids": ids, "album_b": album_b,
               "photos": photos, "index_dir": index_dir, "model": tiny_openclip}


def test_symlinks_inside_a_folder_and_symlinked_folders_are_served(linked):
    url, ids = linked["url"], linked["ids"]
    with open(linked["photos"]["cat.png"], "rb") as f:
        assert get(url, f"/file/{ids['alias.png']}").body == f.read()
    assert get(url, f"/file/{ids['album/coins.png']}").status == 200
    assert get(url, f"/thumb/{ids['album/coins.png']}").status == 200


def test_a_file_symlink_leaving_its_folder_is_neither_indexed_nor_served(linked):
    # The indexer and the server apply one rule (files.escapes_its_folder): no broken thumbnail.
    url, outside = linked["url"], linked["ids"]["outside.png"]
    meta = get(url, f"/api/image/{outside}").json()
    assert (meta["status"], meta["reason"]) == ("skipped", "symlink leading outside its folder")
    names = [h["name"] for h in get(url, "/api/search", q="coins", k=10).json()["results"]]
    assert sorted(names) == ["alias.png", "cat.png", "coffee.png", "coins.png", "rocket.png"]
    for path in (f"/file/{outside}", f"/thumb/{outside}", f"/api/similar?id={outside}"):
        assert_one_line_error(get(url, path), 404)


def test_a_photo_swapped_for_a_symlink_to_an_outside_file_is_403(linked):
    url, coffee = linked["url"], linked["ids"]["coffee.png"]
    os.remove(linked["folder"] / "coffee.png")
    os.symlink(linked["tmp"] / "secret.txt", linked["folder"] / "coffee.png")
    for path in (f"/file/{coffee}", f"/thumb/{coffee}", f"/api/similar?id={coffee}"):
        reply = request(url, "GET", path)
        assert "symlink leading outside its folder" in assert_one_line_error(reply, 403), path
        assert SECRET not in reply.body
    index_folder(str(linked["folder"]), [linked["model"]], linked["index_dir"])  # the next run agrees
    meta = get(url, f"/api/image/{coffee}").json()
    assert (meta["status"], meta["reason"]) == ("skipped", "symlink leading outside its folder")


def test_a_photo_swapped_for_a_symlink_to_another_indexed_photo_elsewhere_is_403(linked):
    # Even bytes that are indexed elsewhere are not sent through a link that leaves its folder.
    url, rocket = linked["url"], linked["ids"]["rocket.png"]
    os.remove(linked["folder"] / "rocket.png")
    os.symlink(linked["album_b"] / "coins.png", linked["folder"] / "rocket.png")
    assert_one_line_error(get(url, f"/file/{rocket}"), 403)


def test_a_symlinked_folder_pointed_elsewhere_after_indexing_is_refused(linked):
    url, coins = linked["url"], linked["ids"]["album/coins.png"]
    os.remove(linked["folder"] / "album")
    os.symlink(linked["album_b"], linked["folder"] / "album")  # same file name, other bytes
    for path in (f"/file/{coins}", f"/thumb/{coins}"):
        assert "changed on disk since indexing" in assert_one_line_error(get(url, path), 404)


def test_a_file_changed_since_indexing_is_not_served(linked):
    url, cat = linked["url"], linked["ids"]["cat.png"]
    Image.new("RGB", (20, 20), (0, 0, 255)).save(linked["folder"] / "cat.png")
    assert_one_line_error(get(url, f"/file/{cat}"), 404)
    assert_one_line_error(get(url, f"/thumb/{cat}"), 404)


def test_a_deleted_file_is_404(linked):
    url, rocket = linked["url"], linked["ids"]["rocket.png"]
    os.remove(linked["folder"] / "rocket.png")
    assert "gone from disk" in assert_one_line_error(get(url, f"/file/{rocket}"), 404)


def test_symlinked_report_files_and_folders_are_neither_listed_nor_served(linked):
    url = linked["url"]
    assert [r["name"] for r in get(url, "/api/reports").json()["reports"]] == ["real"]
    for path in ("/reports/linked-file/report.html", "/reports/linked-folder/report.html"):
        reply = get(url, path)
        assert reply.status == 404 and SECRET not in reply.body


# -- reports ---------------------------------------------------------------------------------

def test_reports_lists_every_folder_with_a_report_html(url):
    listing = get(url, "/api/reports").json()
    by_name = {r["name"]: r for r in listing["reports"]}
    assert set(by_name) == {"2025-01-01-fast-vs-offline", "suite/run-2"}
    assert by_name["suite/run-2"]["url"] == "/reports/suite/run-2/report.html"
    assert set(by_name["suite/run-2"]["files"]) == {"report.html", "results.json"}


def test_a_report_page_and_its_results_are_served(url):
    page = get(url, "/reports/suite/run-2/report.html")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"<h1>nested run</h1>" in page.body
    assert page.headers["content-security-policy"].startswith("sandbox")  # cannot call the API as this origin
    assert get(url, "/reports/suite/run-2/results.json").json() == {"title": "nested run"}


@pytest.mark.parametrize("path", ["/reports/no-report-here/results.json", "/reports/suite/report.html",
                                  "/reports/suite/run-2/other.txt", "/reports/suite/run-2/report.md"])
def test_only_listed_report_files_are_served(url, path):
    assert get(url, path).status == 404


# -- pages and schema ------------------------------------------------------------------------

def test_home_page_and_its_static_files(url):
    home = get(url, "/")
    assert home.status == 200 and b"<title>imgsearch</title>" in home.body
    assert "default-src 'self'" in home.headers["content-security-policy"]
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        reply = get(url, asset)
        assert reply.status == 200 and kind in reply.headers["content-type"]


def test_openapi_describes_the_api(url):
    paths = get(url, "/openapi.json").json()["paths"]
    assert {"/api/models", "/api/search", "/api/search/image", "/api/similar", "/api/compare", "/api/image/{image_id}",
            "/thumb/{image_id}", "/file/{image_id}", "/api/reports", "/api/index"} <= set(paths)


# -- indexing from the web -------------------------------------------------------------------

def test_indexing_is_refused_unless_allowed(url, gallery):
    body = json.dumps({"folder": str(gallery["root"] / "photos")})
    reply = request(url, "POST", "/api/index", body, {"Content-Type": "application/json"})
    assert "indexing from the web is off" in assert_one_line_error(reply, 403)
    assert_one_line_error(request(url, "POST", "/api/index"), 403)
    assert get(url, "/api/index").json() == {"allowed": False, "state": "idle"}


def test_indexing_when_allowed_runs_in_the_background_and_search_sees_it(tmp_path, tiny_openclip):
    write_samples(str(tmp_path / "photos"), ["cat.png", "coffee.png"])
    write_samples(str(tmp_path / "more"), ["rocket.png"])
    index_dir = str(tmp_path / "indexes")
    index_folder(str(tmp_path / "photos"), [tiny_openclip], index_dir)
    with BackgroundServer(create_app(index_dir, allow_indexing=True)) as server:
        assert_one_line_error(request(server.url, "POST", "/api/index", json.dumps({"folder": str(tmp_path / "nope")}),
                                      {"Content-Type": "application/json"}), 400)
        reply = request(server.url, "POST", "/api/index", json.dumps({"folder": str(tmp_path / "more")}),
                        {"Content-Type": "application/json"})
        assert reply.status == 202 and reply.json()["state"] == "running"
        deadline = time.monotonic() + 60
        while (status := get(server.url, "/api/index").json())["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status["state"] == "done" and status["report"]["new"] == 1
        names = [h["name"] for h in get(server.url, "/api/search", q="anything", k=10).json()["results"]]
        assert sorted(names) == ["cat.png", "coffee.png", "rocket.png"]


def test_an_index_dir_without_a_database_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no index in"):
        create_app(str(tmp_path / "empty"))
