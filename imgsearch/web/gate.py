"""Who may talk to the server, checked on every request before any route runs.

1. Host allow-list: the Host header must name this server by a loopback name or address, the
   address it was bound to, or a name allowed explicitly. A page on another site that re-points
   its own name at 127.0.0.1 (DNS rebinding) sends its own name as Host, and gets a 421.
2. A token, when the server is reachable off this machine (or when one was given): an
   `Authorization: Bearer TOKEN` header, or the HttpOnly, SameSite=Strict cookie that
   /login?token=TOKEN sets. Without it, 401.
3. Same origin for every state-changing request (anything but GET, HEAD, OPTIONS): a browser
   names the page that sent a request in Origin (or at least in Sec-Fetch-Site); anything but
   this server's own origin gets a 403, whatever the body (form, text/plain, multipart, JSON).
   A request with neither header comes from no browser (curl, a script), so no page can have
   forged it; it still needs the token where one is required.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from ..errors import UsageError

LOOPBACK_NAMES = ("localhost",)
COOKIE = "imgsearch_token"
LOGIN_PATH = "/login"
MIN_TOKEN_CHARS = 16
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
WILDCARD_BINDS = {"0.0.0.0", "::", ""}
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?")
_NAME = re.compile(r"[a-z0-9_.-]+")
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{%d,}" % MIN_TOKEN_CHARS)


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Gate:
    """The access settings of one server: the host names it answers to, and its token if any."""

    allowed_hosts: frozenset[str] = frozenset()  # beyond loopback, lower case, no port
    token: str | None = None
    token_generated: bool = field(default=False, compare=False)

    @classmethod
    def for_bind(cls, host: str, token: str | None = None, allowed_hosts=()) -> "Gate":
        """The settings `serve --host HOST` implies: off loopback a token is required (made if none given)."""
        if token is not None and not _TOKEN.fullmatch(token):
            raise UsageError(f"--token must be at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 . _ ~ + / = - "
                             "(a guessable token guards nothing)")
        names = set()
        for name in allowed_hosts:
            bare = name.strip().strip("[]").lower()
            if not (_is_ip(bare) or _NAME.fullmatch(bare)):
                raise UsageError(f"--allowed-host takes a host name or address without scheme or port, got {name!r}")
            names.add(bare)
        if host.strip("[]") not in WILDCARD_BINDS:
            names.add(host.strip("[]").lower())
        generated = token is None and not is_loopback(host)
        if generated:
            token = secrets.token_urlsafe(24)
        return cls(frozenset(names), token, generated)

    def allows_host(self, name: str) -> bool:
        return is_loopback(name) or name in self.allowed_hosts

    def has_token(self, presented: str | None) -> bool:
        return self.token is None or (presented is not None and hmac.compare_digest(presented.encode(), self.token.encode()))


class GateMiddleware:
    """ASGI middleware enforcing a Gate (see the module docstring for the three rules)."""

    def __init__(self, app, gate: Gate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self.gate.allows_host(_hostname(host)):
            return await _refuse(send, 421, "this server does not answer to that host name")
        if scope["path"] == LOGIN_PATH:
            return await self._login(scope, send)
        if not self.gate.has_token(_presented_token(headers)):
            return await _refuse(send, 401, "this server needs its token: open the login URL that "
                                            "`imgsearch serve` printed, or send Authorization: Bearer TOKEN")
        if scope["method"] not in SAFE_METHODS and not _same_origin(headers, scope.get("scheme", "http"), host):
            return await _refuse(send, 403, "cross-origin request refused: changes come only from this server's own pages")
        return await self.app(scope, receive, send)

    async def _login(self, scope, send) -> None:
        presented = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if self.gate.token is None or not self.gate.has_token(presented):
            return await _refuse(send, 401, "wrong or missing token")
        cookie = f"{COOKIE}={self.gate.token}; Path=/; HttpOnly; SameSite=Strict"
        # A redirect takes the token out of the address bar (the page sends no Referer anyway).
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()), (b"cache-control", b"no-store"),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def _headers(scope) -> dict[str, str]:
    # A repeated header keeps its first value: a second Host or Origin cannot override the first.
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _hostname(host_header: str) -> str:
    """The host of a Host header, lower case, without port or IPv6 brackets; "" if malformed
    (user info, a path, a second colon outside brackets: nothing a browser sends)."""
    match = _HOST.fullmatch(host_header)
    return match.group(1).strip("[]").lower() if match else ""


def _origin(scheme: str, netloc: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in: how browsers compare origins."""
    port = netloc.rpartition(":")[2] if not netloc.endswith("]") and ":" in netloc else ""
    return scheme, _hostname(netloc), int(port) if port else {"http": 80, "https": 443}.get(scheme, 0)


def _same_origin(headers: dict[str, str], scheme: str, host: str) -> bool:
    origin = headers.get("origin")
    if origin is None:
        # No Origin: a browser still says where the request came from in Sec-Fetch-Site.
        site = headers.get("sec-fetch-site")
        return site is None or site == "same-origin"
    sent_scheme, _, netloc = origin.partition("://")
    if origin == "null" or not _hostname(netloc):
        return False
    return _origin(sent_scheme.lower(), netloc) == _origin(scheme, host)


def _presented_token(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    cookies = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no token, not a 500
        return None
    return cookies[COOKIE].value if COOKIE in cookies else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def exposure_notice(gate: Gate, host: str, port: int, allow_indexing: bool) -> list[str]:
    """What `serve` says on stderr: who can reach this server and what they get."""
    what = "every indexed photo, its path and its metadata"
    if allow_indexing:
        what += ", and indexing of any folder this user can read"
    names = ", ".join(["localhost", "127.0.0.1", "::1", *sorted(gate.allowed_hosts - {"localhost", "127.0.0.1", "::1"})])
    if is_loopback(host):
        lines = [f"reachable from this machine only: {what}."]
        lines.append("Anyone logged in here can use it with this token." if gate.token
                     else "No token: any user or program on this machine can use it (pass --token to require one).")
    else:
        where = "on every network interface" if host.strip("[]") in WILDCARD_BINDS else f"on {host}"
        lines = [f"EXPOSED {where}: anyone who can reach port {port} and has the token gets {what}.",
                 "Plain HTTP: photos and the token cross the network unencrypted; on a network you do not trust, "
                 "use an SSH tunnel or a TLS proxy instead."]
    lines.append(f"Requests must name this server as one of: {names}; add the names or addresses clients use "
                 "with --allowed-host (other names get 421, against DNS rebinding).")
    if not is_loopback(host) and not any(not is_loopback(name) for name in gate.allowed_hosts):
        lines.append("No network name is allowed yet, so only this machine can connect: add --allowed-host "
                     "with the name or address other machines use.")
    if gate.token:
        shown = gate.token if gate.token_generated else "YOUR_TOKEN"
        login_host = _url_host(min(gate.allowed_hosts, default="127.0.0.1"))
        lines.append(f"Log in once per browser: http://{login_host}:{port}{LOGIN_PATH}?token={shown}  "
                     f"(scripts: send 'Authorization: Bearer {shown}')")
        if gate.token_generated:
            lines.append("That token was made for this run and is printed only here; pass --token to keep one.")
    return lines


def _url_host(name: str) -> str:
    return f"[{name}]" if ":" in name else name
