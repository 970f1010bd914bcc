"""Test component server written with stepflow_gateway.sdk (stdio by default, --http for HTTP)."""

import asyncio
import os
import time

import anyio
from pydantic import BaseModel

from stepflow_gateway.sdk import ComponentServer, Context

server = ComponentServer("sdk-test")


class Pair(BaseModel):
    a: int
    b: int


class Total(BaseModel):
    sum: int


@server.component
def add(input: Pair) -> Total:
    """Add two integers."""
    return Total(sum=input.a + input.b)


@server.component
async def sleepy(input: dict) -> dict:
    start = time.time()
    await anyio.sleep(input["ms"] / 1000)
    return {"start": start, "end": time.time(), "tag": input.get("tag")}


@server.component
async def blob_roundtrip(input: dict, ctx: Context) -> dict:
    blob_id = await ctx.put_blob(input)
    return {"blob_id": blob_id, "data": await ctx.get_blob(blob_id)}


@server.component
async def evaluate(input: dict, ctx: Context) -> dict:
    """Run a stored flow through runs/submit."""
    return {"result": await ctx.evaluate_flow(input["flow_id"], input["input"]), "run_id": ctx.run_id}


@server.component
def boom(input: dict) -> dict:
    raise ValueError("kaboom")


@server.component
async def crash_first(input: dict, ctx: Context) -> dict:
    if ctx.attempt == 1:
        os._exit(3)
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@server.component
def echo(input: dict) -> dict:
    return input


@server.component
def noisy(input: dict) -> dict:
    print("this print must not corrupt the protocol")
    return {"ok": True}


@server.component
async def slow_pid(input: dict, ctx: Context) -> dict:
    """Sleep ms milliseconds, then report this process and the attempt."""
    await asyncio.sleep(input["ms"] / 1000)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


if __name__ == "__main__":
    server.run()
