"""What a hostile web page, a network neighbour or a slow client gets from `imgsearch serve`.

Every check goes through real HTTP to a real server on 127.0.0.1, with the headers a browser
would send: a page that re-points its own name at 127.0.0.1 (DNS rebinding) sends that name as
Host; a cross-site form or fetch names its page in Origin (or Sec-Fetch-Site).
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode, urlsplit

import pytest

from imgsearch.errors import UsageError
from imgsearch.indexer import index_folder
from imgsearch.samples import write_samples
from imgsearch.web import BackgroundServer, Gate, create_app, exposure_notice
from test_web_api import Reply, assert_one_line_error, image_id, multipart, write_report

NAMES = ["cat.png", "coffee.png", "rocket.png"]
EVIL = "rebind.attacker.example"


def send(url: str, method: str, path: str, body=None, headers=None, host: str | None = None) -> Reply:
    """One request; host replaces the Host header http.client would send."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        body = body.encode() if isinstance(body, str) else body
        for name, value in {**(headers or {}), **({"Content-Length": str(len(body))} if body is not None else {})}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_openclip):
    root = tmp_path_factory.mktemp("web-security")
    photos = write_samples(str(root / "photos"), NAMES)
    index_dir = str(root / "indexes")
    index_folder(str(root / "photos"), [tiny_openclip], index_dir)
    write_report(root / "reports" / "run-1", "run one")
    with open(photos["cat.png"], "rb") as f:
        cat = f.read()
    return {"root": root, "index_dir": index_dir, "reports": str(root / "reports"), "photos": photos,
            "ids": {n: image_id(index_dir, p) for n, p in photos.items()}, "cat": cat, "model": tiny_openclip}


@pytest.fixture(scope="module")
def url(library):
    with BackgroundServer(create_app(library["index_dir"], reports_dir=library["reports"])) as server:
        yield server.url


@pytest.fixture
def indexing_url(library, tmp_path):
    """A server that may index folders (allow_indexing) over a fresh copy of nothing."""
    index_dir = str(tmp_path / "indexes")
    index_folder(str(library["root"] / "photos"), [library["model"]], index_dir)
    with BackgroundServer(create_app(index_dir, allow_indexing=True)) as server:
        yield server.url


def port_of(url: str) -> int:
    return urlsplit(url).port


def reads(library, url) -> list[str]:
    """Every kind of GET a page would make to read this server's data."""
    cat = library["ids"]["cat.png"]
    return ["/", "/static/app.js", "/api/info", "/api/models", "/api/search?q=cat", f"/api/image/{cat}",
            f"/api/similar?id={cat}", f"/thumb/{cat}", f"/file/{cat}", "/api/reports", "/reports/run-1/report.html",
            "/openapi.json", "/api/index", "/login?token=x"]


def data_in(body: bytes, library) -> bool:
    paths = [p.encode() for p in library["photos"].values()] + [str(library["root"]).encode()]
    return (any(p in body for p in paths) or library["cat"][:64] in body or b"\x89PNG" in body
            or b"\xff\xd8\xff" in body or b"<title>imgsearch" in body or b"openapi" in body)


# -- 1. Host allow-list: DNS rebinding gets nothing -------------------------------------------

@pytest.mark.parametrize("host", [f"{EVIL}:{{port}}", EVIL, "127.0.0.1.nip.io:{port}", "localhost.attacker.example",
                                  "evil.example@127.0.0.1:{port}", "127.0.0.1:{port}/x", "[::1]x", "0.0.0.0:{port}", ""])
def test_a_rebound_page_reads_nothing(url, library, host):
    host = host.format(port=port_of(url))
    for path in reads(library, url):
        # What fetch() sends from the attacker's page once its name points at 127.0.0.1.
        reply = send(url, "GET", path, headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, host=host)
        assert reply.status == 421, (host, path, reply.status)
        assert not data_in(reply.body, library), (host, path)
        assert json.loads(reply.body) == {"error": "this server does not answer to that host name"}


def test_a_rebound_page_changes_nothing(indexing_url, library):
    origin_host = f"{EVIL}:{port_of(indexing_url)}"
    origin = {"Origin": f"http://{origin_host}", "Sec-Fetch-Site": "same-origin"}
    body = json.dumps({"folder": str(library["root"] / "photos")})
    reply = send(indexing_url, "POST", "/api/index", body, {**origin, "Content-Type": "application/json"}, host=origin_host)
    assert reply.status == 421
    upload, headers = multipart(library["cat"])
    reply = send(indexing_url, "POST", "/api/search/image", upload, {**origin, **headers}, host=origin_host)
    assert reply.status == 421 and not data_in(reply.body, library)
    assert send(indexing_url, "GET", "/api/index").body == b'{"allowed":true,"state":"idle"}'


def test_an_http_1_0_request_without_host_is_refused(url):
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(b"GET /api/info HTTP/1.0\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 421 ") and b'"images"' not in answer


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "127.8.9.10:{port}", "LOCALHOST:{port}"])
def test_loopback_names_are_answered(url, host):
    reply = send(url, "GET", "/api/info", host=host.format(port=port_of(url)))
    assert reply.status == 200 and reply.json()["images"] == len(NAMES)


def test_allowed_hosts_are_answered_and_only_they(library):
    gate = Gate.for_bind("127.0.0.1", allowed_hosts=["photos.lan", "192.168.7.20"])
    with BackgroundServer(create_app(library["index_dir"], gate=gate)) as server:
        port = port_of(server.url)
        for host in (f"photos.lan:{port}", f"PHOTOS.LAN:{port}", "192.168.7.20", f"localhost:{port}"):
            assert send(server.url, "GET", "/api/info", host=host).status == 200, host
        for host in (f"photos.lan.{EVIL}:{port}", f"x.photos.lan:{port}", "192.168.7.21"):
            assert send(server.url, "GET", "/api/info", host=host).status == 421, host


def test_bind_address_is_allowed_and_wildcards_are_not_names():
    assert Gate.for_bind("192.168.7.20").allows_host("192.168.7.20")
    assert not Gate.for_bind("0.0.0.0").allows_host("0.0.0.0")
    assert Gate.for_bind("0.0.0.0").allowed_hosts == frozenset()
    for bad in ("http://photos.lan", "photos.lan:8000", "a/b", ""):
        with pytest.raises(UsageError, match="--allowed-host"):
            Gate.for_bind("127.0.0.1", allowed_hosts=[bad])


# -- 2. same origin for every change: CSRF ----------------------------------------------------

def foreign_requests(library) -> list[tuple[str, str, dict]]:
    """The bodies a cross-site page can send without a preflight, and a JSON one."""
    folder = str(library["root"] / "photos")
    upload, upload_headers = multipart(library["cat"])
    return [
        ("/api/index", urlencode({"folder": folder}), {"Content-Type": "application/x-www-form-urlencoded"}),
        ("/api/index", json.dumps({"folder": folder}), {"Content-Type": "text/plain"}),
        ("/api/index", json.dumps({"folder": folder}), {"Content-Type": "application/json"}),
        ("/api/search/image", upload, upload_headers),
    ]


@pytest.mark.parametrize("who", [
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "null"},  # a sandboxed frame, a data: URL, a form on a no-referrer page
    {"Origin": "http://127.0.0.1:1"},  # another local server is another origin
    {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin still says where from
    {"Sec-Fetch-Site": "same-site"},
])
def test_cross_origin_changes_are_refused_whatever_the_body(indexing_url, library, who):
    for path, body, headers in foreign_requests(library):
        reply = send(indexing_url, "POST", path, body, {**headers, **who})
        assert "cross-origin request refused" in assert_one_line_error(reply, 403), (path, headers)
        assert not data_in(reply.body, library)
    for method in ("PUT", "DELETE", "PATCH"):
        assert send(indexing_url, method, "/api/index", "{}", {"Origin": "http://evil.example"}).status == 403
    assert send(indexing_url, "GET", "/api/index").json() == {"allowed": True, "state": "idle"}


def test_the_servers_own_pages_and_plain_scripts_may_change_things(indexing_url, library):
    own = {"Origin": indexing_url, "Sec-Fetch-Site": "same-origin"}
    upload, headers = multipart(library["cat"])
    reply = send(indexing_url, "POST", "/api/search/image?k=1", upload, {**headers, **own})
    assert reply.status == 200 and reply.json()["results"][0]["name"] == "cat.png"
    assert send(indexing_url, "POST", "/api/search/image?k=1", upload, headers).status == 200  # curl: no Origin
    reply = send(indexing_url, "POST", "/api/index", json.dumps({"folder": str(library["root"] / "photos")}),
                 {"Content-Type": "application/json", **own})
    assert reply.status == 202


# -- 3. the token -----------------------------------------------------------------------------

TOKEN = "a-long-test-token-0123456789"


@pytest.fixture(scope="module")
def locked(library):
    gate = Gate.for_bind("127.0.0.1", token=TOKEN)
    with BackgroundServer(create_app(library["index_dir"], reports_dir=library["reports"], gate=gate)) as server:
        yield server.url


def test_without_the_token_every_route_is_401(locked, library):
    for path in reads(library, locked):
        if path.startswith("/login"):
            continue
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Cookie": "imgsearch_token=wrong"}, {"Cookie": f"other={TOKEN}"}, {"Cookie": '"unterminated;=='}):
            reply = send(locked, "GET", path, headers=headers)
            assert reply.status == 401, (path, headers, reply.status)
            assert not data_in(reply.body, library)


def test_the_token_works_as_a_header(locked, library):
    reply = send(locked, "GET", "/api/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200 and reply.json()["images"] == len(NAMES)


def test_the_login_url_sets_an_http_only_strict_cookie_that_works(locked):
    assert send(locked, "GET", "/login?token=wrong-token-0123456789").status == 401
    assert send(locked, "GET", "/login").status == 401
    login = send(locked, "GET", f"/login?token={TOKEN}")
    assert login.status == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"imgsearch_token={TOKEN};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert send(locked, "GET", "/api/models", headers={"Cookie": f"imgsearch_token={TOKEN}"}).status == 200
    assert send(locked, "GET", "/", headers={"Cookie": f"imgsearch_token={TOKEN}"}).status == 200


def test_the_token_does_not_lift_the_host_and_origin_checks(locked, library):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert send(locked, "GET", "/api/info", headers=auth, host=f"{EVIL}:{port_of(locked)}").status == 421
    upload, headers = multipart(library["cat"])
    reply = send(locked, "POST", "/api/search/image", upload, {**headers, **auth, "Origin": "http://evil.example"})
    assert reply.status == 403


def test_off_loopback_a_token_is_required_and_made_when_none_is_given():
    assert Gate.for_bind("127.0.0.1").token is None and Gate.for_bind("localhost").token is None
    assert Gate.for_bind("::1").token is None
    for host in ("0.0.0.0", "::", "192.168.7.20", "photos.lan"):
        gate = Gate.for_bind(host)
        assert gate.token_generated and len(gate.token) >= 32, host
    assert Gate.for_bind("0.0.0.0").token != Gate.for_bind("0.0.0.0").token
    given = Gate.for_bind("0.0.0.0", token=TOKEN)
    assert given.token == TOKEN and not given.token_generated
    for weak in ("short", "has spaces in it, 0123456789", "semi;colon;0123456789"):
        with pytest.raises(UsageError, match="--token"):
            Gate.for_bind("0.0.0.0", token=weak)


def test_serve_says_what_is_exposed_and_to_whom():
    local = "\n".join(exposure_notice(Gate.for_bind("127.0.0.1"), "127.0.0.1", 8000, allow_indexing=False))
    assert "this machine only" in local and "No token" in local and "EXPOSED" not in local
    gate = Gate.for_bind("0.0.0.0", allowed_hosts=["photos.lan"])
    wide = "\n".join(exposure_notice(gate, "0.0.0.0", 8000, allow_indexing=True))
    assert "EXPOSED on every network interface" in wide and "indexing of any folder" in wide
    assert "unencrypted" in wide and f"http://photos.lan:8000/login?token={gate.token}" in wide
    assert wide.count(gate.token) == 2  # the login URL and the header: printed once, here only
    chosen = "\n".join(exposure_notice(Gate.for_bind("0.0.0.0", token=TOKEN), "0.0.0.0", 8000, allow_indexing=False))
    assert TOKEN not in chosen and "No network name is allowed yet" in chosen


def test_serve_refuses_a_weak_token_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "imgsearch", "serve", "--index-dir", str(tmp_path), "--host", "0.0.0.0",
                          "--token", "short"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--token must be at least 16" in run.stderr


# -- 5. one set of headers everywhere, one URL for the app, no CDN ----------------------------

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY",
                    "cross-origin-resource-policy": "same-origin"}


def assert_security_headers(reply: Reply, where) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, (where, name, reply.headers)
    policy = reply.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy, (where, policy)
    assert "default-src" in policy, (where, policy)


def test_every_response_carries_the_security_headers(url, library, locked):
    for path in reads(library, url) + ["/nope", "/api/image/424242", "/static/nope.js", "/api/search?k=0"]:
        assert_security_headers(send(url, "GET", path), path)
    assert_security_headers(send(url, "GET", "/api/info", host=EVIL), "421")
    assert_security_headers(send(locked, "GET", "/api/info"), "401")
    assert_security_headers(send(url, "POST", "/api/index", "{}", {"Origin": "http://evil.example"}), "403")
    assert_security_headers(send(url, "POST", "/api/search/image", b"\0" * 100, {"Content-Length": str(30 << 20)}), "413")


def test_the_app_has_one_url(url):
    assert send(url, "GET", "/").status == 200
    for path in ("/static/index.html", "/static/", "/static", "/index.html", "/static/../static/index.html"):
        reply = send(url, "GET", path)
        assert reply.status == 404 and b"<title>imgsearch" not in reply.body, path


def test_no_docs_page_loads_a_script_from_elsewhere(url):
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert send(url, "GET", path).status == 404, path
    for path in ("/", "/static/app.js", "/static/style.css", "/openapi.json"):
        body = send(url, "GET", path).body
        assert b"https://" not in body and b"http://" not in body, path


def test_report_and_file_policies_stay_strict(url, library):
    report = send(url, "GET", "/reports/run-1/report.html").headers["content-security-policy"]
    assert report.startswith("sandbox ") and "default-src 'none'" in report
    original = send(url, "GET", f"/file/{library['ids']['cat.png']}").headers["content-security-policy"]
    assert original.startswith("sandbox;") and "script-src" not in original


# -- 6. model specs are names, not paths ------------------------------------------------------

def test_a_model_spec_is_never_looked_up_on_the_servers_disk(url, library, tmp_path):
    existing, missing = str(library["root"]), str(tmp_path / "no-such-dir")
    answers = {}
    for kind, folder in (("existing", existing), ("missing", missing)):
        for template in ("openclip:local-dir:{}", "hf:{}", "openclip:ViT-B-32/{}/weights.bin", "{}", "./x/../{}"):
            asked = template.format(folder)
            reply = send(url, "GET", "/api/search?" + urlencode({"q": "cat", "model": asked}))
            message = assert_one_line_error(reply, 404)
            assert os.getcwd() not in message.replace(asked, "") and str(tmp_path) not in message.replace(asked, "")
            answers.setdefault(template, []).append(message.replace(repr(asked), "SPEC"))
    for template, (with_existing, with_missing) in answers.items():
        assert with_existing == with_missing, template  # no file-existence oracle


def test_indexed_specs_and_presets_of_indexed_models_are_accepted(url, library):
    page = send(url, "GET", "/api/search?" + urlencode({"q": "cat", "model": library["model"], "k": 1})).json()
    assert page["model"] == library["model"]


def test_indexing_from_the_web_takes_indexed_models_or_presets_only(indexing_url, library):
    own = {"Origin": indexing_url, "Content-Type": "application/json"}
    folder = str(library["root"] / "photos")
    for models in (["openclip:local-dir:/etc"], ["hf:/root"], ["openclip:ViT-B-32/openai"], [library["model"], "x"]):
        reply = send(indexing_url, "POST", "/api/index", json.dumps({"folder": folder, "models": models}), own)
        assert "neither indexed here nor a preset" in assert_one_line_error(reply, 400), models
    reply = send(indexing_url, "POST", "/api/index", json.dumps({"folder": "relative/photos"}), own)
    assert "absolute path" in assert_one_line_error(reply, 400)
    assert send(indexing_url, "GET", "/api/index").json()["state"] == "idle"


# -- 7. slow clients --------------------------------------------------------------------------

@pytest.fixture
def impatient(library):
    with BackgroundServer(create_app(library["index_dir"]), head_s=0.5, idle_s=0.5) as server:
        yield urlsplit(server.url)


def closed_by_server(sock: socket.socket, trickle: bytes, rounds: int = 200) -> bool:
    """Send trickle one byte per round (0.1 s apart); True once the server has closed the connection."""
    sock.settimeout(0.1)
    for i in range(rounds):
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            pass
        except ConnectionError:
            return True
        try:
            sock.sendall(trickle[i % len(trickle):i % len(trickle) + 1])
        except (BrokenPipeError, ConnectionError):
            return True
    return False


def test_a_request_head_sent_byte_by_byte_is_cut_off(impatient):
    with socket.create_connection((impatient.hostname, impatient.port)) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert closed_by_server(sock, b"X-Slow: " + b"a" * 1000)


def test_a_silent_connection_is_cut_off(impatient):
    with socket.create_connection((impatient.hostname, impatient.port)) as sock:
        sock.settimeout(60)
        assert sock.recv(1) == b""  # nothing sent, and the server hangs up


def test_a_body_that_stops_arriving_is_cut_off(impatient):
    with socket.create_connection((impatient.hostname, impatient.port)) as sock:
        sock.sendall(b"POST /api/search/image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n")
        sock.settimeout(60)
        assert sock.recv(65536) == b""


def test_a_prompt_client_keeps_its_connection_alive(impatient):
    conn = http.client.HTTPConnection(impatient.hostname, impatient.port, timeout=30)
    try:
        for _ in range(3):  # one connection, several requests, each head sent at once
            conn.request("GET", "/api/info")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["images"] == len(NAMES)
            time.sleep(0.2)
    finally:
        conn.close()
