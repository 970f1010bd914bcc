"""The whole exception tree of stepflow-gateway.

```
GatewayError
├── ConfigError                 a config file is unreadable or invalid (names file and JSON path)
├── FlowError                   (base for flow problems)
│   ├── FlowLoadError           a flow file cannot be read or parsed
│   ├── FlowValidationError     fatal/error diagnostics block a run
│   └── InputValidationError    an input item does not match the flow's input schema
├── PluginError                 (base for component-source problems)
│   ├── PluginStartError        a plugin failed to start (spawn, handshake, listing)
│   ├── UnknownComponentError   the plugin does not know the component
│   ├── RoutingError            no route matches a component path
│   ├── ComponentError          a component call failed (carries the error stack)
│   ├── ProtocolError           a peer broke the protocol
│   └── TransportError          bytes could not be moved
│       ├── ConnectError        nothing was delivered
│       ├── TransportClosed     the peer went away
│       └── CallTimeout         a call exceeded its deadline (also a TimeoutError)
├── StateStoreError             the state store failed
└── RunNotFound                 no run with that id
```

Every error carries a ``code`` (used when it becomes a JSON-RPC or flow error) and keyword fields
that say where it happened. ``str()`` is one line a person can act on.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Root of all errors raised by stepflow-gateway."""

    code: int = 500

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        step_id: str | None = None,
        json_path: str | None = None,
        plugin: str | None = None,
        data: Any = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.step_id = step_id
        self.json_path = json_path
        self.plugin = plugin
        self.data = data
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.plugin:
            where.append(f"plugin '{self.plugin}'")
        if self.step_id:
            where.append(f"step '{self.step_id}'")
        if self.json_path:
            where.append(f"at {self.json_path}")
        return f"{': '.join([', '.join(where), self.message]) if where else self.message}"


class ConfigError(GatewayError):
    """A config file is unreadable or invalid."""

    code = 2


class FlowError(GatewayError):
    """Base for problems with a flow."""

    code = 400


class FlowLoadError(FlowError):
    """A flow file cannot be read or parsed."""


class FlowValidationError(FlowError):
    """Fatal (or, for ``run``, error-level) diagnostics block execution."""

    def __init__(self, message: str, *, diagnostics: list[Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.diagnostics = diagnostics or []


class InputValidationError(FlowError):
    """An input item does not match the flow's input schema."""


class PluginError(GatewayError):
    """Base for failures of a component source."""


class PluginStartError(PluginError):
    """A plugin failed to start: spawn, handshake or first listing."""


class UnknownComponentError(PluginError):
    """The plugin has no such component."""


class RoutingError(PluginError):
    """No route or rule accepts a component path."""


class ComponentError(PluginError):
    """A component call failed.

    ``stack`` holds the entries below the engine's ``step "<id>" failed`` entry, outermost first,
    each ``{"error": str, "attachments"?: [str]}``. ``attachments`` are appended to the step entry
    itself (the mock's ``No behavior defined ...`` line goes there).
    """

    def __init__(
        self,
        message: str,
        *,
        stack: list[dict[str, Any]] | None = None,
        attachments: list[str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.stack = stack if stack is not None else [{"error": message}]
        self.attachments = attachments or []


class ProtocolError(PluginError):
    """A peer sent something the protocol does not allow."""


class TransportError(PluginError):
    """Bytes could not be moved to or from a peer."""


class ConnectError(TransportError):
    """The connection could not be made; nothing was delivered."""


class TransportClosed(TransportError):
    """The peer closed the connection or exited."""


class CallTimeout(TransportError, TimeoutError):
    """A call exceeded its deadline."""


class StateStoreError(GatewayError):
    """The state store failed."""


class RunNotFound(GatewayError):
    """No run with that id."""

    code = 404


def unwrap_exception_group(exc: BaseException) -> BaseException:
    """The most useful leaf of an exception group (a ``GatewayError`` if there is one).

    Task groups wrap the one error a user should see ("command not found") in an
    ``ExceptionGroup``; CLI messages and library callers want the error itself.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        else:
            leaves.append(e)
    for leaf in leaves:
        if isinstance(leaf, GatewayError):
            return leaf
    return leaves[0] if leaves else exc
