"""The gateway config file (``plugins.yaml`` = upstream ``stepflow-config.yml``).

``model`` holds the pydantic models, ``load`` finds/reads/checks a file, ``envsubst`` expands
``${VAR}`` references in plugin options when a plugin starts.
"""

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
