"""A small local HTTP server that stands in for ingest where a test needs answers ingest would not give at will
(503, 429 with Retry-After, 401): it answers from a script and records every request it was sent."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # None: the body ingest would give (every event accepted)


@dataclass(frozen=True)
class Request:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    events: list[dict[str, Any]]
    status: int  # what it was answered
    inflated_bytes: int  # the JSON's size once un-gzipped


class Recorder:
    """Answers POSTs with the scripted answers in turn, then 202 (all accepted) once the script is spent."""

    def __init__(self, script: list[Answer] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.hold = threading.Event()  # while set, requests wait (a slow server)
        self.url = ""

    def next_answer(self) -> Answer:
        with self.lock:
            return self.script.pop(0) if self.script else Answer(202)

    @property
    def stored_ids(self) -> list[str]:
        """The event ids of every request answered 202, in order, duplicates included."""
        return [e["event_id"] for r in self.requests if r.status == 202 for e in r.events]


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            while recorder.hold.is_set():
                time.sleep(0.01)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            events = json.loads(raw)["events"]
            answer = recorder.next_answer()
            body = answer.body
            if body is None:
                body = {"accepted": len(events), "duplicates": 0, "rejected": []} if answer.status == 202 else {}
            with recorder.lock:
                recorder.requests.append(Request(time.monotonic(), dict(self.headers), events, answer.status, len(raw)))
            payload = json.dumps(body).encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            pass

    return Handler


@contextmanager
def recording(script: list[Answer] | None = None, port: int = 0) -> Iterator[Recorder]:
    """A Recorder serving on 127.0.0.1 (on `port`, or a free one) for the block."""
    recorder = Recorder(script)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(recorder))
    server.daemon_threads = True
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.hold.clear()
        server.shutdown()
        server.server_close()
        thread.join()
