"""The engine service's HTTP client (engine/loopback.py) against a small real HTTP server.

The real engine path (vLLM's server) is covered by test_engine_service.py and the tmux tests;
these pin the parts that are easy to get wrong by hand: chunked streaming as it arrives, a
stop from another thread that wakes a blocked reader, and failures as catchable errors.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from persona_studio.engine.loopback import ERRORS, LoopbackClient


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked responses, as uvicorn sends them
    disconnected = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/echo":
            out = json.dumps({"got": body, "auth": self.headers.get("Authorization")}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        # /stream: one SSE event every 50 ms, `n` of them; with `stall`, then nothing (a slow
        # model) until the client goes away, which is watched for without writing.
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i in range(body["n"]):
                data = f"data: {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(0.05)
            if body.get("stall"):
                self.connection.settimeout(10)
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    Handler.disconnected.set()
                return
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            Handler.disconnected.set()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_request_sends_json_and_the_key(server: str) -> None:
    r = LoopbackClient(headers={"Authorization": "Bearer k"}, timeout=5).request("POST", f"{server}/echo",
                                                                               json={"a": [1, "é"]})
    assert r.status_code == 200 and r.json() == {"got": {"a": [1, "é"]}, "auth": "Bearer k"}


def test_stream_yields_events_as_they_arrive(server: str) -> None:
    client = LoopbackClient(headers={}, timeout=5)
    t0 = time.monotonic()
    with client.stream("POST", f"{server}/stream", json={"n": 20}) as r:
        first = next(line for line in r.iter_lines() if line)
        assert first == "data: 0" and time.monotonic() - t0 < 0.5  # not after the whole second of events
        rest = [line for line in r.iter_lines() if line]
    assert rest == [f"data: {i}" for i in range(1, 20)]


def test_close_from_another_thread_wakes_the_reader_and_the_server_sees_it(server: str) -> None:
    """The Stop key while the model is slow: the reader is blocked on a silent socket."""
    Handler.disconnected.clear()
    client = LoopbackClient(headers={}, timeout=30)
    seen: list[str] = []
    t0 = time.monotonic()
    with client.stream("POST", f"{server}/stream", json={"n": 3, "stall": True}) as r:
        try:
            for line in r.iter_lines():
                if line:
                    seen.append(line)
                if len(seen) == 3:
                    threading.Timer(0.3, r.close).start()  # once the reader waits on the socket
        except ERRORS:
            pass  # a cut chunked body may also end as an error: both count as stopped
    assert len(seen) == 3 and time.monotonic() - t0 < 3  # not the server's 10 s stall
    assert Handler.disconnected.wait(5)  # the server noticed (vLLM aborts the request then)


def test_nothing_listening_is_a_catchable_error() -> None:
    with pytest.raises(ERRORS):
        LoopbackClient(headers={}, timeout=2).request("GET", "http://127.0.0.1:9/none")
