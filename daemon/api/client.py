"""The API's client, as ``cellfab batch`` uses it (httpx; none of the server's code).

This module owns reaching a daemon and telling apart the ways that can fail:

* where: ``resolve(api, site_file)``: ``--api URL`` (``http://host:port``,
  ``https://...``, or ``unix:PATH``), else the ``api.bind`` of ``--site FILE``, else that
  of the embedded default site (a bind to 0.0.0.0 or [::] is reached on loopback; a TLS
  site's certificate is the one trusted);
* ``Refused``: the daemon answered 4xx or 5xx; it carries the status and the API's
  error body (``{"error", "field", "detail"}``) unchanged;
* ``Unreachable``: nothing answers there, or the connection broke.

``Client(target, token=...)`` sends the sign-in token as ``Authorization: Bearer``.
Requests answer the parsed JSON and the raw text (``--json`` prints the raw text: the
API's JSON, unchanged). ``events`` follows the server-sent event stream.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from httpx_sse import SSEError, connect_sse

TIMEOUT: Final = 30.0  # seconds for one request (the engine answers at once; a guard)
_UNIX_BASE: Final = "http://cellfab"


class ClientError(Exception):
    """A usage error: the target cannot be worked out (exit status 2)."""


class Unreachable(Exception):
    """No daemon answers at the target, or the connection broke (exit status 3)."""


class Refused(Exception):
    """The daemon answered with an error (exit status 1); ``body`` is its JSON."""

    def __init__(self, status: int, body: Mapping[str, Any], text: str) -> None:
        self.status = status
        self.body = dict(body)
        self.text = text
        detail = self.body.get("detail") or text.strip() or f"HTTP {status}"
        field = self.body.get("field")
        super().__init__(f"{detail}" + (f" [field {field}]" if field else ""))


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # as the user knows it: http(s)://host:port or unix:PATH
    base_url: str
    uds: str | None = None
    cafile: str | None = None  # the certificate to trust (a TLS site's own), else the system's


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    data: Any
    text: str


def target_of_url(url: str) -> Target:
    if url.startswith("unix:"):
        path = url.removeprefix("unix:")
        if not path:
            raise ClientError("--api unix:PATH names no socket")
        return Target(url, _UNIX_BASE, uds=path)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"--api {url!r}: write http://host:port, https://host:port or unix:PATH")
    return Target(url, url.rstrip("/"))


def resolve(api: str | None, site_file: str | None) -> Target:
    """Where the daemon is (see the module doc)."""
    if api:
        return target_of_url(api)
    from daemon.config.addresses import UnixSocket
    from daemon.config.defaults import default_site
    from daemon.config.load import SiteError, load_site

    try:
        site = load_site(site_file) if site_file else default_site()
    except SiteError as exc:
        first = exc.diagnostics[0].format() if exc.diagnostics else str(exc)
        raise ClientError(f"the site does not load: {first}") from None
    endpoint = site.api.endpoint
    if isinstance(endpoint, UnixSocket):
        return Target(f"unix:{endpoint.path}", _UNIX_BASE, uds=str(endpoint.path))
    if endpoint.port == 0:
        raise ClientError("the site's API binds port 0 (any free port): give --api URL")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(endpoint.host, endpoint.host)
    scheme = "https" if site.api.tls else "http"
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{endpoint.port}"
    cafile = str(site.api.tls.certificate) if site.api.tls else None
    return Target(url, url, cafile=cafile)


class Client:
    """``with Client(target) as api: api.get("/batches")``."""

    def __init__(self, target: Target, timeout: float = TIMEOUT, token: str | None = None) -> None:
        self.target = target
        transport = httpx.HTTPTransport(uds=target.uds) if target.uds else None
        verify = ssl.create_default_context(cafile=target.cafile) if target.cafile else True
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=target.base_url,
            transport=transport,
            verify=verify,
            timeout=timeout,
            headers=headers,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Answer:
        try:
            response = self.http.request(method, path, json=json_body, params=params)
        except httpx.TransportError as exc:
            raise Unreachable(f"no daemon answers at {self.target.url}: {_why(exc)}") from None
        return _answer(response)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Answer:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Answer:
        return self.request("POST", path, json_body=body)

    def download(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[bytes, str]:
        """A document the API answers (not JSON): its bytes and media type."""
        try:
            response = self.http.get(path, params=params, headers={"accept": "*/*"})
        except httpx.TransportError as exc:
            raise Unreachable(f"no daemon answers at {self.target.url}: {_why(exc)}") from None
        if response.status_code >= 400:
            _answer(response)
        return response.content, response.headers.get("content-type", "")

    def events(
        self, kinds: Sequence[str] = (), batches: Sequence[str] = ()
    ) -> Iterator[tuple[str, dict[str, Any], str]]:
        """``(kind, event, raw JSON)`` for every event of the stream, from the moment it
        is open (the first value is ``("open", {}, "")``) until the daemon ends it."""
        params = {"kind": list(kinds), "batch": list(batches)}
        timeout = httpx.Timeout(TIMEOUT, read=None)
        try:
            with connect_sse(self.http, "GET", "/events", params=params, timeout=timeout) as src:
                if src.response.status_code >= 400:
                    src.response.read()
                    _answer(src.response)
                yield "open", {}, ""
                for sse in src.iter_sse():
                    yield sse.event, json.loads(sse.data), sse.data
        except (httpx.TransportError, SSEError) as exc:
            raise Unreachable(f"the event stream of {self.target.url} broke: {_why(exc)}") from None
        raise Unreachable(f"the daemon at {self.target.url} closed the event stream")


def _answer(response: httpx.Response) -> Answer:
    text = response.text
    try:
        data = response.json() if text else None
    except ValueError:
        data = None
    if response.status_code >= 400:
        raise Refused(response.status_code, data if isinstance(data, dict) else {}, text)
    return Answer(response.status_code, data, text)


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
