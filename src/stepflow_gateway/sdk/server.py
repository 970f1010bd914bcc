"""Owns :class:`ComponentServer`: the component registry, JSON schemas derived from type hints,
input validation and output serialisation with pydantic, and the dispatch of runtime → component
methods (``initialize``, ``components/list|info|execute``). Transports live in ``stdio.py`` and
``http.py``; both hand requests to :meth:`ComponentServer.dispatch`.

Errors follow stepflow-py's table (protocol.md §5) so the gateway's failure messages look the same
whichever SDK a server uses: ``-32001`` for an unknown component, ``-32003 Component execution
failed: <error>`` when the component raises or its input does not validate.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints

import anyio
import structlog
from pydantic import TypeAdapter, ValidationError

from ..protocol.jsonrpc import RpcError
from ..protocol.messages import Method
from .context import Context, ContextError

__all__ = ["ComponentServer", "component"]

log = structlog.get_logger(__name__)

COMPONENT_NOT_FOUND = -32001
EXECUTION_FAILED = -32003
_MARK = "__stepflow_component__"

SendRequest = Callable[[str, Any], Awaitable[Any]]


@dataclass(slots=True)
class _Spec:
    name: str
    fn: Callable[..., Any]
    description: str | None
    input_adapter: TypeAdapter[Any] | None
    output_adapter: TypeAdapter[Any] | None
    context_param: str | None
    is_async: bool
    blocking: bool
    input_schema: Any
    output_schema: Any

    def info(self) -> dict[str, Any]:
        return {
            "component": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }


def component(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    blocking: bool = False,
) -> Any:
    """Mark a function as a component (``ComponentServer(components=[...])`` or ``server.add`` picks it up).

    ``name`` defaults to ``/<function name>``, ``description`` to the docstring. ``blocking=True`` runs
    a synchronous function in a worker thread instead of on the event loop.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _MARK, {"name": name, "description": description, "blocking": blocking})
        return f

    return mark(fn) if fn is not None else mark


def _schema(adapter: TypeAdapter[Any] | None, mode: str) -> Any:
    if adapter is None:
        return {}
    try:
        return adapter.json_schema(mode=mode)  # type: ignore[arg-type]
    except Exception:  # a type pydantic cannot describe still works, just without a schema
        return {}


def _build_spec(fn: Callable[..., Any], name: str | None, description: str | None, blocking: bool) -> _Spec:
    hints = get_type_hints(fn)
    params = list(inspect.signature(fn).parameters.values())
    context_param = None
    input_type: Any = None
    for p in params:
        hint = hints.get(p.name)
        if hint is Context or (hint is None and p.name in ("context", "ctx")):
            context_param = p.name
        elif input_type is None:
            input_type = hint if hint is not None else Any
    if input_type is None:
        raise TypeError(f"component {fn.__name__} needs an input parameter")
    output_type = hints.get("return")
    input_adapter = None if input_type is Any else TypeAdapter(input_type)
    output_adapter = None if output_type in (None, Any) else TypeAdapter(output_type)
    cname = name or "/" + fn.__name__
    if not cname.startswith("/"):
        cname = "/" + cname
    return _Spec(
        name=cname,
        fn=fn,
        description=description if description is not None else (inspect.getdoc(fn) or None),
        input_adapter=input_adapter,
        output_adapter=output_adapter,
        context_param=context_param,
        is_async=inspect.iscoroutinefunction(fn),
        blocking=blocking,
        input_schema=_schema(input_adapter, "validation"),
        output_schema=_schema(output_adapter, "serialization"),
    )


class ComponentServer:
    """A set of components served over stdio or HTTP.

    ```python
    server = ComponentServer("text")

    @server.component
    def upper(input: UpperIn) -> UpperOut: ...

    if __name__ == "__main__":
        server.run()          # stdio; `--http [--port N]` serves HTTP
    ```
    """

    def __init__(
        self, name: str = "stepflow-gateway-sdk", *, components: Sequence[Callable[..., Any]] = ()
    ) -> None:
        self.name = name
        self._specs: dict[str, _Spec] = {}
        for fn in components:
            self.add(fn)

    def add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        blocking: bool | None = None,
    ) -> Callable[..., Any]:
        """Register ``fn`` (options from ``@component`` apply unless given here)."""
        marks = getattr(fn, _MARK, {})
        spec = _build_spec(
            fn,
            name or marks.get("name"),
            description if description is not None else marks.get("description"),
            blocking if blocking is not None else bool(marks.get("blocking", False)),
        )
        if spec.name in self._specs:
            raise ValueError(f"component {spec.name} registered twice")
        self._specs[spec.name] = spec
        return fn

    def component(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        blocking: bool = False,
    ) -> Any:
        """Decorator form of :meth:`add`."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            return self.add(f, name=name, description=description, blocking=blocking)

        return register(fn) if fn is not None else register

    def wants_context(self, component_name: str) -> bool:
        spec = self._specs.get(component_name)
        return spec is not None and spec.context_param is not None

    def list_infos(self) -> list[dict[str, Any]]:
        return [spec.info() for spec in self._specs.values()]

    async def dispatch(self, method: str, params: Any, send: SendRequest | None) -> Any:
        """Serve one runtime → component request (``initialize`` is answered by the transport)."""
        if method == Method.COMPONENTS_EXECUTE:
            return await self.execute(params, send)
        if method == Method.COMPONENTS_LIST:
            return {"components": self.list_infos()}
        if method == Method.COMPONENTS_INFO:
            spec = self._spec(params.get("component") if isinstance(params, dict) else None)
            return {"info": spec.info()}
        if method == Method.INITIALIZE:
            return {"server_protocol_version": 1}
        raise RpcError(-32601, f"Method not found: '{method}'")

    def _spec(self, name: Any) -> _Spec:
        spec = self._specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise RpcError(COMPONENT_NOT_FOUND, f"Component '{name}' not found", {"component": name})
        return spec

    async def execute(self, params: Any, send: SendRequest | None) -> dict[str, Any]:
        """``components/execute``: validate, call, serialise."""
        if not isinstance(params, dict):
            raise RpcError(-32602, "components/execute needs an object of params")
        spec = self._spec(params.get("component"))
        raw = params.get("input")
        try:
            value = spec.input_adapter.validate_python(raw) if spec.input_adapter is not None else raw
        except ValidationError as exc:
            raise RpcError(
                EXECUTION_FAILED, f"Component execution failed: invalid input: {_brief(exc)}", {}
            ) from None
        kwargs: dict[str, Any] = {}
        if spec.context_param is not None:
            if send is None:
                raise RpcError(
                    EXECUTION_FAILED, "Component execution failed: no callback channel for the context"
                )
            kwargs[spec.context_param] = Context(
                _checked(send),
                attempt=int(params.get("attempt") or 1),
                observability=params.get("observability"),
            )
        try:
            if spec.is_async:
                result = await spec.fn(value, **kwargs)
            elif spec.blocking:
                result = await anyio.to_thread.run_sync(lambda: spec.fn(value, **kwargs))
            else:
                result = spec.fn(value, **kwargs)
            output = (
                spec.output_adapter.dump_python(result, mode="json")
                if spec.output_adapter
                else _plain(result)
            )
        except RpcError:
            raise
        except Exception as exc:
            log.warning("component failed", component=spec.name, error=repr(exc))
            raise RpcError(EXECUTION_FAILED, f"Component execution failed: {exc}", {}) from None
        return {"output": output}

    def run(self, argv: Sequence[str] | None = None) -> None:
        """Command-line entry: stdio by default; ``--http [--host H] [--port N]`` for HTTP.

        ``--no-fast`` refuses the negotiated fast transport (for comparisons).
        """
        parser = argparse.ArgumentParser(prog=self.name)
        parser.add_argument("--http", action="store_true", help="serve HTTP instead of stdio")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=0, help='0 = any free port (printed as {"port": N})')
        parser.add_argument("--no-fast", action="store_true", help="never switch to the fast transport")
        args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
        if not structlog.is_configured():
            # This is a program entry point: stdout may be the protocol channel (stdio) or carry the
            # port line (HTTP), so logs go to stderr.
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
        if args.http:
            from .http import serve_http

            anyio.run(lambda: serve_http(self, host=args.host, port=args.port, fast=not args.no_fast))
        else:
            from .stdio import serve_stdio

            anyio.run(lambda: serve_stdio(self, fast=not args.no_fast))


def _checked(send: SendRequest) -> SendRequest:
    async def call(method: str, params: Any) -> Any:
        try:
            return await send(method, params)
        except RpcError as exc:
            raise ContextError(exc.code, exc.message, exc.data) from None

    return call


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        parts.append(f"{err['msg']} at {loc}")
    return "; ".join(parts)
