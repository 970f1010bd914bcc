"""stepflow-py 0.7.0 test server (stdio, G0): arithmetic, timing, callbacks, errors, crashes."""

import asyncio
import os
import time

import msgspec
from stepflow_py import StepflowContext, StepflowServer

server = StepflowServer()


class Pair(msgspec.Struct):
    a: int
    b: int


class Total(msgspec.Struct):
    sum: int


@server.component
def add(input: Pair) -> Total:
    """Add two integers."""
    return Total(sum=input.a + input.b)


@server.component
async def sleepy(input: dict) -> dict:
    """Sleep ms milliseconds; report when it started and ended (wall clock)."""
    start = time.time()
    await asyncio.sleep(input["ms"] / 1000)
    return {"start": start, "end": time.time(), "tag": input.get("tag")}


@server.component
async def blob_roundtrip(input: dict, context: StepflowContext) -> dict:
    """Store the input as a blob and read it back."""
    blob_id = await context.put_blob(input)
    return {"blob_id": blob_id, "data": await context.get_blob(blob_id)}


@server.component
async def evaluate(input: dict, context: StepflowContext) -> dict:
    """Evaluate a stored flow by id (G0 flows/evaluate)."""
    return {"result": await context.evaluate_flow_by_id(input["flow_id"], input["input"])}


@server.component
def boom(input: dict) -> dict:
    raise ValueError("kaboom")


@server.component
async def crash_first(input: dict, context: StepflowContext) -> dict:
    """Exit the process on attempt 1 (upstream's restart test), succeed afterwards."""
    if context.attempt == 1:
        os._exit(3)
    return {"attempt": context.attempt, "pid": os.getpid()}


@server.component
def pid(input: dict) -> dict:
    return {"pid": os.getpid()}


@server.component
def size(input: dict) -> dict:
    return {"length": len(input["text"])}


@server.component
async def slow_pid(input: dict, context: StepflowContext) -> dict:
    """Sleep ms milliseconds, then report this process and the attempt."""
    await asyncio.sleep(input["ms"] / 1000)
    return {"pid": os.getpid(), "attempt": context.attempt}


if __name__ == "__main__":
    server.start_stdio()
