"""HTTP/1.1 of ``serve`` on raw sockets against a real server.

``POST /api/v1/runs`` is answered by the fast path (``fastpath.py``), written to uvicorn's cycle in
one write (``_uvicorn_compat.py``, pinned in ``test_uvicorn_compat.py``); these tests speak HTTP/1.1
byte by byte so that keep-alive, pipelining, ``Connection: close``, HTTP/1.0, chunked bodies and the
hand-over of other requests to the Starlette stack on the same connection are what is exercised.
"""

from __future__ import annotations

import json
import socket
import time

import httpx2

from .conftest import ServerProcess

FLOW = {
    "name": "noop",
    "steps": [
        {
            "id": "m",
            "component": "/builtin/create_messages",
            "input": {"user_prompt": {"$input": "q"}},
        }
    ],
    "output": {"$step": "m", "path": "$.messages[0].content"},
}


def store(server: ServerProcess) -> str:
    r = httpx2.post(f"{server.api}/flows", json={"flow": FLOW}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["flowId"]


def run_request(flow_id: str, q: str, *, headers: str = "", version: str = "1.1") -> bytes:
    body = json.dumps({"flowId": flow_id, "input": [{"q": q}]}).encode()
    head = (
        f"POST /api/v1/runs HTTP/{version}\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{headers}\r\n"
    )
    return head.encode() + body


class Conn:
    """One raw keep-alive connection that reads whole responses (content-length framed)."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed before a response head: {self.buf!r}"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"duplicate header {name}: {head!r}"
            headers[name.lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self.buf) < length:
            assert self._fill(), "connection closed inside a body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed_by_server(self) -> bool:
        self.sock.settimeout(10)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def result_of(body: bytes) -> object:
    out = json.loads(body)
    assert out["status"] == "completed", out
    return out["result"]["result"]


def test_keep_alive_and_pipelining_in_order(start_server) -> None:
    server = start_server()
    fid = store(server)
    conn = Conn(server)
    try:
        # three run requests and a request the ASGI stack answers, written at once (pipelined)
        get_flow = f"GET /api/v1/flows/{fid} HTTP/1.1\r\nhost: x\r\n\r\n".encode()
        conn.send(run_request(fid, "one") + run_request(fid, "two") + get_flow + run_request(fid, "three"))
        answers = [conn.response() for _ in range(4)]
        assert [a[0] for a in answers] == [200, 200, 200, 200]
        assert [result_of(answers[i][2]) for i in (0, 1, 3)] == ["one", "two", "three"]
        assert json.loads(answers[2][2])["flowId"] == fid
        status, headers, _ = answers[0]
        assert headers["content-type"] == "application/json"
        assert headers["vary"] == "Origin"
        assert "date" in headers and "connection" not in headers
        assert "access-control-allow-origin" not in headers
        run_ids = {json.loads(a[2])["runId"] for a in (answers[0], answers[1], answers[3])}
        assert len(run_ids) == 3
        # the same connection keeps serving afterwards, and the runs are readable
        conn.send(run_request(fid, "four", headers="origin: http://example.test\r\n"))
        status, headers, body = conn.response()
        assert status == 200 and result_of(body) == "four"
        assert headers["access-control-allow-origin"] == "*"
        assert headers["vary"] == "Origin"
        for rid in run_ids:
            r = httpx2.get(f"{server.api}/runs/{rid}", timeout=30)
            assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    finally:
        conn.close()


def test_bodies_the_fast_path_leaves_to_the_handlers(start_server) -> None:
    server = start_server()
    fid = store(server)
    conn = Conn(server)
    try:
        bad = b"{not json"
        conn.send(
            b"POST /api/v1/runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(bad), bad)
        )
        status, headers, body = conn.response()
        assert status == 400, body
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["code"] == 400
        # unknown flow: the handler's 404, worded as upstream
        conn.send(run_request("f" * 64, "x"))
        status, _, body = conn.response()
        assert status == 404 and "f" * 64 in json.loads(body)["message"], body
        # a body with variables (plain shape, taken here as by the full handler)
        body_vars = json.dumps({"flowId": fid, "input": [{"q": "v"}], "variables": {"a": 1}}).encode()
        conn.send(
            b"POST /api/v1/runs HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body_vars), body_vars)
        )
        status, _, body = conn.response()
        assert status == 200 and result_of(body) == "v"
        # a chunked body, in two writes
        payload = json.dumps({"flowId": fid, "input": [{"q": "chunked"}]}).encode()
        half = len(payload) // 2
        conn.send(b"POST /api/v1/runs HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        conn.send(b"%x\r\n%s\r\n" % (half, payload[:half]))
        time.sleep(0.05)
        conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload) - half, payload[half:]))
        status, _, body = conn.response()
        assert status == 200 and result_of(body) == "chunked"
        # and a plain one still works on the same connection
        conn.send(run_request(fid, "after"))
        status, _, body = conn.response()
        assert status == 200 and result_of(body) == "after"
    finally:
        conn.close()


def test_connection_close_and_http_1_0(start_server) -> None:
    server = start_server()
    fid = store(server)
    for extra, version in (("connection: close\r\n", "1.1"), ("", "1.0")):
        conn = Conn(server)
        try:
            conn.send(run_request(fid, f"bye {version}", headers=extra, version=version))
            status, headers, body = conn.response()
            assert status == 200 and result_of(body) == f"bye {version}"
            assert headers["connection"] == "close"
            assert conn.closed_by_server()
        finally:
            conn.close()


def test_api_key_checked_before_the_fast_path(start_server) -> None:
    server = start_server(env={"STEPFLOW_GATEWAY_API_KEY": "sekrit"})
    r = httpx2.post(f"{server.api}/flows", json={"flow": FLOW}, headers={"x-api-key": "sekrit"}, timeout=30)
    fid = r.json()["flowId"]
    conn = Conn(server)
    try:
        conn.send(run_request(fid, "no key"))
        status, _, body = conn.response()
        assert status == 401, body
        conn.send(run_request(fid, "bearer", headers="authorization: Bearer sekrit\r\n"))
        status, _, body = conn.response()
        assert status == 200 and result_of(body) == "bearer"
    finally:
        conn.close()
