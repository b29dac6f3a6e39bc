"""HTTP to the workspace's engine service on loopback, over the standard library's http.client.

The service is always plain HTTP on 127.0.0.1 with no proxy in between, so it needs none of
what httpx brings for the `remote` backend (TLS, proxies, pooling), and that costs: importing
httpx and building its client is 70–150 ms of CPU (more where trio is installed, which httpcore
imports), paid by every warm studio start before its first reply can stream. This client
offers the small part of httpx's interface that RemoteEngine uses: `request`, `stream` (a
context manager) and responses with `status_code`, `text`, `json()`, `read()`, `iter_lines()`
and `close()` (from any thread). A connection per request: on loopback one costs well under
a millisecond.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

ERRORS = (OSError, http.client.HTTPException)  # what a failed or cut request raises


class Response:
    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse):
        self._conn, self._raw = conn, raw
        self.status_code = raw.status
        self._body: bytes | None = None

    def read(self) -> bytes:
        if self._body is None:
            self._body = self._raw.read()
        return self._body

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.read())

    def iter_lines(self) -> Iterator[str]:
        """Lines of a streamed body (server-sent events) as they arrive."""
        while True:
            line = self._raw.readline()
            if not line:
                return
            yield line.decode("utf-8", errors="replace").rstrip("\r\n")

    def close(self) -> None:
        """Safe from another thread (the Stop key): shutting the socket down wakes a reader
        blocked on it (its read then ends in one of ERRORS) and the server sees the client go
        and aborts the request. The connection object itself is released by the thread that
        reads (`release`): http.client's objects are not thread-safe."""
        sock = self._conn.sock
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        self._conn.close()


class LoopbackClient:
    def __init__(self, *, headers: dict[str, str], timeout: float):
        self.headers = {"Content-Type": "application/json", **headers}
        self.timeout = timeout

    def _send(self, method: str, url: str, json: Any = None) -> Response:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise http.client.InvalidURL(f"not a plain http URL: {url}")
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=self.timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = None if json is None else jsonlib.dumps(json).encode()
        try:
            conn.request(method, path, body=body, headers=self.headers)
            return Response(conn, conn.getresponse())
        except BaseException:
            conn.close()
            raise

    def request(self, method: str, url: str, *, json: Any = None) -> Response:
        r = self._send(method, url, json)
        try:
            r.read()
        finally:
            r.release()
        return r

    @contextmanager
    def stream(self, method: str, url: str, *, json: Any = None) -> Iterator[Response]:
        r = self._send(method, url, json)
        try:
            yield r
        finally:
            r.close()  # a consumer that walks away early ends the request on the server too
            r.release()

    def close(self) -> None:
        pass  # nothing is kept open between requests
