"""Write StepFlow component servers in Python: typed functions served over stdio or HTTP.

```python
from pydantic import BaseModel
from stepflow_gateway.sdk import ComponentServer, Context

class In(BaseModel):
    text: str

server = ComponentServer("demo")

@server.component
async def store(input: In, ctx: Context) -> dict:
    return {"blob_id": await ctx.put_blob({"text": input.text})}

if __name__ == "__main__":
    server.run()   # stdio; `--http [--port N]` prints {"port": N} and serves HTTP on 127.0.0.1
```

Input and output schemas come from the type hints (pydantic). A parameter typed :class:`Context`
gives access to blobs and nested runs through runtime callbacks. Against stepflow-gateway the
server switches to a faster transport (length-prefixed frames on a Unix socket) when offered.
"""

from .context import Context, ContextError, FlowFailed
from .server import ComponentServer, component

__all__ = ["ComponentServer", "Context", "ContextError", "FlowFailed", "component"]
