"""A StepFlow stdio component server without any SDK that records what it receives.

Run as ``python recording_server.py LOG FAILURES``. It offers one component, ``/flaky``; every
``components/execute`` has its params appended to ``LOG`` as a JSON line, and the first
``FAILURES`` calls are answered with a JSON-RPC error (so ``onError: retry`` calls again).
"""

from __future__ import annotations

import json
import sys
from typing import Any

INFO = {"component": "/flaky", "description": "Fails at first", "input_schema": None, "output_schema": None}


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
    sys.stdout.flush()


def main(log_path: str, failures: int) -> None:
    calls = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if "id" not in msg:
            continue  # initialized
        rid, method, params = msg["id"], msg.get("method"), msg.get("params")
        if method == "initialize":
            send({"id": rid, "result": {"server_protocol_version": 1}})
        elif method == "components/list":
            send({"id": rid, "result": {"components": [INFO]}})
        elif method == "components/info":
            send({"id": rid, "result": {"info": INFO}})
        elif method == "components/execute":
            with open(log_path, "a") as log:
                log.write(json.dumps(params) + "\n")
            calls += 1
            if calls <= failures:
                send({"id": rid, "error": {"code": -32000, "message": f"failure {calls}"}})
            else:
                send({"id": rid, "result": {"output": {"attempt": params.get("attempt")}}})
        else:
            send({"id": rid, "error": {"code": -32601, "message": f"Method not found: '{method}'"}})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
