"""The load client: raw HTTP/1.1 keep-alive connections on 127.0.0.1, the same for both runtimes.

A full HTTP client (httpx2) costs tens of µs per request in the client, as much as the Rust server spends
on a noop run, so the load generator speaks HTTP/1.1 itself: one prebuilt request, one asyncio Protocol
per connection, and the next request is written from ``data_received`` as soon as a response completes
(no task switch per request). Responses are framed by ``content-length`` (or chunked encoding).

Every load loop is bounded in count AND time: at most ``count`` requests are started, none after
``seconds``, and the whole cell is abandoned ``DRAIN_S`` later if responses stop coming.

``request()`` is a one-shot helper for the few control calls (health, store flow).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HttpError", "LoadResult", "load", "post_json", "request"]

DRAIN_S = 60.0
"""How long in-flight requests may take after a cell's time limit (chain-1000 at c=64 needs seconds)."""
CONTROL_TIMEOUT_S = 60.0
"""Bound of one control request (storing chain-1000 parses ~170 KB)."""


class HttpError(Exception):
    """A control request failed: no connection, a timeout, or an unexpected status."""


def _build(method: str, port: int, path: str, body: bytes | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class _Framer:
    """Splits a byte stream into HTTP/1.1 responses; ``feed`` returns ``(status, body)`` or ``None``."""

    __slots__ = ("buf", "end", "start", "status", "chunked")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.end = -1  # index just past the body once the head is parsed (content-length framing)
        self.start = 0
        self.status = 0
        self.chunked = False

    def feed(self, data: bytes) -> tuple[int, bytes] | None:
        buf = self.buf
        buf += data
        if self.end < 0 and not self.chunked:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return None
            head = bytes(buf[:i]).lower()
            self.status = int(head[9:12])
            self.start = i + 4
            j = head.find(b"\r\ncontent-length:")
            if j >= 0:
                k = head.find(b"\r\n", j + 2)
                self.end = self.start + int(head[j + 17 : k if k > 0 else None])
            elif b"transfer-encoding: chunked" in head:
                self.chunked = True
            else:
                self.end = self.start  # no body (e.g. 204)
        if self.chunked:
            return self._chunked()
        if len(buf) < self.end:
            return None
        body = bytes(buf[self.start : self.end])
        del buf[: self.end]
        self.end = -1
        return self.status, body

    def _chunked(self) -> tuple[int, bytes] | None:
        buf, pos, parts = self.buf, self.start, []
        while True:
            i = buf.find(b"\r\n", pos)
            if i < 0:
                return None
            size = int(bytes(buf[pos:i]).split(b";")[0], 16)
            if size == 0:
                if len(buf) < i + 4:
                    return None
                del buf[: i + 4]
                self.chunked = False
                return self.status, b"".join(parts)
            if len(buf) < i + 2 + size + 2:
                return None
            parts.append(bytes(buf[i + 2 : i + 2 + size]))
            pos = i + 2 + size + 2


@dataclass(slots=True)
class _Shared:
    request: bytes
    remaining: int
    stop_at: float
    ok_marker: bytes
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_sample: str = ""
    active: int = 0
    done: asyncio.Future[None] | None = None


class _Worker(asyncio.Protocol):
    """One keep-alive connection sending the shared request back to back."""

    def __init__(self, shared: _Shared) -> None:
        self.s = shared
        self.framer = _Framer()
        self.transport: asyncio.Transport | None = None
        self.t0 = 0.0
        self.busy = False
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send_next(self) -> None:
        s = self.s
        if s.remaining <= 0 or time.perf_counter() >= s.stop_at:
            self._finish()
            return
        s.remaining -= 1
        self.busy = True
        self.t0 = time.perf_counter()
        self.transport.write(s.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        got = self.framer.feed(data)
        if got is None:
            return
        t = time.perf_counter()
        self.busy = False
        status, body = got
        s = self.s
        if status == 200 and s.ok_marker in body:
            s.latencies.append(t - self.t0)
        else:
            s.errors += 1
            if not s.error_sample:
                s.error_sample = f"HTTP {status}: {body[:300].decode(errors='replace')}"
        self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.s.errors += 1
            if not self.s.error_sample:
                self.s.error_sample = f"connection lost: {exc or 'closed by server'}"
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        s = self.s
        s.active -= 1
        if s.active == 0 and s.done is not None and not s.done.done():
            s.done.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One load loop: successful runs with their latencies (seconds, sorted), errors, wall time."""

    concurrency: int
    latencies: list[float]
    errors: int
    elapsed: float
    error_sample: str
    timed_out: bool

    @property
    def runs(self) -> int:
        return len(self.latencies)

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.elapsed if self.elapsed > 0 else 0.0

    def quantile(self, q: float) -> float:
        """Latency quantile in seconds (nearest rank); NaN without successful runs."""
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))]


async def load(
    port: int,
    path: str,
    body: bytes,
    *,
    concurrency: int,
    count: int,
    seconds: float,
    ok_marker: bytes = b'"completed"',
) -> LoadResult:
    """POST ``body`` to ``path`` from ``concurrency`` keep-alive connections, ``count``/``seconds`` bounded.

    A response counts as a run when it is HTTP 200 and contains ``ok_marker``; anything else is an error.
    """
    loop = asyncio.get_running_loop()
    shared = _Shared(_build("POST", port, path, body), count, float("inf"), ok_marker)
    workers = [_Worker(shared) for _ in range(concurrency)]
    try:
        async with asyncio.timeout(CONTROL_TIMEOUT_S):
            await asyncio.gather(*(loop.create_connection(lambda w=w: w, "127.0.0.1", port) for w in workers))
    except (OSError, TimeoutError) as exc:
        for w in workers:
            w.close()
        return LoadResult(concurrency, [], count, 0.0, f"cannot connect: {exc!r}", False)
    shared.done = loop.create_future()
    shared.active = concurrency
    t_start = time.perf_counter()
    shared.stop_at = t_start + seconds
    for w in workers:
        w.send_next()
    timed_out = False
    try:
        async with asyncio.timeout(seconds + DRAIN_S):
            await shared.done
    except TimeoutError:
        timed_out = True
    elapsed = time.perf_counter() - t_start
    for w in workers:
        w.close()
    shared.latencies.sort()
    return LoadResult(concurrency, shared.latencies, shared.errors, elapsed, shared.error_sample, timed_out)


class _OneShot(asyncio.Protocol):
    def __init__(self, fut: asyncio.Future[tuple[int, bytes]]) -> None:
        self.fut = fut
        self.framer = _Framer()

    def data_received(self, data: bytes) -> None:
        got = self.framer.feed(data)
        if got is not None and not self.fut.done():
            self.fut.set_result(got)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.fut.done():
            self.fut.set_exception(ConnectionError(f"connection closed before a response ({exc})"))


async def request(
    port: int, method: str, path: str, body: bytes | None = None, limit_s: float = CONTROL_TIMEOUT_S
) -> tuple[int, bytes]:
    """One request on a fresh connection; raises ``OSError`` (cannot connect) or ``TimeoutError``."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
    async with asyncio.timeout(limit_s):
        transport, _ = await loop.create_connection(lambda: _OneShot(fut), "127.0.0.1", port)
        try:
            transport.write(_build(method, port, path, body))
            return await fut
        finally:
            transport.close()


async def post_json(port: int, path: str, payload: Any, limit_s: float = CONTROL_TIMEOUT_S) -> Any:
    """POST JSON, expect 200, return the parsed body; anything else raises ``HttpError``."""
    try:
        status, body = await request(port, "POST", path, json.dumps(payload).encode(), limit_s)
    except (OSError, TimeoutError) as exc:
        raise HttpError(f"POST {path}: {exc!r}") from exc
    if status != 200:
        raise HttpError(f"POST {path}: HTTP {status}: {body[:200].decode(errors='replace')}")
    return json.loads(body)
