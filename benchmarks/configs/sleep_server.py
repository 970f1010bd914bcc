"""Component server of the durable-runs benchmark (``benchmarks/journal.py``), on this project's SDK.

``/sleep`` takes ``{duration_ms, passthrough?}`` (the input of upstream's ``/builtin/sleep``), waits
that long (cooperatively: a thousand concurrent sleeps cost no threads) and returns
``{duration_ms, passthrough?}``. When ``$SLEEP_LOG`` names a file, every execution appends one
line ``<time.time()> <pid> <run_id> <attempt>`` when it starts, with a single ``write`` on an
``O_APPEND`` descriptor (one line never mixes with another process's). The benchmark reads the
file to see when steps start again after the gateway was killed and restarted.

Served over stdio by default (``python sleep_server.py``); ``--http`` also works.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel

from stepflow_gateway.sdk import ComponentServer, Context

LOG = os.environ.get("SLEEP_LOG", "")
_fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if LOG else -1

server = ComponentServer("bench-sleep")


class SleepIn(BaseModel):
    duration_ms: int
    passthrough: Any = None


@server.component(name="/sleep")
async def sleep(input: SleepIn, ctx: Context) -> dict[str, Any]:
    """Wait ``duration_ms`` milliseconds, then return the input's fields."""
    if _fd >= 0:
        os.write(_fd, f"{time.time():.6f} {os.getpid()} {ctx.run_id} {ctx.attempt}\n".encode())
    await asyncio.sleep(input.duration_ms / 1000.0)
    out: dict[str, Any] = {"duration_ms": input.duration_ms}
    if input.passthrough is not None:
        out["passthrough"] = input.passthrough
    return out


if __name__ == "__main__":
    server.run()
