"""stepflow-py 0.9.2 test worker (self-launching HTTP, G2): prints {"port": N} and serves."""

import asyncio
import os
import sys
import time

import msgspec
from stepflow_py.worker import StepflowContext, StepflowServer

server = StepflowServer()


class Pair(msgspec.Struct):
    a: int
    b: int


@server.component
def add(input: Pair) -> dict:
    """Add two integers."""
    return {"sum": input.a + input.b}


@server.component
async def sleepy(input: dict) -> dict:
    start = time.time()
    await asyncio.sleep(input["ms"] / 1000)
    return {"start": start, "end": time.time(), "tag": input.get("tag")}


@server.component
async def blob_roundtrip(input: dict, context: StepflowContext) -> dict:
    blob_id = await context.put_blob(input)
    return {"blob_id": blob_id, "data": await context.get_blob(blob_id)}


@server.component
def boom(input: dict) -> dict:
    raise ValueError("kaboom")


@server.component
async def crash_first(input: dict, context: StepflowContext) -> dict:
    if context.attempt == 1:
        os._exit(3)
    return {"attempt": context.attempt, "pid": os.getpid()}


@server.component
async def slow_pid(input: dict, context: StepflowContext) -> dict:
    """Sleep ms milliseconds, then report this process and the attempt."""
    await asyncio.sleep(input["ms"] / 1000)
    return {"pid": os.getpid(), "attempt": context.attempt}


if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    asyncio.run(server.run(host="127.0.0.1", port=port))
