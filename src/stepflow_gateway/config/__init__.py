"""The gateway config file (``plugins.yaml`` = upstream ``stepflow-config.yml``).

``model`` holds the pydantic models, ``load`` finds/reads/checks a file, ``envsubst`` expands
``${VAR}`` references in plugin options when a plugin starts.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .envsubst import substitute, substitute_plugin_options
    from .load import (
        STANDARD_NAMES,
        TEST_NAMES,
        LoadedConfig,
        default_config,
        find_config,
        find_test_config,
        load_config,
        parse_config,
    )
    from .model import (
        BACKOFF_ADAPTER,
        Backoff,
        Condition,
        ConfigWarning,
        ConstantBackoff,
        ExponentialBackoff,
        FibonacciBackoff,
        GatewayConfig,
        PluginEntry,
        RetryConfig,
        RouteRule,
        StateStoreConfig,
    )

_HOME = {
    "substitute": "envsubst",
    "substitute_plugin_options": "envsubst",
    **dict.fromkeys(
        (
            "STANDARD_NAMES",
            "TEST_NAMES",
            "LoadedConfig",
            "default_config",
            "find_config",
            "find_test_config",
            "load_config",
            "parse_config",
        ),
        "load",
    ),
    **dict.fromkeys(
        (
            "BACKOFF_ADAPTER",
            "Backoff",
            "Condition",
            "ConfigWarning",
            "ConstantBackoff",
            "ExponentialBackoff",
            "FibonacciBackoff",
            "GatewayConfig",
            "PluginEntry",
            "RetryConfig",
            "RouteRule",
            "StateStoreConfig",
        ),
        "model",
    ),
}
"""Where each public name lives. Names are imported on first access, so that ``config.envsubst``
(used at every plugin start) does not drag in the loader and the models."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKOFF_ADAPTER",
    "STANDARD_NAMES",
    "TEST_NAMES",
    "Backoff",
    "Condition",
    "ConfigWarning",
    "ConstantBackoff",
    "ExponentialBackoff",
    "FibonacciBackoff",
    "GatewayConfig",
    "LoadedConfig",
    "PluginEntry",
    "RetryConfig",
    "RouteRule",
    "StateStoreConfig",
    "default_config",
    "find_config",
    "find_test_config",
    "load_config",
    "parse_config",
    "substitute",
    "substitute_plugin_options",
]
